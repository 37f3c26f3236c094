"""The image, the Helm chart and docker compose, checked without a Docker engine or a cluster
(neither runs here): the chart rendered for every values file and each object it renders
validated against Kubernetes' own schemas; the hosts files it renders put through the checks
`bench run --hosts` makes; the compose file validated by the Compose schema; the image's
entrypoint started as the image starts it; the Dockerfile linted.

helm and hadolint are tools of their own (.ci/run installs them): without one, its tests skip,
unless BENCH_REQUIRE_DEPLOY_TOOLS=1 (CI sets it), when they fail."""
from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from bench import patterns
from bench.flow.workload import load_workload
from bench.run import control
from bench.run.run import RunRequest, placement

ROOT = Path(__file__).parents[2]
CHART = ROOT / "deploy" / "helm" / "bench"
VALUES = sorted(CHART.glob("values*.yaml"))
KUBERNETES = "1.31.0"  # the Kubernetes release whose schemas the chart is held to
NAMESPACE = "bench"
REQUIRED = os.environ.get("BENCH_REQUIRE_DEPLOY_TOOLS") == "1"


def _missing(what: str) -> None:
    if REQUIRED:
        pytest.fail(f"{what} (BENCH_REQUIRE_DEPLOY_TOOLS=1: CI installs it; see .ci/run)")
    pytest.skip(f"{what}: .ci/run installs it")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not on PATH")
    return path


def module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"the Python package {name} is not installed (pip install -e '.[dev]')")


