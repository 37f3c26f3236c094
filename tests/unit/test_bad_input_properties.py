"""Property-based bad input (hypothesis): generated workloads, properties files, summary.json trees
and profiles (valid ones mutated: keys dropped, types swapped, huge and non-finite numbers, odd
unicode) fed to every command that reads them. The property: exit 0, or exit 1/2 with one line;
no traceback; no secret in the output; nothing outside bench's own files changed.

Examples hypothesis found are kept as regular tests in test_bad_input.py."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import cli
from bench.sim.profile import DEFAULT_PROFILE

SECRET = "hunter2-Sekr1t"
FAST = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
SLOW = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def check_outcome(result, *, own: Path | None = None) -> None:
    """Exit 0, or 1/2 with one line; no traceback; no secret."""
    output = result.output
    assert result.exit_code in (0, 1, 2, 3), (result.exit_code, output, result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}\n{output}")
    assert "Traceback" not in output
    assert SECRET not in output
    errors = [line for line in output.splitlines() if line.startswith("Error:") or line.startswith("bench: error")]
    if result.exit_code == 2:  # bad input: one line, and nothing else
        assert len(errors) == 1 and len(output.strip().splitlines()) == 1, output
    if errors:  # exit 1 is also a verdict (a regression, a failed audit): then no error line
        assert len(errors) == 1 and "\n" not in errors[0] and len(errors[0]) < 2000, output


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=True)


# --- generated values ---------------------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\ud800", "\x00", "$x^{$", "\u202e", "é", "💥", "\\", "&a", "*a", "{", "- -", "'", '"']),
)
odd_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 2**64, 2**64 - 1, 1e308, -0.0]),
)
scalar = st.one_of(st.none(), st.booleans(), odd_number, odd_text)
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(odd_text, inner, max_size=3)), max_leaves=8)


def mutate(tree, data):
    """One mutation of a JSON-like tree: drop a key, swap a type, or put a huge/odd value."""
    tree = copy.deepcopy(tree)
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((*path, k))
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node[:5]):
                paths.append((*path, i))
                walk(v, (*path, i))

    walk(tree, ())
    if not paths:
        return tree
    path = data.draw(st.sampled_from(paths))
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    action = data.draw(st.sampled_from(["drop", "swap", "swap", "number"]))
    if action == "drop":
        del parent[path[-1]]
    elif action == "number":
        parent[path[-1]] = data.draw(odd_number)
    else:
        parent[path[-1]] = data.draw(value)
    return tree


# --- workloads ----------------------------------------------------------------------------

BASE_WORKLOAD = {
    "name": "gen", "rate": 100, "duration": "2s", "warmup": "1s", "seed": 7, "arrival": "constant",
    "instances": {"payment": 2}, "payload_bytes": 10,
    "client": {"linger.ms": 5, "sasl.password": SECRET},
    "faults": [{"type": "kill", "at": "1s", "role": "payment", "instance": 0}],
    "failures": {"payment": 0.1},
}


def _yaml_text(document) -> str:
    try:
        return yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:
        return json.dumps(document, ensure_ascii=False, default=str)


@FAST
@given(st.data())
def test_generated_workloads_are_one_line_or_accepted(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("w")
    document = mutate(BASE_WORKLOAD, data)
    text = _yaml_text(document)
    if data.draw(st.booleans()):  # the secret unquoted in a client section of broken YAML
        text += f"\nclient:\n  sasl.password: {SECRET}: [\n"
    path = tmp / "w.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    blocker = tmp / "a-file"
    blocker.write_text("mine")
    before = snapshot(tmp)
    result = invoke("run", "--pattern", "choreography", "--workload", path, "--output", blocker / "out")
    check_outcome(result)
    assert result.exit_code == 2  # a workload error, or the output under a file: nothing ran
    assert snapshot(tmp) == before


# --- hosts files ---------------------------------------------------------------------------

BASE_HOSTS = {
    "secret_file": "secret",
    "hosts": [{"name": "h1", "agent": "10.0.0.2:7070", "services": {"payment": 1}},
              {"name": "h2", "agent": "10.0.0.3:7070", "services": {"shipping": 1, "inventory": 1}}],
}


@FAST
@given(st.data())
def test_generated_hosts_files_are_one_line(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("h")
    document = mutate(BASE_HOSTS, data)
    if data.draw(st.booleans()):  # a value that could be a secret, where an address goes
        document.setdefault("hosts", [{}])
        if isinstance(document["hosts"], list) and document["hosts"] and isinstance(document["hosts"][0], dict):
            document["hosts"][0]["agent"] = SECRET
    path = tmp / "hosts.yaml"
    path.write_text(_yaml_text(document), encoding="utf-8", errors="surrogatepass")
    (tmp / "secret").write_text(SECRET * 3)
    before = snapshot(tmp)
    # Without --bootstrap-servers the broker is this host's loopback, which a valid hosts file is
    # refused for too: every outcome is one line, before any broker or agent is asked.
    result = invoke("run", "--pattern", "orchestration", "--hosts", path, "--output", tmp / "out")
    check_outcome(result)
    assert result.exit_code == 2
    assert snapshot(tmp) == before


# --- properties files ---------------------------------------------------------------------

prop_line = st.one_of(
    st.just(f"sasl.password={SECRET}"),
    st.just(f"{SECRET}"),
    st.just(f"sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
            f"username=\"u\" password=\"{SECRET}\";"),
    st.just(r"bad.escape=\uZZZZ"), st.just(r"surrogate=\ud800"), st.just("x=\\"), st.just("nul=\x00"),
    st.just("ssl.truststore.location=/x.jks"), st.just("linger.ms=NaN"), st.just(f"linger.ms={SECRET}"),
    st.builds(lambda k, v: f"{k}={v}", odd_text, odd_text),
    st.builds(lambda k, v: f"{k}: {v}", st.sampled_from(["socket.timeout.ms", "client.id", "acks", "x.y"]), odd_text),
)


@FAST
@given(st.lists(prop_line, min_size=1, max_size=5))
def test_generated_properties_are_one_line_or_accepted(tmp_path_factory, lines):
    tmp = tmp_path_factory.mktemp("p")
    path = tmp / "client.properties"
    path.write_bytes("\n".join(lines).encode("utf-8", errors="surrogatepass"))
    blocker = tmp / "a-file"
    blocker.write_text("mine")
    before = snapshot(tmp)
    result = invoke("run", "--pattern", "orchestration", "--kafka-config", path, "--output", blocker / "out")
    check_outcome(result)
    assert result.exit_code == 2
    assert snapshot(tmp) == before


# --- summary.json trees -------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_like(tmp_path_factory) -> Path:
    """A complete result directory (a short simulated run: the same files and keys as a real one)."""
    out = tmp_path_factory.mktemp("base") / "run"
    result = invoke("simulate", "--pattern", "choreography", "--rate", "20", "--duration", "1s", "--warmup", "0s",
                    "--output", out)
    assert result.exit_code == 0, result.output
    return out


def _mutated_run(real_like: Path, tmp: Path, data) -> Path:
    run = tmp / "run"
    shutil.copytree(real_like, run)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps(mutate(summary, data), ensure_ascii=False, allow_nan=True),
                                      encoding="utf-8", errors="surrogatepass")
    return run


@FAST
@given(st.data())
def test_compare_takes_any_summary_tree(real_like, tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("c")
    run = _mutated_run(real_like, tmp, data)
    before = snapshot(tmp)
    check_outcome(invoke("compare", real_like, run, "--fail-on", "p99:+10%"))
    assert snapshot(tmp) == before


@SLOW
@given(st.data())
def test_report_takes_any_summary_tree(real_like, tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("r")
    run = _mutated_run(real_like, tmp, data)
    (tmp / "notes-time.png").write_bytes(b"the user's own")
    before = snapshot(tmp)
    result = invoke("report", run, "--output", tmp / "notes.html")
    check_outcome(result)
    assert (tmp / "notes-time.png").read_bytes() == b"the user's own"
    assert {k: v for k, v in snapshot(tmp).items() if "notes" not in k} == \
        {k: v for k, v in before.items() if "notes" not in k}


@SLOW
@given(st.data())
def test_validate_against_takes_any_summary_tree(real_like, tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("v")
    run = _mutated_run(real_like, tmp, data)
    result = invoke("validate", "--against", run, "--output", tmp / "out")
    check_outcome(result)


@SLOW
@given(st.data())
def test_calibrate_reference_takes_any_summary_tree(real_like, tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("k")
    run = _mutated_run(real_like, tmp, data)
    blocker = tmp / "a-file"
    blocker.write_text("mine")
    # The output lies under a file: after the references are read, nothing is measured or written.
    result = invoke("calibrate", "--reference", run, "--from-profile", DEFAULT_PROFILE, "--output",
                    blocker / "p.json")
    check_outcome(result)
    assert blocker.read_text() == "mine"


# --- profiles -----------------------------------------------------------------------------


@SLOW
@given(st.data())
def test_simulate_takes_any_profile(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("s")
    profile = json.loads(DEFAULT_PROFILE.read_text())
    path = tmp / "p.json"
    path.write_text(json.dumps(mutate(profile, data), ensure_ascii=False, allow_nan=True), encoding="utf-8",
                    errors="surrogatepass")
    result = invoke("simulate", "--pattern", "orchestration", "--rate", "20", "--duration", "1s", "--warmup", "0s",
                    "--profile", path, "--output", tmp / "out")
    check_outcome(result)


# --- numbers and environment values -------------------------------------------------------


@FAST
@given(st.one_of(odd_text, odd_number.map(str)))
def test_numeric_options_are_checked_up_front(tmp_path_factory, text):
    tmp = tmp_path_factory.mktemp("n")
    blocker = tmp / "a-file"
    blocker.write_text("mine")
    for args in (["compare", tmp, tmp, "--alpha", text],
                 ["simulate", "--pattern", "choreography", "--seed", text, "--output", blocker / "o"],
                 ["simulate", "--pattern", "choreography", "--brokers", text, "--output", blocker / "o"],
                 ["sweep", "--rates", text, "--output", blocker / "o"],
                 ["run", "--pattern", "choreography", "--rate", text, "--output", blocker / "o"]):
        if "\x00" in text or "\ud800" in text:
            continue  # not an argv a shell can pass
        check_outcome(invoke(*args))


@FAST
@given(st.one_of(odd_text, odd_number.map(str)))
def test_bench_broker_port_is_one_line(tmp_path_factory, text):
    if "\x00" in text or "\ud800" in text:
        return
    tmp = tmp_path_factory.mktemp("e")
    env = {"BENCH_BROKER_PORT": text, "BENCH_CACHE_DIR": str(tmp / "cache"), "BENCH_BROKER_DIR": str(tmp / "b")}
    blocker = tmp / "a-file"
    blocker.write_text("mine")
    result = invoke("run", "--pattern", "choreography", "--output", blocker / "o", env=env)
    check_outcome(result)
    assert result.exit_code == 2
