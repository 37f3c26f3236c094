import copy
import dataclasses
import json
import pickle
import re
from pathlib import Path

import pytest

from bench.flow.workload import (
    DEFAULT_CLIENT,
    DEFAULT_WORKLOAD,
    KNOWN_KEYS,
    Fault,
    Workload,
    WorkloadError,
    load_workload,
    parse_duration,
    parse_workload,
)

SHIPPED = sorted(DEFAULT_WORKLOAD.parent.glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(WorkloadError) as caught:
        load_workload(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_defaults():
    w = Workload(name="w")
    assert (w.arrival, w.rate_per_s, w.duration_s, w.warmup_s, w.drain_s, w.seed) == ("poisson", 1000.0, 60.0, 10.0, 30.0, 1)
    assert (w.partitions, w.replication_factor, w.min_insync_replicas, w.acks) == (1, 1, 1, "all")
    roles = ("order", "orchestrator", "payment", "inventory", "shipping")
    assert w.roles == roles and dict(w.instances) == dict.fromkeys(roles, 1)
    assert [(s.name, s.failure) for s in w.saga.steps] == [("payment", 0.02), ("inventory", 0.02), ("shipping", 0.01)]
    assert all(not w.processing_of(role) for role in roles)
    assert (w.payload_bytes, w.step_timeout_s, w.step_retries) == (0, 5.0, 2)
    assert (w.delivery, w.latency_bound_p99_s) == ("at-least-once", 0.5)
    assert dict(w.client) == {"linger.ms": 5, "compression.type": "none", "fetch.wait.max.ms": 100,
                              "session.timeout.ms": 6000, "heartbeat.interval.ms": 1500}
    assert w.faults == () and w.source is None


def test_auto_partitions_follow_the_most_instances():
    w = Workload(name="w", instances={"payment": 3})
    assert w.partitions == 3
    assert w.with_overrides(instances={"inventory": 4}).partitions == 4
    assert w.with_overrides(partitions=2).partitions == 2
    assert Workload(name="w", partitions=6, instances={"payment": 3}).with_overrides(instances={}).partitions == 6
    assert pickle.loads(pickle.dumps(w)).with_overrides(instances={}).partitions == 1
    assert parse_workload(w.to_source()).partitions == 3  # what the services are handed


def test_default_file_spells_out_the_builtin_defaults():
    from_file = load_workload(None)
    assert from_file.source == DEFAULT_WORKLOAD
    builtin = Workload(name=from_file.name, description=from_file.description, source=from_file.source)
    assert from_file == builtin


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_workload_loads(path):
    w = load_workload(path)
    assert w.name == path.stem
    json.dumps(w.to_dict())


def test_shipped_workloads_have_their_shape():
    assert {p.name for p in SHIPPED} >= {"default.yaml", "tutorial.yaml", "5000-orders.yaml", "processing-2ms.yaml"}
    tutorial = load_workload(DEFAULT_WORKLOAD.parent / "tutorial.yaml")
    assert (tutorial.partitions, tutorial.replication_factor, tutorial.rate_per_s, tutorial.arrival) == (1, 1, 50.0, "constant")
    fast = load_workload(DEFAULT_WORKLOAD.parent / "5000-orders.yaml")
    assert (fast.rate_per_s, fast.arrival, fast.duration_s, fast.warmup_s) == (5000.0, "constant", 60.0, 10.0)
    slow = load_workload(DEFAULT_WORKLOAD.parent / "processing-2ms.yaml")
    assert {role: slow.processing_of(role).median_s for role in slow.roles} == {
        "order": 0.0, "payment": 0.002, "inventory": 0.002, "shipping": 0.002, "orchestrator": 0.0}


def test_full_file(tmp_path):
    w = load_workload(write(tmp_path, """
name: full
arrival: constant
rate: 250.5
duration: 2m
warmup: 500ms
drain: 1.5
acks: 1
instances: {payment: 3}
failures: {shipping: 0}
processing: {payment: 2ms}
client: {linger.ms: 5, enable.idempotence: true}
faults:
  - {type: kill, at: 30s, role: payment, instance: 2}
  - {type: pause, at: 10s, duration: 5s, role: inventory, count: 2}
  - {type: slow, at: 1m, delay: 250ms, topic: payment-events}
"""))
    assert (w.rate_per_s, w.duration_s, w.warmup_s, w.drain_s, w.acks) == (250.5, 120.0, 0.5, 1.5, "1")
    assert w.instances["payment"] == 3 and w.instances["order"] == 1
    assert [s.failure for s in w.saga.steps] == [0.02, 0.02, 0.0]
    assert w.processing_of("payment").median_s == pytest.approx(0.002)
    assert dict(w.client) == {**DEFAULT_CLIENT, "linger.ms": 5, "enable.idempotence": True}
    assert w.faults[0] == Fault(type="kill", at_s=30.0, role="payment", instance=2)
    assert w.faults[1].duration_s == 5.0 and w.faults[1].count == 2
    assert w.faults[2].delay_s == pytest.approx(0.25) and w.faults[2].topic == "payment-events"
    assert w.source == tmp_path / "x.yaml"
    assert w.to_dict()["faults"][0]["at_s"] == 30.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("500ms", 0.5), ("10s", 10.0), ("2m", 120.0), ("1.5s", 1.5), ("250us", 0.00025),
        ("1h", 3600.0), ("0ms", 0.0), (" 3 s ", 3.0), ("7", 7.0), (2, 2.0), (0.25, 0.25),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "ms", "5x", "-1s", "1e3s", "1 minute", True, None, float("inf"), -2])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_unknown_key_is_named_with_the_known_ones(tmp_path):
    message = error_of(tmp_path, "name: x\nrat: 5\n")
    assert "unknown key 'rat'" in message
    assert "(known: " + ", ".join(KNOWN_KEYS) + ")" in message