# --- the Helm chart ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _helm_template(*values: Path) -> tuple[dict, ...]:
    args = [tool("helm"), "template", "bench", str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBERNETES]
    for path in values:
        args += ["--values", str(path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def render(*values: Path) -> list[dict]:
    return list(_helm_template(*values))


def helm_fails(tmp_path, values: dict) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    done = subprocess.run([tool("helm"), "template", "bench", str(CHART), "--kube-version", KUBERNETES,
                           "--values", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    return done.stderr


def one(objects: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{kind} *{name_suffix}: {len(found)} rendered"
    return found[0]


def pod_specs(objects: list[dict]) -> list[dict]:
    return [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("StatefulSet", "Job")]


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.name)
def test_every_object_the_chart_renders_passes_kubernetes_schema(values):
    validate = module("kubernetes_validate")
    objects = render(values)
    assert {o["kind"] for o in objects} >= {"StatefulSet", "Service", "Job", "ConfigMap", "Secret",
                                            "PersistentVolumeClaim", "NetworkPolicy"}
    for obj in objects:
        try:
            validate.validate(obj, KUBERNETES, strict=True)  # strict: an unknown field is an error too
        except validate.ValidationError as err:
            pytest.fail(f"{values.name}: {obj['kind']}/{obj['metadata']['name']}: {err}")


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.name)
def test_the_chart_lints(values):  # NOTES.txt too, which `helm template` does not render
    done = subprocess.run([tool("helm"), "lint", "--strict", str(CHART), "--kube-version", KUBERNETES,
                           "--values", str(values)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _workload_of(run: dict):
    return load_workload(ROOT / run.get("workload", "workloads/default.yaml"))  # the image's WORKDIR is the repository's


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.name)
def test_rendered_hosts_files_pass_the_runs_own_checks_and_place_every_instance(values, tmp_path):
    objects = render(values)
    settings = yaml.safe_load(values.read_text())
    runs = (settings.get("coordinator") or {}).get("runs") or yaml.safe_load((CHART / "values.yaml").read_text())[
        "coordinator"]["runs"]
    config = one(objects, "ConfigMap", "-config")["data"]
    agents = one(objects, "StatefulSet", "-agent")
    pods = {f"{agents['metadata']['name']}-{i}" for i in range(agents["spec"]["replicas"])}
    port = agents["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    suffix = f".{agents['spec']['serviceName']}.{NAMESPACE}.svc.cluster.local"
    secret = tmp_path / "agent-secret"
    secret.write_text(secrets.token_hex(32) + "\n")
    for run in runs:
        hosts = yaml.safe_load(config[f"hosts-{run['name']}.yaml"])
        assert hosts["secret_file"] == _mounted_agent_secret(objects)
        hosts["secret_file"] = str(secret)  # the Secret's file, as the pod would have it
        path = tmp_path / f"hosts-{run['name']}.yaml"
        path.write_text(yaml.safe_dump(hosts))
        pattern, workload = patterns.get(run["pattern"]), _workload_of(run)
        placed = placement(RunRequest(pattern, workload, _bootstrap(objects), hosts=path))  # as `bench run` checks it
        for host in placed.hosts:  # each agent a pod of the StatefulSet, at its stable name
            name, _, rest = host.address[0].partition(".")
            assert name in pods and "." + rest == suffix and host.address[1] == port, host
        roles = pattern.topology(workload.saga).roles
        everyone = {f"{role}-{i}" for role in roles for i in range(workload.instances.get(role, 1))}
        assert set(placed.instances(dict(workload.instances))) == everyone, f"{run['name']}: not every instance placed"


def _bootstrap(objects: list[dict]) -> str:
    script = one(objects, "ConfigMap", "-config")["data"]["runs.sh"]
    return re.search(r"--bootstrap-servers '([^']+)'", script).group(1)


def _mounted_agent_secret(objects: list[dict]) -> str:
    """The agent secret's path, the same in every pod: mounted from the Secret, named by the agents'
    BENCH_AGENT_SECRET_FILE and by the coordinator's hosts files."""
    secret = next(o for o in objects if o["kind"] == "Secret")
    paths = set()
    for spec in pod_specs(objects):
        volume = next(v["name"] for v in spec["volumes"] if v.get("secret", {}).get("secretName") ==
                      secret["metadata"]["name"])
        for container in spec["containers"]:
            mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume)
            paths |= {f"{mount}/{key}" for key in secret["data"]}
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if "BENCH_AGENT_SECRET_FILE" in env:
                paths.add(env["BENCH_AGENT_SECRET_FILE"])
    assert len(paths) == 1, paths
    return paths.pop()


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.name)
def test_no_secret_is_an_argument_a_variable_or_configuration(values):
    objects = render(values)
    made = [base64.b64decode(v).decode() for o in objects if o["kind"] == "Secret" for v in o["data"].values()]
    assert made and all(len(s) >= control.MIN_SECRET_BYTES for s in made)
    elsewhere = json.dumps([o for o in objects if o["kind"] != "Secret"])
    assert not any(s in elsewhere for s in made)
    for spec in pod_specs(objects):
        for container in spec["containers"] + spec.get("initContainers", []):
            names = {e["name"] for e in container.get("env", [])}
            assert control.SECRET_ENV not in names  # a file, never the variable
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert not spec.get("shareProcessNamespace")  # the agent signals its own children: faults


def test_the_50000_orders_placement_spreads_every_instance_over_agents_of_its_own():
    objects = render(CHART / "values-50000-orders.yaml")
    config = one(objects, "ConfigMap", "-config")["data"]
    workload = load_workload(ROOT / "workloads" / "beyond-one-machine-50000-orders.yaml")
    assert one(objects, "StatefulSet", "-agent")["spec"]["replicas"] == 40
    for name in ("orchestration", "choreography"):
        hosts = yaml.safe_load(config[f"hosts-{name}.yaml"])["hosts"]
        assert all(sum(h["services"].values()) == 1 for h in hosts)
        assert len(hosts) == sum(workload.instances[r] for r in patterns.get(name).topology(workload.saga).roles)
    kafka = [v for spec in pod_specs(objects) for v in spec["volumes"] if v["name"] == "kafka-config"]
    assert kafka and all(v["secret"]["secretName"] == "bench-kafka-client" for v in kafka)
    assert "--kafka-config /etc/bench/kafka/client.properties" in config["runs.sh"]


def _checked_hosts(objects: list[dict], run: str, workload, tmp_path, bootstrap: str | None):
    """A run's rendered hosts file through `bench run`'s own check, its secret made here."""
    hosts = yaml.safe_load(one(objects, "ConfigMap", "-config")["data"][f"hosts-{run}.yaml"])
    (tmp_path / "secret").write_text(secrets.token_hex(32))
    path = tmp_path / f"hosts-{run}.yaml"
    path.write_text(yaml.safe_dump({**hosts, "secret_file": str(tmp_path / "secret")}))
    return placement(RunRequest(patterns.get("orchestration"), workload, bootstrap, hosts=path))


def test_placement_entries_stand_for_several_agents_and_may_carry_load_workers(tmp_path):
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"coordinator": {"runs": [{"name": "o", "pattern": "orchestration", "placement": [
        {"agents": 3, "services": {"payment": 1}, "load_workers": 2}, {"services": {"shipping": 1}}]}]}}))
    objects = render(path)
    (tmp_path / "workload.yaml").write_text("name: six-workers\nload_workers: 6\ninstances: {payment: 3}\n")
    placed = _checked_hosts(objects, "o", load_workload(tmp_path / "workload.yaml"), tmp_path, "kafka:9092")
    assert [(h.name, h.services, h.load_workers) for h in placed.hosts] == [
        ("bench-agent-0", {"payment": 1}, 2), ("bench-agent-1", {"payment": 1}, 2),
        ("bench-agent-2", {"payment": 1}, 2), ("bench-agent-3", {"shipping": 1}, 0)]
    assert one(objects, "StatefulSet", "-agent")["spec"]["replicas"] == 4


