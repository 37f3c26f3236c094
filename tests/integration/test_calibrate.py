"""`bench calibrate --quick` on the real broker: a profile the model can use."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from bench import patterns
from bench.cli import cli
from bench.sim.model import Scenario, simulate
from bench.sim.profile import load_profile
from bench.flow.workload import load_workload

pytestmark = pytest.mark.broker


def test_quick_calibration_measures_what_the_model_needs(bootstrap_servers, tmp_path):
    out = tmp_path / "profile.json"
    result = CliRunner().invoke(cli, ["calibrate", "--bootstrap-servers", bootstrap_servers, "--quick",
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    profile = load_profile(out)

    quiet = profile.transport[0]
    assert quiet.messages_per_s == 0
    assert 20 < quiet.transport_us.quantile(0.5) < 100_000  # a hop on loopback: well under 100 ms
    assert len(profile.transport) == 2 and profile.transport[1].messages_per_s > 1000  # the traffic level ran
    # Through a real service the hop includes the probe producer's wait for the workload's linger
    # (5 ms): a whole linger for a message that opens a batch, less for one that joins it.
    assert profile.hop_us.quantile(0.99) > 0.9 * profile.linger_ms * 1000
    assert profile.hop_us.quantile(0.5) > quiet.transport_us.quantile(0.5)
    assert profile.wakeup_us is not None
    for cost in ("in", "out"):
        assert 0 < profile.service_us[cost] < 1000, profile.service_us
        assert profile.service_cpu_us[cost] > 0
    assert 0 < profile.rebalance_s < 30 and profile.startup_s > 0
    assert profile.session_timeout_s > 0 and profile.cores >= 1

    workload = load_workload().with_overrides(rate_per_s=100.0, duration_s=2.0, warmup_s=0.5)
    simulated = simulate(Scenario(patterns.get("orchestration"), workload, profile))
    assert len(simulated.outcomes) == len(simulated.started) > 0