@pytest.mark.parametrize(
    "yaml_text, named",
    [
        ("failures: {payment: 1.5}", "failures.payment must be a probability in [0, 1], got 1.5"),
        ("failures: {refund: 0.1}", "failures.refund is not a step of the default saga"),
        ("rate: 0", "rate must be a number > 0, got 0"),
        ("rate: fast", "rate must be a number > 0, got 'fast'"),
        ("duration: soon", "duration: invalid duration 'soon'"),
        ("warmup: -1s", "warmup: invalid duration '-1s'"),
        ("arrival: burst", "arrival must be one of constant, poisson; got 'burst'"),
        ("partitions: 0", "partitions must be an integer >= 1, got 0"),
        ("partitions: 1.5", "partitions must be an integer >= 1, got 1.5"),
        ("seed: true", "seed must be an integer >= 0, got True"),
        ("replication_factor: 1\nmin_insync_replicas: 2", "min_insync_replicas (2) must not exceed replication_factor (1)"),
        ("acks: some", "acks must be one of all, -1, 0, 1; got 'some'"),
        ("acks: 1\ndelivery: exactly-once", "acks must be 'all' for delivery 'exactly-once'"),
        ("delivery: at-most-once", "delivery must be one of at-least-once, exactly-once"),
        ("instances: {payment: 0}", "instances.payment must be an integer >= 1, got 0"),
        ("instances: {billing: 1}", "instances.billing is not known"),
        ("instances: 3", "instances must be a mapping, got 3"),
        ("processing: {payment: slow}", "processing.payment must be a duration such as '2ms'"),
        ("client: {linger.ms: [1]}", "client.linger.ms must be a single value"),
        ("client: {acks: all}", "client.acks is set by the top-level 'acks' key"),
        ("payload_bytes: -1", "payload_bytes must be an integer >= 0"),
        ("step_retries: -1", "step_retries must be an integer >= 0"),
        ("faults: {type: kill}", "faults must be a list of mappings"),
        ("faults: [{type: kill}]", "faults[0].at is required"),
        ("faults: [{at: 1s}]", "faults[0].type is required"),
        ("faults: [{type: kill, at: 1s, when: 2}]", "unknown key 'faults[0].when' (known: type, at, duration"),
        ("faults: [{type: explode, at: 1s}]", "faults[0].type must be one of kill, pause, broker-kill, poison, duplicate, slow"),
        ("faults: [{type: kill, at: soon}]", "faults[0].at: invalid duration 'soon'"),
        ("faults: [{type: kill, at: 1s, role: bank}]", "faults[0].role must be one of order, orchestrator, payment"),
        ("faults: [{type: poison, at: 1s, instance: 0}]", "faults[0].instance needs a role"),
        ("faults: [{type: kill, at: 1s, role: payment, instance: 1}]", "faults[0].instance is 1 but instances.payment is 1"),
        ("faults: [{type: poison, at: 1s, count: 0}]", "faults[0].count must be an integer >= 1"),
        ("faults: [{type: kill, at: 70s}]", "faults[0].at (70s) is not before the load ends (70s"),
        ("description: [a]", "description must be a string"),
    ],
)
def test_bad_value_is_named(tmp_path, yaml_text, named):
    assert named in error_of(tmp_path, "name: x\n" + yaml_text + "\n")