def test_runs_may_start_their_own_brokers_on_the_agents(tmp_path):
    """kafka.bootstrapServers empty: a run's cluster is KRaft nodes on its agents, which broker
    faults kill and restart there; the release's pods reach their ports."""
    validate = module("kubernetes_validate")
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrapServers": ""}, "coordinator": {"runs": [
        {"name": "failover", "pattern": "orchestration", "workload": "workloads/faults-broker-failover.yaml",
         "placement": [{"agents": 3, "brokers": 1},
                       {"services": {"orchestrator": 1, "payment": 1, "inventory": 1, "shipping": 1}}]}]}}))
    objects = render(path)
    for obj in objects:
        validate.validate(obj, KUBERNETES, strict=True)
    workload = load_workload(ROOT / "workloads" / "faults-broker-failover.yaml")
    placed = _checked_hosts(objects, "failover", workload, tmp_path, None)  # 3 nodes: as the workload needs
    assert [h.brokers for h in placed.hosts] == [1, 1, 1, 0]
    assert "--bootstrap-servers" not in one(objects, "ConfigMap", "-config")["data"]["runs.sh"]
    rules = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert len(rules) == 2 and "ports" not in rules[1]


BROKERS_ON_AGENTS = [{"name": "a", "pattern": "orchestration", "placement": [{"brokers": 1}]}]


@pytest.mark.parametrize("values, problem", [
    ({"coordinator": {"runs": [{"name": "a", "pattern": "orchestration"}, {"name": "a", "pattern": "choreography"}]}},
     'name "a" is used twice'),
    ({"coordinator": {"runs": [{"name": "Not_a_name", "pattern": "orchestration"}]}}, "1-40 of a-z, 0-9 and -"),
    ({"coordinator": {"runs": [{"name": "a", "pattern": "sideways"}]}}, "no placement: set agents.placement.sideways"),
    ({"coordinator": {"runs": BROKERS_ON_AGENTS}}, 'starts brokers on agents: set kafka.bootstrapServers to ""'),
    ({"coordinator": {"runs": BROKERS_ON_AGENTS}, "kafka": {"bootstrapServers": "", "clientConfigSecret": "s"}},
     "the runs start their own brokers"),
    ({"antiAffinity": "sometimes"}, "antiAffinity: required, preferred or none"),
])
def test_the_chart_refuses_what_it_cannot_deploy(tmp_path, values, problem):
    assert problem in helm_fails(tmp_path, values)


