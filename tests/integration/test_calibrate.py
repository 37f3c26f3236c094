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


DEFAULT_PROFILE = "bench/sim/profiles/default.json"


def test_replication_is_measured_on_three_brokers(tmp_path, monkeypatch):
    """acks=all waits for the followers, acks=1 does not: on a real 3-node cluster the difference
    is replication's time, and brokers on this host are no network round trip away."""
    from bench.broker import embedded

    monkeypatch.setenv("BENCH_BROKER_DIR", str(tmp_path / "broker"))
    out = tmp_path / "profile.json"
    with embedded.embedded(nodes=3, port=19592) as cluster:
        result = CliRunner().invoke(cli, ["calibrate", "--from-profile", DEFAULT_PROFILE, "--replication", "--quick",
                                          "--bootstrap-servers", cluster.bootstrap_servers, "--output", str(out)])
        assert result.exit_code == 0, result.output
        from confluent_kafka.admin import AdminClient
        left = AdminClient({"bootstrap.servers": cluster.bootstrap_servers}).list_topics(timeout=10).topics
        assert "bench-calibrate-replication" not in left  # its own topic, deleted
    profile = load_profile(out)
    measured = profile.measured["replication"]
    assert measured["brokers"] == 3 and measured["acks_all_p50_us"] > measured["acks_1_p50_us"] > 0
    assert profile.replication_us == pytest.approx(measured["acks_all_p50_us"] - measured["acks_1_p50_us"], abs=0.2)
    assert 0 <= profile.network_rtt_us < 1000  # loopback
    assert profile.transport == load_profile(DEFAULT_PROFILE).transport  # --from-profile: nothing else measured again


def test_replication_on_one_broker_is_one_line_and_exit_2(bootstrap_servers, tmp_path):
    out = tmp_path / "profile.json"
    result = CliRunner().invoke(cli, ["calibrate", "--from-profile", DEFAULT_PROFILE, "--replication",
                                      "--bootstrap-servers", bootstrap_servers, "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert "3 or more" in result.output and "Traceback" not in result.output
    assert not out.exists()