def test_file_level_errors(tmp_path):
    assert "name is required" in error_of(tmp_path, "rate: 5\n")
    assert "expected a mapping of workload keys, got list" in error_of(tmp_path, "- a\n")
    assert re.search(r"invalid YAML at line \d+: ", error_of(tmp_path, "name: x\nrate: [1\n"))
    missing = tmp_path / "nope.yaml"
    with pytest.raises(WorkloadError, match=f"^{missing}: cannot read workload"):
        load_workload(missing)


def test_overrides_revalidate():
    w = load_workload(None)
    faster = w.with_overrides(rate_per_s=5000, duration_s=parse_duration("5s"))
    assert (faster.rate_per_s, faster.duration_s, w.rate_per_s) == (5000.0, 5.0, 1000.0)
    with pytest.raises(WorkloadError, match=r"default\.yaml: rate must be a number > 0, got -1"):
        w.with_overrides(rate_per_s=-1)
    with pytest.raises(WorkloadError, match=r"failures\.payment must be a probability"):
        w.with_overrides(failures={"payment": 2})
    assert w.with_overrides(instances={"payment": 4}).instances["payment"] == 4
    with pytest.raises(TypeError):
        w.with_overrides(rate=5)


def test_override_that_strands_a_fault_is_refused():
    w = Workload(name="f", faults=(Fault(type="kill", at_s=30.0, role="payment"),))
    with pytest.raises(WorkloadError, match=r"faults\[0\]\.at \(30s\) is not before the load ends \(15s"):
        w.with_overrides(duration_s=5.0)