def _run_script(tmp_path, codes: list[int], values: dict | None = None) -> tuple[int, list[str]]:
    """The coordinator's runs.sh under a stand-in `bench` that exits with ``codes`` in turn."""
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values or {}))
    script = tmp_path / "runs.sh"
    script.write_text(one(render(path), "ConfigMap", "-config")["data"]["runs.sh"])
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (tmp_path / "codes").write_text("".join(f"{c}\n" for c in codes))
    stand_in = bin_dir / "bench"
    stand_in.write_text('#!/bin/sh\nfor a in "$@"; do printf "[%s]" "$a"; done >> "$LOG"; echo >> "$LOG"\n'
                        'n=$(wc -l < "$LOG"); exit "$(sed -n "${n}p" "$CODES")"\n')
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log), "CODES": str(tmp_path / "codes")}
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
    return done.returncode, log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("codes, exit_code, calls", [
    ([0, 0], 0, 2), ([1, 3], 1, 2), ([3, 0], 3, 2), ([0, 1], 1, 2),
    ([2, 0], 2, 1),  # bad input: the series ends
    ([130, 0], 130, 1),  # stopped: the series ends
])
def test_the_coordinators_runs_exit_as_a_series_does(tmp_path, codes, exit_code, calls):
    code, made = _run_script(tmp_path, codes)
    assert (code, len(made)) == (exit_code, calls)


def test_the_coordinators_runs_pass_each_value_as_one_word(tmp_path):
    _, calls = _run_script(tmp_path, [0], {"coordinator": {"runs": [
        {"name": "o", "pattern": "orchestration", "args": ["--rate", "it's $HOME; `x`"]}]}})
    assert calls == ["[run][--output][/results/bench-1/o][--pattern][orchestration][--workload][workloads/default.yaml]"
                     "[--hosts][/config/hosts-o.yaml][--bootstrap-servers][kafka:9092][--rate][it's $HOME; `x`]"]


# --- docker compose ---------------------------------------------------------------------------

COMPOSE = ROOT / "docker-compose.yml"


def test_the_compose_file_passes_the_compose_schema():
    jsonschema = module("jsonschema")
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(yaml.safe_load(COMPOSE.read_text()))]
    assert not errors


@pytest.mark.parametrize("pattern", ["orchestration", "choreography"])
def test_the_compose_runs_hosts_files_name_its_agents_and_secret(pattern, tmp_path):
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    hosts = yaml.safe_load((ROOT / "deploy" / "compose" / f"hosts-{pattern}.yaml").read_text())
    agent_env = services["agent-1"]["environment"]
    assert hosts["secret_file"] == agent_env["BENCH_AGENT_SECRET_FILE"]
    assert "agent-secret:" + str(Path(hosts["secret_file"]).parent) + ":ro" in services["coordinator"]["volumes"]
    secret = tmp_path / "agent-secret"
    secret.write_text(secrets.token_hex(32))
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({**hosts, "secret_file": str(secret)}))
    workload = load_workload(ROOT / "workloads" / "default.yaml")
    placed = placement(RunRequest(patterns.get(pattern), workload, "kafka:19092", hosts=path))
    for host in placed.hosts:
        assert host.address == (host.name, 7070) and services[host.name]["hostname"] == host.name
    assert "kafka:19092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_the_compose_run_profile_is_opt_in_and_three_brokers_do_not_share_a_port():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert [n for n, s in services.items() if not s.get("profiles")] == ["kafka"]
    for name in ("kafka-1", "kafka-2", "kafka-3"):
        listeners = services[name]["environment"]["KAFKA_LISTENERS"]
        ports = [p.rpartition(":")[2] for p in listeners.split(",")]
        assert len(ports) == len(set(ports)), f"{name}: two listeners on one port: {listeners}"


# --- the image --------------------------------------------------------------------------------

ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"


