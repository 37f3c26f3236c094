"""The SimPy model: known answers, determinism, and result dirs that read like real ones."""
import csv
import json
import dataclasses

import numpy as np
import pytest

from bench.flow import arrivals
from bench import patterns
from bench.results.recording import new_histogram, read_hlog, summary_ms
from bench.results.files import TIMESERIES, TimeseriesWriter, read_summary
from bench.sim import simulation
from bench.sim.clock import Clock
from bench.sim.histograms import histogram_of, per_second
from bench.sim.hosts import Host, erlang_c, slowdown
from bench.sim.kafka import Cluster, Group, Producer, Transport
from bench.sim.model import Scenario, simulate
from bench.sim.profile import (
    DEFAULT_PROFILE,
    Distribution,
    LoadPoint,
    Profile,
    ProfileError,
    load_profile,
    parse_profile,
    save_profile,
)
from bench.sim.service import Costs, Instance, SimOutbox, StepSamples
from bench.flow.workload import DEFAULT_WORKLOAD, Fault, load_workload

WORKLOADS = DEFAULT_WORKLOAD.parent

# A transport that takes 1 ms, so latencies are easy to reason about.
FLAT = Profile(transport=(LoadPoint(0.0, Distribution.constant(1000.0)),))


def small(rate=200.0, duration=4.0, warmup=1.0, **changes):
    return load_workload().with_overrides(rate_per_s=rate, duration_s=duration, warmup_s=warmup, **changes)


# --- known answers -----------------------------------------------------------


class _Sojourn:
    """A handler that records how long each message spent at the instance (wait + service)."""

    def __init__(self):
        self.sojourn_s = []

    def handle(self, topic, partition, event, out):
        self.sojourn_s.append(out.t - out.source_t)

    def tick(self, now_s, out):
        pass

    def restore(self, records, out):
        pass

    def revoke(self, partitions):
        pass