def test_frozen_all_the_way_down():
    w = Workload(name="w", instances={"payment": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.rate_per_s = 5  # type: ignore[misc]
    for mapping in (w.instances, w.processing, w.client):
        with pytest.raises(TypeError):
            mapping["payment"] = 9  # type: ignore[index]
    assert isinstance(w.faults, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Fault(type="kill", at_s=1.0).at_s = 2.0  # type: ignore[misc]


def test_caller_dict_is_copied_not_shared():
    given = {"payment": 2}
    w = Workload(name="w", instances=given)
    given["payment"] = 7
    assert w.instances["payment"] == 2


def test_pickles_and_copies():
    w = load_workload(DEFAULT_WORKLOAD.parent / "processing-2ms.yaml")
    assert pickle.loads(pickle.dumps(w)) == w
    assert copy.deepcopy(w) == w


def test_to_dict_is_plain_json():
    d = Workload(name="w", faults=(Fault(type="broker-kill", at_s=3.0),)).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["rate_per_s"] == 1000.0 and d["faults"][0]["type"] == "broker-kill" and d["source"] is None


def test_a_workload_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(WorkloadError) as err:
        load_workload(path)
    assert str(err.value) == f"{path}: not UTF-8 text (byte 9): save the workload as UTF-8"


@pytest.mark.parametrize("changes, says", [
    ({"payload_bytes": 2_000_000}, "payload_bytes (2000000) must be at most 900000"),
    ({"rate_per_s": 1e9}, "rate (1e+09/s) must be at most"),
    ({"rate_per_s": 0.001, "duration_s": 10.0}, "starts no order in a 10s measurement"),
])
def test_inputs_that_would_fail_late_or_hang_are_refused_at_load(changes, says):
    with pytest.raises(WorkloadError, match=re.escape(says)):
        Workload(name="w", **changes)


# --- the saga -----------------------------------------------------------------

def test_a_saga_key_defines_the_steps_roles_and_processing(tmp_path):
    w = load_workload(write(tmp_path, """
name: mine
saga:
  steps:
    - {name: fraud-check, failure: 0.01, processing: 1ms}
    - parallel:
        - {name: payment, failure: 0.02}
        - {name: stock, processing: {lognormal: {median: 2ms, sigma: 0.5}}}
    - {name: delivery}
instances: {stock: 2}
processing: {orchestrator: 0.5ms}
faults: [{type: kill, at: 5s}]
"""))
    assert w.saga.describe() == "fraud-check -> (payment | stock) -> delivery"
    assert w.roles == ("order", "orchestrator", "fraud-check", "payment", "stock", "delivery")
    assert w.instances["stock"] == 2 and w.partitions == 2
    assert w.processing_of("fraud-check").median_s == pytest.approx(0.001)
    stock = w.processing_of("stock")
    assert (stock.median_s, stock.sigma) == (pytest.approx(0.002), 0.5)
    assert w.processing_of("orchestrator").median_s == pytest.approx(0.0005)
    assert w.faults[0].role == "fraud-check"  # a fault without a role hits the first step
    assert w.saga.pivot.name == "delivery" and not w.saga.pivot.compensable
    assert parse_workload(w.to_source()) == dataclasses.replace(w, source=None)  # what the services are handed
    assert pickle.loads(pickle.dumps(w)) == w


def test_a_lognormal_processing_draws_around_its_median():
    w = Workload(name="w", saga={"steps": [{"name": "a", "processing": {"lognormal": {"median": "1ms", "sigma": 0.5}}}]})
    draw = w.processing_of("a").sampler("seed")
    draws = sorted(draw() for _ in range(4001))
    assert draws[2000] == pytest.approx(0.001, rel=0.1) and draws[0] > 0 and draws[-1] > 0.002
    one, two = (w.processing_of("a").sampler("seed") for _ in range(2))
    assert [one() for _ in range(5)] == [two() for _ in range(5)]  # seeded: a run repeats


def test_without_a_saga_the_old_keys_shape_the_default_saga():
    w = Workload(name="w", failures={"inventory": 0.5}, processing={"payment": "2ms", "order": "1ms"})
    assert w.saga.names == ("payment", "inventory", "shipping")
    assert [s.failure for s in w.saga.steps] == [0.02, 0.5, 0.01]
    assert w.processing_of("payment").median_s == pytest.approx(0.002)
    assert w.processing_of("order").median_s == pytest.approx(0.001)
    assert "failures" not in w.to_dict() and w.to_dict()["saga"]["steps"][1]["failure"] == 0.5


@pytest.mark.parametrize("yaml_text, says", [
    ("saga: {steps: [{name: a}]}\nfailures: {payment: 0.1}",
     "failures cannot be given with saga: give each step its probability in saga.steps"),
    ("saga: {steps: [{name: a}, {name: b}]}\nprocessing: {a: 2ms}",
     "processing.a is a step: give its processing in saga.steps"),
    ("saga: {steps: [{name: a}]}\ninstances: {payment: 2}", "instances.payment is not known (known: order, orchestrator, a)"),
    ("saga: {steps: []}", "saga.steps must be a non-empty list of steps"),
    ("saga: [a, b]", "saga must be a mapping with one key, steps"),
    ("saga: {steps: [{name: a, failure: 2}]}", "saga.steps[0].failure must be a probability in [0, 1], got 2"),
    ("saga: {steps: [{name: a, processing: fast}]}", "saga.steps[0].processing must be a duration such as '2ms'"),
    ("saga: {steps: [{name: a, processing: {normal: {median: 1ms}}}]}",
     "saga.steps[0].processing must be a duration such as '2ms', or {lognormal: {median: 1ms, sigma: 0.5}}"),
    ("saga: {steps: [{name: a}, {name: a}]}", "saga.steps[1].name: two steps are named 'a'"),
    ("saga: {steps: [{name: replies}]}", "'order-processor-replies' is already a bench topic"),
    ("saga: {steps: [{name: order}]}", "'order' is already a bench role"),
    ("saga: {steps: [{name: Pay}]}", "saga.steps[0].name must be lower-case letters"),
    ("saga: {steps: [{name: a}, {parallel: [{name: b}, {name: c}]}]}",
     "saga.steps[1]: the last step is the pivot, which is never undone, so it cannot be a parallel group"),
    ("saga: {steps: [{parallel: [{name: b}]}, {name: c}]}", "saga.steps[0].parallel must list two or more steps"),
    ("saga: {steps: [{name: a, retries: 3}]}", "saga.steps[0]: unknown key 'retries'"),
    ("saga: {steps: [{name: a}]}\nfaults: [{type: kill, at: 1s, role: payment}]", "faults[0].role must be one of order, orchestrator, a"),
])
def test_a_bad_saga_is_one_line_naming_the_key(tmp_path, yaml_text, says):
    assert says in error_of(tmp_path, "name: x\n" + yaml_text + "\n")


def test_overriding_the_saga_keeps_the_instances_of_roles_both_sagas_have():
    w = Workload(name="w", instances={"orchestrator": 2, "payment": 3, "shipping": 2})
    two = w.with_overrides(saga={"steps": [{"name": "a"}, {"name": "shipping"}]})
    assert dict(two.instances) == {"order": 1, "orchestrator": 2, "a": 1, "shipping": 2}