def test_the_dockerfile_lints():
    done = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dockerfile_copies_only_what_the_build_context_holds():
    allowed = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] != ["COPY"] or any(w.startswith("--from") for w in words):
            continue
        for source in words[1:-1]:
            assert (ROOT / source).exists(), source
            assert any(source == a or source.startswith(a + "/") for a in allowed), f"{source}: .dockerignore leaves it out"


def test_constraints_pin_every_runtime_dependency_within_its_range():
    from packaging.requirements import Requirement

    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[name.strip().lower().replace("_", "-")] = version.strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"] + ["setuptools"]:  # setuptools: pip's isolated build of bench
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pinned, f"constraints.txt does not pin {name}"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} is outside {requirement.specifier}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body, headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def _environment(**extra: str) -> dict:
    """This checkout's bench on PATH and importable, as the image's virtualenv has it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_AGENT")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


@pytest.mark.parametrize("given", ["file", "variable"])
def test_the_entrypoint_starts_an_agent_from_the_environment(tmp_path, given):
    secret, port = secrets.token_hex(32), _free_port()
    env = _environment(BENCH_AGENT_LISTEN=f"127.0.0.1:{port}", BENCH_AGENT_WORK_DIR=str(tmp_path / "work"))
    if given == "file":
        (tmp_path / "secret").write_text(secret + "\n")
        env.update(BENCH_AGENT_SECRET_FILE=str(tmp_path / "secret"), BENCH_AGENT_SECRET="not-the-secret-" * 3)
    else:
        env["BENCH_AGENT_SECRET"] = secret
    # A session of its own: whatever the script leaves running is found by its group and stopped.
    agent = subprocess.Popen([str(ENTRYPOINT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert agent.poll() is None, agent.communicate()[1]
            try:
                status, answer = _post(port, "/session")
                break
            except OSError:
                assert time.monotonic() < deadline, "the agent did not listen within 60 s"
                time.sleep(0.2)
        assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", answer["session"])
        assert _post(port, "/run", b"{}")[0] == 401  # unsigned: refused
        body = json.dumps({"run_id": "x"}).encode()
        signed = control.header(secret.encode(), answer["session"], 1, "POST", "/clock", body)
        assert _post(port, "/clock", body, {control.HEADER: signed})[0] == 200  # signed with that secret: obeyed
        command = Path(f"/proc/{agent.pid}/cmdline").read_bytes().split(b"\0")
        assert b"agent" in command and b"--listen" in command  # exec'd: bench itself gets the signals
        assert secret.encode() not in b" ".join(command)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            _, err = agent.communicate(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(agent.pid, signal.SIGKILL)  # whatever the script left behind
    assert agent.returncode == 0 and "stopped" in err


def test_the_entrypoint_runs_bench_commands_given_arguments():
    done = subprocess.run([str(ENTRYPOINT), "agent", "--help"], env=_environment(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "--listen" in done.stdout
    done = subprocess.run([str(ENTRYPOINT), "--help"], env=_environment(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Usage: bench" in done.stdout


def test_wait_for_agents_waits_for_listeners_and_names_the_missing(tmp_path):
    script = ROOT / "deploy" / "wait_for_agents.py"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port, closed = listener.getsockname()[1], _free_port()
        hosts = tmp_path / "hosts.yaml"
        hosts.write_text(f"hosts: [{{name: h1, agent: '127.0.0.1:{port}', services: {{payment: 1}}}}]\n")
        run = lambda *args: subprocess.run([sys.executable, str(script), *args], env=_environment(),
                                           capture_output=True, text=True, timeout=60)
        assert run(str(hosts), "--timeout", "5").returncode == 0
        missing = run(str(hosts), "--address", f"127.0.0.1:{closed}", "--timeout", "0")
        assert missing.returncode == 1 and f"not reachable after 0 s: 127.0.0.1:{closed}\n" in missing.stderr
    hosts.write_text("hosts: []\n")
    assert run(str(hosts)).returncode == 2
