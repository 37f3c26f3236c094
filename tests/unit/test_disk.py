"""A run checks the embedded broker's disk before it starts (no broker needed: the check reads the disk)."""
import shutil
from pathlib import Path

import pytest

from bench.broker.embedded import Cluster, NodeInfo
from bench.flow.workload import load_workload
from bench.kafka.errors import BrokerError
from bench.run.run import DISK_BYTES_PER_MESSAGE, check_disk

WORKLOADS = Path(__file__).resolve().parents[2] / "workloads"


def test_a_run_the_embedded_brokers_disk_cannot_hold_fails_before_it_starts(tmp_path):
    cluster = Cluster([NodeInfo(1, 29999, 30999, 1, str(tmp_path))], str(tmp_path))
    free = shutil.disk_usage(tmp_path).free
    workload = load_workload(WORKLOADS / "default.yaml")
    per_order = 4 * len(workload.saga.steps) * DISK_BYTES_PER_MESSAGE
    fits = workload.with_overrides(rate_per_s=1000.0, duration_s=10.0, warmup_s=0.0)
    check_disk(cluster, fits)
    too_long = workload.with_overrides(rate_per_s=1000.0, duration_s=free / per_order / 1000.0, warmup_s=0.0)
    with pytest.raises(BrokerError, match=r"would write about .* GB .* free: shorten it"):
        check_disk(cluster, too_long)
    check_disk(None, too_long)  # a cluster that is not ours: its disks are not ours to see