def mm1_mean_sojourn_s(arrival_per_s: float, service_per_s: float, messages: int, seed: int = 7) -> float:
    """One instance of the model fed by Poisson arrivals, with exponential handling times."""
    env = Clock()
    rng = np.random.default_rng(seed)
    host = Host(env, "h", None)
    zero = (LoadPoint(0.0, Distribution.constant(0.0)),)
    cluster = Cluster(env, 1, [host], Transport(env, zero, 1, rng))
    producer = Producer(env, cluster, host, linger_s=0.0)
    group = Group(env, "g", ("in",), 1)
    cluster.subscribe(group)
    handler = _Sojourn()
    service = (float(x) for x in iter(lambda: rng.exponential(1.0 / service_per_s), None))
    costs = Costs(in_s=0.0, out_s=0.0, batch_s=0.0, cpu_in_s=0.0, cpu_out_s=0.0, cpu_batch_s=0.0, in_draws=service)
    instance = Instance(env, "server", 0, handler, SimOutbox("", cluster, producer, StepSamples()), host, costs)
    group.members.append(instance)
    group.assign()

    def arrive():
        for i, gap in enumerate(arrivals.poisson(arrival_per_s, rng)):
            if i == messages:
                return
            yield env.timeout(gap)
            producer.send("in", 0, ({"orderId": f"m{i}"}, env.now), env.now)

    env.run(until=env.process(arrive()))
    env.run(until=env.now + 1.0)
    assert len(handler.sojourn_s) == messages
    return float(np.mean(handler.sojourn_s[messages // 10:]))  # without the empty start


@pytest.mark.parametrize("arrival_per_s", [500.0, 800.0])
def test_an_instance_is_an_mm1_queue(arrival_per_s):
    service_per_s = 1000.0
    expected = 1.0 / (service_per_s - arrival_per_s)  # M/M/1 mean sojourn time
    assert mm1_mean_sojourn_s(arrival_per_s, service_per_s, 200_000) == pytest.approx(expected, rel=0.05)


def test_the_clock_calls_in_the_order_timeouts_made_at_the_same_moments_would_run():
    clock, seen = Clock(), []
    clock.call_in(0.2, lambda: seen.append("call 0.2"))
    clock.timeout(0.1).callbacks.append(lambda _e: seen.append("timeout 0.1"))
    clock.timeout(0.2).callbacks.append(lambda _e: seen.append("timeout 0.2"))
    clock.call_in(0.1, lambda: seen.append("call 0.1"))

    def until():
        yield clock.timeout(0.3)

    clock.run_until(clock.process(until()))
    assert seen == ["timeout 0.1", "call 0.1", "call 0.2", "timeout 0.2"]
    assert clock.now == pytest.approx(0.3)
    with pytest.raises(ValueError):
        clock.call_in(-1e-9, seen.clear)
    clock.call_in(0.1, lambda: seen.append("call 0.4"))
    clock.run(until=0.5)  # SimPy's own run steps through both
    assert seen[-1] == "call 0.4" and clock.now == 0.5


def test_erlang_c_and_slowdown():
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: wait probability = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # 2 rho^2 / (1 + rho) at rho = 0.5
    assert slowdown(1, 0.5) == pytest.approx(2.0)  # M/M/1 processor sharing: 1 / (1 - rho)
    assert slowdown(2, 0.0) == 1.0
    assert slowdown(2, 0.9) > slowdown(2, 0.5) > 1.0


def test_latency_at_low_load_is_the_sum_of_its_hops():
    """With a fixed 1 ms transport and free services, each hop takes 1 ms whatever the workload's
    linger: services flush after each batch, and the load generator flushes when its next order is
    more than a millisecond away. Choreography has 5 hops between order-created and the load
    generator, orchestration 8."""
    free = dataclasses.replace(FLAT, service_us={"in": 0.0, "out": 0.0, "orchestrator_scale": 1.0, "batch": 0.0})
    for pattern, hops in (("choreography", 5), ("orchestration", 8)):
        result = simulate(Scenario(patterns.get(pattern), small(rate=50, failures={"payment": 0.0, "inventory": 0.0,
                                                                                     "shipping": 0.0}), free))
        latencies_ms = result.e2e[1] * 1000
        slips_ms = result.slip[1] * 1000
        assert np.median(latencies_ms - np.median(slips_ms)) == pytest.approx(1 * hops, abs=0.2), pattern


def test_histogram_of_matches_recording_value_by_value():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.integers(0, 2000, 5000), rng.lognormal(8, 2, 5000).astype(int), [0, 1, 3_600_000_000]])
    expected = new_histogram()
    for value in values:
        expected.record_value(int(min(value, 3_600_000_000)))
    actual = histogram_of(values.astype(float))
    assert actual.get_total_count() == expected.get_total_count()
    assert list(actual.counts) == list(expected.counts)
    assert (actual.get_min_value(), actual.get_max_value()) == (expected.get_min_value(), expected.get_max_value())
    assert summary_ms(actual) == summary_ms(expected)


def test_per_second_splits_by_end_time():
    hists = per_second(np.array([0.1, 0.9, 1.5, 3.2]), np.array([10.0, 20.0, 30.0, 40.0]), seconds=4)
    assert [h.get_total_count() for h in hists] == [2, 1, 0, 1]


# --- the flows match the real handlers' outcomes -------------------------------


@pytest.mark.parametrize("pattern", ["choreography", "orchestration"])
def test_every_order_ends_as_decide_says(pattern):
    result = simulate(Scenario(patterns.get(pattern), small(), FLAT))
    started, outcomes = result.started, result.outcomes
    assert len(outcomes) == len(started) > 0
    assert result.unexpected_outcomes == 0 and result.duplicates == 0
    assert set(outcomes.values()) == {"completed", "cancelled"}  # failures happen, compensations run
    assert result.steps.ends.get("refund") and result.steps.ends.get("release")


@pytest.mark.parametrize("pattern", ["choreography", "orchestration"])
def test_a_killed_instance_restarts_and_no_order_is_left(pattern):
    role = "orchestrator" if pattern == "orchestration" else "payment"
    workload = small(duration=8.0, faults=(Fault(type="kill", at_s=3.0, duration_s=1.0, role=role),))
    result = simulate(Scenario(patterns.get(pattern), workload, FLAT))
    assert len(result.outcomes) == len(result.started)
    assert result.unexpected_outcomes == 0
    # The stall shows: some order waited for the restart and the rebalance.
    assert result.e2e[1].max() > FLAT.startup_s + FLAT.rebalance_s


# --- determinism -----------------------------------------------------------------


def test_same_seed_same_numbers_other_seed_other_numbers():
    profile = load_profile()
    runs = [simulate(Scenario(patterns.get("orchestration"), small(seed=seed), profile)) for seed in (5, 5, 6)]
    a, b, c = (np.concatenate(r.e2e[:2]) for r in runs)
    assert np.array_equal(a, b)
    assert runs[0].cpu_s == runs[1].cpu_s and runs[0].messages == runs[1].messages
    assert not np.array_equal(a[: min(len(a), len(c))], c[: min(len(a), len(c))])


# --- the result dir --------------------------------------------------------------


def test_result_dir_reads_like_a_real_run(tmp_path):
    outcome = simulation.run(simulation.SimRequest(patterns.get("choreography"), small(), load_profile(),
                                                   output=tmp_path / "sim"), echo=lambda line: None)
    summary = read_summary(outcome.directory)
    assert summary["mode"] == "simulation" and summary["pattern"] == "choreography"
    assert summary["valid"] is True and outcome.exit_code == 0
    assert summary["orders"]["started"] == summary["orders"]["completed"] + summary["orders"]["cancelled"]
    for key in ("rate_target_per_s", "rate_offered_per_s", "rate_achieved_per_s", "messages_per_order",
                "bytes_per_order", "cpu_s", "environment", "config", "workload", "timeline"):
        assert key in summary, key
    e2e = summary["latency_ms"]["e2e"]
    intervals = read_hlog(outcome.directory / "e2e.hlog")
    assert sum(h.get_total_count() for h in intervals) == e2e["count"] > 0
    assert {"payment", "inventory", "shipping", "refund", "release", "order"} <= set(summary["latency_ms"]["steps"])
    for name in ("e2e-completed", "e2e-cancelled", "slip", "step-payment", "step-order"):
        read_hlog(outcome.directory / f"{name}.hlog")
    for name in ("e2e", "e2e-completed", "e2e-cancelled", "slip"):
        assert (outcome.directory / f"{name}.hgrm").read_text().startswith("       Value")
    with open(outcome.directory / TIMESERIES) as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == TimeseriesWriter.COLUMNS
    assert sum(int(r["offered"]) for r in rows) == summary["orders"]["started"]


def test_saturated_simulation_is_marked_invalid(tmp_path):
    slow = small(rate=400.0, processing={"payment": 0.004})  # payment can handle ~240 orders/s
    outcome = simulation.run(simulation.SimRequest(patterns.get("choreography"), slow, load_profile(),
                                                   output=tmp_path / "sim"), echo=lambda line: None)
    assert outcome.summary["valid"] is False and outcome.exit_code != 0
    assert outcome.summary["rate_achieved_per_s"] < 300


# --- profiles ----------------------------------------------------------------------


def test_default_profile_loads_and_round_trips(tmp_path):
    profile = load_profile()
    assert profile.source == DEFAULT_PROFILE
    assert profile.transport[0].transport_us.quantile(0.5) > 0
    again = load_profile(save_profile(profile, tmp_path / "p.json"))
    assert again.to_dict() == profile.to_dict()


def test_bad_profiles_are_named(tmp_path):
    good = load_profile().to_dict()
    with pytest.raises(ProfileError, match="schema_version"):
        parse_profile({**good, "schema_version": 99})
    with pytest.raises(ProfileError, match="unknown key 'surprise'"):
        parse_profile({**good, "surprise": 1})
    with pytest.raises(ProfileError, match="rebalance_s"):
        parse_profile({**good, "rebalance_s": -1})
    with pytest.raises(ProfileError, match="broker_cores_line must be"):
        parse_profile({**good, "broker_cores_line": [0.1, 0.0, 1e-5, 2.0]})
    with pytest.raises(ProfileError, match="load_generator.request_us"):
        parse_profile({**good, "load_generator": {**good["load_generator"], "request_us": -1}})
    # A profile fitted before requests were counted (a line in messages/s only) still loads.
    assert parse_profile({**good, "broker_cores_line": [0.4, 3e-6]}).broker_cores_line == (0.4, 3e-6)
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(path)


# --- the commands ------------------------------------------------------------------


def test_bench_simulate_writes_a_result_and_exits_like_run(tmp_path):
    from click.testing import CliRunner

    from bench.cli import cli

    out = tmp_path / "sim"
    result = CliRunner().invoke(cli, ["simulate", "--pattern", "orchestration", "--rate", "100", "--duration", "2s",
                                      "--warmup", "1s", "--seed", "3", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "orchestration: VALID" in result.output
    summary = read_summary(out)
    assert summary["workload"]["seed"] == 3 and summary["simulation"]["placement"] == "single"
    bad = CliRunner().invoke(cli, ["simulate", "--pattern", "choreography", "--profile", str(tmp_path / "none.json")])
    assert bad.exit_code == 2 and "no such profile" in bad.output


def test_validate_against_a_result_dir_pairs_it_with_a_simulation(tmp_path):
    from bench.sim import validate as validation

    real = simulation.run(simulation.SimRequest(patterns.get("choreography"), small(), load_profile(),
                                                output=tmp_path / "real"), echo=lambda line: None)
    request = validation.ValidateRequest((), (), (small(),), load_profile(), output=tmp_path / "v",
                                         against=(real.directory,))
    outcome = validation.validate(request, echo=lambda line: None)
    pair, = outcome.pairs
    assert pair.error("p50_ms") == 0.0  # the same model, workload and seed: the same numbers
    assert pair.error("cpu") == 0.0 and pair.real_cpu_us > 0
    assert "choreography" in validation.render_table(outcome)
    assert (tmp_path / "v" / validation.VALIDATION).exists()


def test_validate_fits_on_some_cells_and_judges_the_others(tmp_path):
    """Model results stand in for real runs here (the real matrix runs in
    tests/integration/test_validate.py): what is checked is the split, not the model."""
    from bench.sim import validate as validation

    quiet = lambda line: None
    dirs = [simulation.run(simulation.SimRequest(patterns.get("choreography"), small(rate=rate, duration=2.0),
                                                 load_profile(), output=tmp_path / f"real-{rate:g}"), quiet).directory
            for rate in (200.0, 400.0)]
    request = validation.ValidateRequest((), (), (small(),), load_profile(), output=tmp_path / "v",
                                         against=tuple(dirs), fit_rates=(200.0,))
    outcome = validation.validate(request, echo=quiet)
    assert [(p.rate_per_s, p.fitted) for p in outcome.pairs] == [(200.0, True), (400.0, False)]
    assert [p.rate_per_s for p in outcome.judged()] == [400.0]
    table = validation.render_table(outcome)
    assert "judged" in table and "fitted on the 'fit' cells" in table and "the fit never saw them" in table
    written = json.loads((tmp_path / "v" / validation.VALIDATION).read_text())
    assert written["fitted_on_rates"] == [200.0] and written["fitted"]["contention_us"] is not None
    assert [p["fitted"] for p in written["pairs"]] == [True, False]


def test_service_cpu_fitted_to_runs_at_several_rates_recovers_known_costs(tmp_path):
    """Runs made by the model with 40 us per Kafka request and 0.02 cores per instance at rest stand in
    for real ones: the fit, starting from a profile without either, finds both again from the
    services' CPU per order at two rates."""
    from bench.sim import fit

    quiet = lambda line: None
    # Without the wait for cores: with it, the CPU charged would change how batches form, and so
    # the requests the fit counts (the fit starts from no request or idle cost at all).
    base = dataclasses.replace(load_profile(), contention_us=0.0)
    known = dataclasses.replace(base, service_cpu_us={**base.service_cpu_us, "request": 40.0, "idle_cores": 0.02})
    refs = [fit.reference(simulation.run(simulation.SimRequest(patterns.get(name), small(rate=rate, duration=3.0),
                                                               known, output=tmp_path / f"{name}-{rate:g}"), quiet).directory)
            for name in ("choreography", "orchestration") for rate in (200.0, 1500.0)]
    fitted = fit.fit_cpu(base, refs, quiet)
    assert fitted.service_cpu_us["request"] == pytest.approx(40.0, rel=0.15)
    assert fitted.service_cpu_us["idle_cores"] == pytest.approx(0.02, rel=0.15)
    # Per order, requests and rest cost less as the rate grows: the model's CPU per order falls.
    low, high = (json.loads((tmp_path / f"choreography-{r}" / "summary.json").read_text()) for r in ("200", "1500"))
    per_order = lambda s: sum(s["cpu_s"]["services"].values()) / s["orders"]["started"]
    assert per_order(high) < per_order(low)


def test_cpu_fit_weighs_each_run_by_its_own_cpu_per_order():
    """Two runs whose CPU per order differs a hundredfold (200/s against 20,000/s) and that no single
    cost per request explains: fitted on absolute errors, the costly run decides the term alone and
    the cheap one is 50% off; on errors relative to each run's own figure, the worse miss is smaller."""
    from bench.sim import fit

    x = np.array([[10.0], [0.05]])  # Kafka requests per order
    y = np.array([1000.0, 10.0])  # us per order: 100 us per request for the first run, 200 for the second
    worst = lambda c: float(np.max(np.abs(x[:, 0] * c / y - 1)))
    absolute = fit._nonnegative_lstsq(x, y)[0]
    relative = fit._nonnegative_lstsq(x, y, scale=y)[0]
    assert absolute == pytest.approx(100.0, rel=0.01) and worst(absolute) == pytest.approx(0.5, rel=0.01)
    assert relative == pytest.approx(120.0, rel=0.01) and worst(relative) == pytest.approx(0.4, rel=0.01)


def test_load_generator_and_broker_cpu_fitted_per_request_recover_known_costs(tmp_path):
    """Runs made by the model with known load generator and broker costs per Kafka request stand in for
    real ones: the fit, starting from a profile with other values, finds them again from runs at
    three rates (at 200/s a request carries one message, at 3000/s several)."""
    from bench.sim import fit

    quiet = lambda line: None
    base = dataclasses.replace(load_profile(), contention_us=0.0)
    known = dataclasses.replace(base, load_generator={"order_us": 20.0, "idle_cores": 0.01, "request_us": 100.0},
                                broker_cores_line=(0.1, 0.0, 60e-6))
    refs = [fit.reference(simulation.run(simulation.SimRequest(patterns.get("choreography"), small(rate=rate, duration=3.0),
                                                               known, output=tmp_path / f"c-{rate:g}"), quiet).directory)
            for rate in (200.0, 1000.0, 3000.0)]
    start = dataclasses.replace(base, load_generator={"order_us": 50.0, "idle_cores": 0.03},
                                broker_cores_line=(0.4, 3e-6))
    fitted = fit.fit_cpu(start, refs, quiet)
    assert fitted.load_generator["request_us"] == pytest.approx(100.0, rel=0.15)
    assert fitted.load_generator["order_us"] == pytest.approx(20.0, abs=8.0)
    rest, _, per_request = fitted.broker_cores_line
    assert per_request == pytest.approx(60e-6, rel=0.2) and rest == pytest.approx(0.1, abs=0.03)


def test_a_busy_host_grows_the_batches_it_handles():
    """CPU asked for beyond the cores delays each process's next fetch and acknowledgement, so more
    arrives per batch and the requests per message fall, as they do on a saturated machine: the
    messages per produce request at a rate the host cannot keep up with are far above those of a host
    with cores to spare (whose batches follow the rate alone)."""
    w = small(rate=15000.0, duration=2.0)
    pattern = patterns.get("choreography")
    # One host either way: with two cores it keeps up, with one every process of the run shares it.
    spare = simulate(Scenario(pattern, w, dataclasses.replace(load_profile(), cores=2)))
    busy = simulate(Scenario(pattern, w, dataclasses.replace(load_profile(), cores=1)))
    assert spare.mean_utilisation < 0.85 and busy.mean_utilisation > 0.95
    per_request = lambda r: r.batching["all"]["messages_per_produce_request"]
    assert per_request(busy) > 2 * per_request(spare)


def test_a_batch_whose_linger_runs_out_mid_handling_leaves_then():
    """A service flushes after each batch it handles, but librdkafka sends a partition's batch when its
    linger runs out whatever the application does: with 2 ms of processing per message and 5 ms of
    linger, a batch of 20 messages leaves in several produce requests, not in one at the flush."""
    env = Clock()
    transport = Transport(env, FLAT.transport, 1, np.random.default_rng(1))
    cluster = Cluster(env, 1, [Host(env, "b", None)], transport)
    producer = Producer(env, cluster, Host(env, "h", None), 0.005, flushed=True)
    for k in range(20):
        producer.send("t", 0, ({"orderId": f"o{k}"}, k * 0.002), k * 0.002)
    producer.flush(0.040)
    assert producer.requests == 7  # 0-4 ms, 6-10, 12-16, 18-22, 24-28, 30-34, 36-38 (this one at the flush)
    arrived = []
    cluster.arrive = lambda topic, partition, msgs: arrived.append(len(msgs))
    env.run_until(env.timeout(1.0))
    assert arrived == [3, 3, 3, 3, 3, 3, 2]  # each batch reached the broker once


def test_a_role_with_processing_time_pays_a_sleeps_cpu_per_message():
    """The runtime sleeps per message for a step's processing time; the model charges the profile's
    CPU of a sleep for each message that role handles, and nothing to the roles without one."""
    six = load_workload(WORKLOADS / "saga-6-steps.yaml").with_overrides(rate_per_s=200.0, duration_s=2.0, warmup_s=1.0)
    runs = [simulate(Scenario(patterns.get("choreography"), six,
                              dataclasses.replace(load_profile(), contention_us=0.0, sleep_cpu_us=cpu)))
            for cpu in (0.0, 50.0)]
    assert runs[1].cpu_s["packing"] - runs[0].cpu_s["packing"] == pytest.approx(50e-6 * runs[1].processed["packing"],
                                                                                  rel=0.01)
    assert runs[1].cpu_s["payment"] == pytest.approx(runs[0].cpu_s["payment"])


def test_service_cpu_at_rest_is_charged_per_instance_second():
    """An instance's CPU at rest follows how long it lives, not what it handles."""
    base = load_profile()
    quiet = dataclasses.replace(base, service_cpu_us={**base.service_cpu_us, "idle_cores": 0.0})
    idle = dataclasses.replace(base, service_cpu_us={**base.service_cpu_us, "idle_cores": 0.05})
    runs = [simulate(Scenario(patterns.get("choreography"), small(rate=50.0, duration=2.0), p)) for p in (quiet, idle)]
    extra = {role: runs[1].cpu_s[role] - runs[0].cpu_s.get(role, 0.0) for role in runs[1].processed}
    for role, seconds in extra.items():
        assert seconds == pytest.approx(0.05 * runs[1].elapsed_s, rel=0.05), role
    assert runs[1].cpu_s["load_generator"] == pytest.approx(runs[0].cpu_s["load_generator"])


@pytest.mark.parametrize("text, rates, message", [
    ("200,500", (200.0, 500.0), "leave at least one rate"),
    ("300", (200.0, 500.0), "one of --rates"),
    ("x", (200.0,), "comma-separated numbers"),
])
def test_fit_rates_must_leave_cells_to_judge(text, rates, message):
    from bench.errors import BadInput
    from bench.sim import validate as validation

    with pytest.raises(BadInput, match=message):
        validation.fit_rates(text, rates)


def test_two_workloads_of_one_name_are_refused():
    from bench.errors import BadInput
    from bench.sim import validate as validation

    request = validation.ValidateRequest((), (200.0,), (small(), small()), load_profile())
    with pytest.raises(BadInput, match="two workloads named"):
        validation.check(request)


# --- sagas defined in the workload -------------------------------------------------


@pytest.mark.parametrize("pattern, per_order", [("choreography", lambda n: n + 2), ("orchestration", lambda n: 3 * n + 3)])
def test_the_simulation_runs_the_six_step_workload_as_a_run_does(tmp_path, pattern, per_order):
    six = load_workload(WORKLOADS / "saga-6-steps.yaml").with_overrides(rate_per_s=200.0, duration_s=4.0, warmup_s=1.0)
    outcome = simulation.run(simulation.SimRequest(patterns.get(pattern), six, load_profile(), output=tmp_path / "s"),
                             echo=lambda line: None)
    s = read_summary(outcome.directory)
    assert outcome.exit_code == 0 and s["clean"] and s["orders"]["cancelled"] > 0
    names = six.saga.names
    coordinator = "order" if pattern == "choreography" else "orchestrator"
    assert list(s["latency_ms"]["steps"]) == [coordinator, *names, *(x.undo_span for x in six.saga.steps[:-1])]
    assert set(s["audit"]["compensations"]) == set(names[:-1])
    happy = simulate(Scenario(patterns.get(pattern), six.with_overrides(
        saga={"steps": [{"name": n} for n in names]}), FLAT))
    assert sum(happy.messages.values()) == per_order(6) * len(happy.started)


def test_the_simulation_runs_a_parallel_group_with_every_order_as_decided():
    par = load_workload(WORKLOADS / "saga-parallel.yaml").with_overrides(rate_per_s=200.0, duration_s=4.0, warmup_s=1.0)
    for pattern in ("choreography", "orchestration"):
        result = simulate(Scenario(patterns.get(pattern), par, FLAT))
        assert result.outcomes == {o: par.saga.expected_outcome(o) for o in result.started}


def test_live_audit_cpu_is_charged_to_the_load_generators_host_and_fitted_back(tmp_path):
    """The audit's CPU follows the records produced; a run made with a known cost per record gives
    that cost back to the fit, and the model's CPU per order (the pattern's cost) leaves it out."""
    from bench.sim import fit
    from bench.sim import validate as validation

    known = dataclasses.replace(load_profile(), auditor_us=3.0)
    run = simulation.run(simulation.SimRequest(patterns.get("orchestration"), small(rate=1000.0, duration=4.0), known,
                                               output=tmp_path / "o"), lambda line: None)
    records = sum(json.loads((tmp_path / "o" / "summary.json").read_text())["audit"]["messages_per_topic"].values())
    # Charged a load window at a time: the records of the run's last tenth of a second are not.
    assert run.summary["cpu_s"]["auditor"] == pytest.approx(3.0e-6 * records, rel=0.05)
    assert fit.fit_auditor(load_profile(), [fit.reference(tmp_path / "o")], lambda line: None).auditor_us \
        == pytest.approx(3.0, rel=0.05)
    cpu = run.summary["cpu_s"]
    without = (cpu["load_generator"] + sum(cpu["services"].values())) / run.summary["orders"]["started"] * 1e6
    assert validation.cpu_us_per_order(run.summary, broker=False) == pytest.approx(without)
