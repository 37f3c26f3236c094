"""`bench agent`: one per host; starts, signals, measures and stops the service instances a run's
coordinator places on this host (:mod:`bench.run.remote` is the coordinator's side).

A remote process launcher is a door into the host, so it is a narrow one:

- it listens only where it is told (``--listen ADDR:PORT``; no default address);
- it obeys only requests signed with the shared secret (:mod:`bench.run.control`);
- it starts only bench's own service roles (``python -m bench serve``) of a pattern and workload it
  validated itself, never a command it is sent; signals are the few a fault needs;
- it hosts one run at a time, in a directory it created and marked (:mod:`bench.ownership`), and
  deletes only that;
- a run whose coordinator went silent for ``LEASE_S`` is stopped (its instances would otherwise
  run on for ever); the instances also stop when the agent itself is gone.

Endpoints (POST, JSON in and out): ``/session`` (unsigned: a session id to sign requests with),
``/run`` (the run's id, pattern, workload text and bootstrap servers), ``/spawn`` (role, index:
returns once the instance is ready), ``/signal`` (name, signal), ``/status`` (per instance: alive,
backlog, CPU), ``/log`` (name: its log), ``/stop`` (every instance), ``/end`` (the run's directory
removed), ``/clock`` (its monotonic and wall clocks, which the coordinator times as NTP does).
A KRaft node of a cluster the run starts on its hosts is ``/broker`` (node id, the cluster's id and
voters, this host's address and ports: formatted in the run's directory and started; with
``restart``, started again on its storage); ``/signal`` reaches it as ``broker-<id>``.
A load worker (:mod:`bench.run.load_workers`, worker k of n of the run's schedule) is started by
``/load`` (index, of); ``/lines`` (name, wait_s) hands over what it said since the last fetch, and
``/tell`` (name, message) passes it one of the three things a coordinator tells a worker (go,
stop_at, close), checked here, never a line as sent.
"""
from __future__ import annotations

import json
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench import ownership, patterns
from bench.broker import embedded
from bench.errors import BadInput
from bench.flow.workload import load_workload
from bench.kafka.errors import BrokerError
from bench.run import control, procstat
from bench.run.load_workers import WorkerProcess as LoadWorkerProcess
from bench.run.supervisor import Supervisor

LEASE_S = 30.0  # a hosted run whose coordinator said nothing this long is stopped
MAX_BODY = 1 << 20
# Sessions handed out but never used are capped (anyone may ask for one); a session that has
# carried a signed request is never pushed out by new ones, or asking for sessions would be a way
# to lock a coordinator out.
MAX_PENDING_SESSIONS = 64
MAX_SESSIONS = 1024
MAX_LOAD_WORKERS = 64  # as the workload's load_workers
MAX_WAIT_S = 2.0  # the longest a /lines fetch is held for a line to arrive
REQUEST_TIMEOUT_S = 30.0  # a client that stops mid-request does not hold a thread for ever
_RUN_ID = "abcdefghijklmnopqrstuvwxyz0123456789-"


class Refused(Exception):
    """A request the agent will not carry out: (HTTP status, one line)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _HostedRun:
    def __init__(self, run_id: str, directory: Path, token: str, supervisor: Supervisor, roles: set[str],
                 load_args: list[str]) -> None:
        self.run_id, self.directory, self.token, self.supervisor, self.roles = run_id, directory, token, supervisor, roles
        self.load_args = load_args  # a load worker's arguments but its number and directory
        self.last_heard = time.monotonic()  # a signed request naming this run: its coordinator is there
        self.workers: dict[str, tuple[LoadWorkerProcess, queue.Queue]] = {}  # name -> process, its parsed lines
        self.brokers: dict[str, tuple[embedded.NodeInfo, subprocess.Popen, int]] = {}  # broker-<id> -> node, Popen, heap
        self.broker_cpu_before: dict[str, float] = {}  # CPU seconds of a node's earlier incarnations (killed)

    def start_broker(self, request: dict) -> str:
        node_id = request.get("node_id")
        if type(node_id) is not int or not 1 <= node_id <= 99:
            raise Refused(400, "node_id: 1 .. 99")
        name = f"broker-{node_id}"
        node_dir = self.directory / name
        if request.get("restart") is True:
            if name not in self.brokers:
                raise Refused(404, f"{name} was never started here")
            old, _, heap_mb = self.brokers[name]
            if old.is_ours():
                raise Refused(409, f"{name} is running")
            self.brokers[name] = (*embedded.launch(node_dir, node_id, old.port, old.controller_port, heap_mb, old.host),
                                  heap_mb)
            return name
        if name in self.brokers:
            raise Refused(409, f"{name} was started already")
        ports = [request.get("port"), request.get("controller_port"), request.get("heap_mb"), request.get("nodes")]
        if not all(type(v) is int for v in ports) or not (1024 <= ports[0] <= 65535 and 1024 <= ports[1] <= 65535
                                                          and 256 <= ports[2] <= 8192 and 1 <= ports[3] <= 99):
            raise Refused(400, "port, controller_port: 1024 .. 65535; heap_mb: 256 .. 8192; nodes: 1 .. 99")
        host, voters, cluster_id = (_string(request, k) for k in ("host", "voters", "cluster_id"))
        if not _voters_ok(voters) or not cluster_id.replace("-", "").replace("_", "").isalnum() or len(cluster_id) > 32:
            raise Refused(400, "voters: id@host:port,...; cluster_id: a Kafka cluster id")
        if not all(c.isalnum() or c in ".-:[]" for c in host) or len(host) > 253:
            raise Refused(400, "host: an address or a host name")
        node_dir.mkdir()
        try:
            embedded.prepare_node(node_dir, embedded.node_properties(node_id, ports[3], voters, host, ports[0], host,
                                                                     ports[1], node_dir), cluster_id)
        except BrokerError as err:
            raise Refused(500, str(err).splitlines()[0]) from None
        self.brokers[name] = (*embedded.launch(node_dir, node_id, ports[0], ports[1], ports[2], host), ports[2])
        return name

    def broker_cpu_s(self, name: str) -> float:
        """A node's CPU seconds over its incarnations in this run (from /proc, as the services')."""
        node = self.brokers[name][0]
        now = procstat.usage(node.pid) if node.is_ours() else None
        return self.broker_cpu_before.get(name, 0.0) + (now.cpu_s if now is not None else 0.0)

    def stop_brokers(self) -> None:
        for node, _, _ in self.brokers.values():
            embedded.kill_node(node, signal.SIGTERM)
        for node, proc, _ in self.brokers.values():
            try:
                proc.wait(15.0)
            except subprocess.TimeoutExpired:
                embedded.kill_node(node, signal.SIGKILL)
                proc.wait()

    def start_worker(self, index: int, of: int) -> str:
        name = f"load-worker-{index}"
        if name in self.workers:
            raise Refused(409, f"{name} was started already")
        out = self.directory / name
        out.mkdir()
        worker = LoadWorkerProcess([sys.executable, "-m", "bench.run.load_workers", "--worker", f"{index}/{of}",
                                    "--out", str(out), *self.load_args], self.directory / "logs" / f"{name}.log")
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=worker.read, args=(lines,), daemon=True, name=name).start()
        self.workers[name] = (worker, lines)
        return name

    def worker(self, request: dict) -> tuple[LoadWorkerProcess, queue.Queue]:
        found = self.workers.get(_string(request, "name"))
        if found is None:
            raise Refused(404, "no such load worker in this run")
        return found

    def stop_workers(self) -> None:
        for worker, _ in self.workers.values():
            worker.close()


class Agent:
    def __init__(self, secret: bytes, work_dir: Path, kafka_config: Path | None = None,
                 lease_s: float = LEASE_S) -> None:
        self.secret, self.work_dir, self.kafka_config, self.lease_s = secret, work_dir, kafka_config, lease_s
        self.pending: OrderedDict[str, None] = OrderedDict()  # sessions handed out, not used yet
        self.sessions: OrderedDict[str, int] = OrderedDict()  # used sessions -> the last counter used
        self.lock = threading.Lock()  # the sessions
        self.state = threading.RLock()  # the hosted run: opened, spawned into, ended one at a time
        self.run: _HostedRun | None = None

    # -- authentication ---------------------------------------------------------------------

    def new_session(self) -> str:
        with self.lock:
            session = secrets.token_hex(16)
            self.pending[session] = None
            while len(self.pending) > MAX_PENDING_SESSIONS:
                self.pending.popitem(last=False)
            return session

    def authenticate(self, auth: str | None, method: str, path: str, body: bytes) -> None:
        parsed = control.parse_header(auth)
        if parsed is None:
            raise Refused(401, "unsigned request")
        session, counter, mac = parsed
        with self.lock:
            last = self.sessions.get(session, -1 if session in self.pending else None)
            if last is None or counter <= last or not control.valid(self.secret, session, counter, mac, method, path,
                                                                     body):
                raise Refused(401, "bad signature, unknown session or a counter used before")
            self.pending.pop(session, None)
            self.sessions[session] = counter
            self.sessions.move_to_end(session)
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)

    # -- commands ---------------------------------------------------------------------------

    def handle(self, path: str, request: dict) -> dict:
        if path == "/clock":  # read as NTP reads a server: the coordinator times the round trip
            if self.run is not None and request.get("run_id") == self.run.run_id:
                self.run.last_heard = time.monotonic()
            return {"mono_ns": time.monotonic_ns(), "wall_ns": time.time_ns()}
        if path == "/run":
            with self.state:
                return self.open_run(request)
        hosted = self.run
        if hosted is None or request.get("run_id") != hosted.run_id:
            raise Refused(409, "no such run on this agent")
        hosted.last_heard = time.monotonic()
        if path == "/spawn":
            role, index = _string(request, "role"), request.get("index")
            if type(index) is not int or not 0 <= index < 1000:
                raise Refused(400, "index: an integer 0 .. 999")
            if role not in hosted.roles:
                raise Refused(400, f"role: not a role of this run's pattern ({', '.join(sorted(hosted.roles))})")
            with self.state:  # not into a run that was ended meanwhile
                if self.run is not hosted:
                    raise Refused(409, "no such run on this agent")
                running = hosted.supervisor.instances.get(f"{role}-{index}")
                if running is not None and running.alive():
                    raise Refused(409, f"{role}-{index} is running already")
                try:
                    instance = hosted.supervisor.spawn(role, index)
                    hosted.supervisor.wait_ready([instance])
                except BrokerError as err:
                    raise Refused(500, str(err).splitlines()[0]) from None
            return {"name": instance.name}
        if path == "/broker":
            with self.state:
                if self.run is not hosted:
                    raise Refused(409, "no such run on this agent")
                return {"name": hosted.start_broker(request)}
        if path == "/load":
            index, of = request.get("index"), request.get("of")
            if type(of) is not int or not 1 <= of <= MAX_LOAD_WORKERS or type(index) is not int or not 0 <= index < of:
                raise Refused(400, f"index, of: worker index of 1 .. {MAX_LOAD_WORKERS} workers")
            with self.state:
                if self.run is not hosted:
                    raise Refused(409, "no such run on this agent")
                return {"name": hosted.start_worker(index, of)}
        if path == "/lines":
            _, lines = hosted.worker(request)
            wait_s = request.get("wait_s", 0.0)
            if type(wait_s) not in (int, float) or not 0 <= wait_s <= MAX_WAIT_S:
                raise Refused(400, f"wait_s: 0 .. {MAX_WAIT_S:g} seconds")
            messages, exited = [], False
            try:
                item = lines.get(timeout=wait_s) if wait_s else lines.get_nowait()
                while True:
                    if item[1] is None:
                        exited = True
                        break
                    messages.append(item[1])
                    item = lines.get_nowait()
            except queue.Empty:
                pass
            return {"messages": messages, "exited": exited}
        if path == "/tell":
            worker, _ = hosted.worker(request)
            message = request.get("message")
            if not isinstance(message, dict) or len(message) != 1:
                raise Refused(400, "message: one of go, stop_at, close")
            (key, value), = message.items()
            if key in ("go", "stop_at") and type(value) in (int, float):
                worker.send({key: value})
            elif key == "close" and value is True:
                threading.Thread(target=worker.close, daemon=True).start()  # it may take seconds to stop
            else:
                raise Refused(400, "message: one of go (a monotonic time), stop_at (an offset), close (true)")
            return {}
        if path == "/signal":
            name = _string(request, "signal")
            if name not in control.SIGNALS:
                raise Refused(400, f"signal: one of {', '.join(control.SIGNALS)}")
            if _string(request, "name") in hosted.brokers:
                node, proc, _ = hosted.brokers[request["name"]]
                if name == "KILL":  # what it used so far, read while it is there to read
                    hosted.broker_cpu_before[request["name"]] = hosted.broker_cpu_s(request["name"])
                embedded.kill_node(node, control.SIGNALS[name])
                if name == "KILL":
                    proc.wait()
                return {}
            instance = self._instance(hosted, request)
            instance.send(control.SIGNALS[name])
            if name == "KILL":
                instance.wait()
            return {}
        if path == "/status":
            # The current incarnation's CPU only: the coordinator adds up earlier ones (it killed them).
            return {"instances": {name: {"alive": inst.alive(), "backlog": inst.backlog,
                                         "usage": (inst.usage() or procstat.Usage()).to_dict()}
                                  for name, inst in list(hosted.supervisor.instances.items())},
                    "brokers": {name: {"alive": node.is_ours(), "cpu_s": hosted.broker_cpu_s(name)}
                                for name, (node, _, _) in list(hosted.brokers.items())},
                    "load_workers": {name: {"alive": worker.alive(),
                                            "usage": (procstat.usage(worker.process.pid) or procstat.Usage()).to_dict()}
                                     for name, (worker, _) in list(hosted.workers.items())}}
        if path == "/log":
            if _string(request, "name") in hosted.workers:
                log_path = hosted.worker(request)[0].log_path
            else:
                log_path = self._instance(hosted, request).log_path
            return {"log": log_path.read_text(errors="replace") if log_path.exists() else ""}
        if path == "/stop":
            hosted.stop_workers()
            hosted.supervisor.stop()
            return {}
        if path == "/stop-brokers":
            hosted.stop_brokers()
            return {}
        if path == "/end":
            with self.state:
                if self.run is hosted:
                    self.end_run()
            return {}
        raise Refused(404, "no such command")

    def open_run(self, request: dict) -> dict:
        run_id = _string(request, "run_id")
        if not 1 <= len(run_id) <= 64 or any(c not in _RUN_ID for c in run_id):
            raise Refused(400, "run_id: 1-64 characters of a-z, 0-9 and -")
        if self.run is not None:
            if self.run.run_id == run_id:
                raise Refused(409, "this run is open on this agent already")
            silent_s = time.monotonic() - self.run.last_heard
            if silent_s <= self.lease_s:  # another coordinator's run is live: it is not ours to end
                raise Refused(409, f"another run ({self.run.run_id}) is open on this agent; its coordinator was heard "
                                   f"{silent_s:.0f} s ago")
            self.end_run()  # its coordinator went away without ending it
        pattern = patterns.PATTERNS.get(_string(request, "pattern"))
        if pattern is None:
            raise Refused(400, f"pattern: one of {', '.join(sorted(patterns.PATTERNS))}")
        bootstrap = _string(request, "bootstrap_servers")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix=f"run-{run_id}-", dir=self.work_dir))
        token = ownership.new_token()
        try:
            ownership.mark_dir(directory, token)
        except BaseException:
            directory.rmdir()  # made empty by mkdtemp a moment ago, in this call
            raise
        try:
            workload_file = directory / "workload.yaml"
            workload_file.write_text(_string(request, "workload"))
            try:
                workload = load_workload(workload_file)  # the one validated reader, as `bench run` reads it
            except BadInput as err:
                raise Refused(400, f"workload: {err}") from None
            serve_args = ["--pattern", pattern.name, "--workload", str(workload_file), "--bootstrap-servers", bootstrap,
                          "--group-prefix", f"bench-{run_id}"]
            if self.kafka_config:
                serve_args += ["--kafka-config", str(self.kafka_config)]
            (directory / "logs").mkdir()
            load_args = ["--workload", str(workload_file), "--bootstrap-servers", bootstrap, "--run-id", run_id]
            if self.kafka_config:
                load_args += ["--kafka-config", str(self.kafka_config)]
            hosted = _HostedRun(run_id, directory, token, Supervisor(serve_args, directory / "logs"),
                                set(pattern.topology(workload.saga).roles), load_args)
        except BaseException:
            ownership.remove_owned_dir(directory, token)
            raise
        self.run = hosted
        return {"roles": sorted(hosted.roles)}

    def end_run(self) -> None:
        hosted, self.run = self.run, None
        if hosted is not None:
            hosted.stop_workers()
            hosted.supervisor.stop()
            hosted.stop_brokers()
            ownership.remove_owned_dir(hosted.directory, hosted.token)

    def _instance(self, hosted: _HostedRun, request: dict):
        instance = hosted.supervisor.instances.get(_string(request, "name"))
        if instance is None:
            raise Refused(404, "no such instance in this run")
        return instance

    def expire(self) -> bool:
        """Stop a run whose coordinator went silent; True when one was stopped."""
        with self.state:
            if self.run is not None and time.monotonic() - self.run.last_heard > self.lease_s:
                self.end_run()
                return True
        return False


def _voters_ok(voters: str) -> bool:
    """``id@host:port,...`` and nothing else: it goes into a properties file."""
    for voter in voters.split(","):
        node, _, address = voter.partition("@")
        host, _, port = address.rpartition(":")
        if not (node.isdigit() and port.isdigit() and host and all(c.isalnum() or c in ".-[]:" for c in host)):
            return False
    return True


def _string(request: dict, key: str) -> str:
    value = request.get(key)
    if type(value) is not str or not value or len(value) > MAX_BODY:
        raise Refused(400, f"{key}: a non-empty string")
    return value


def _handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "bench-agent"
        timeout = REQUEST_TIMEOUT_S

        def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's name
            pass  # one line per request would drown the agent's own log

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 <= length <= MAX_BODY:
                    raise Refused(413, "request too large")
                body = self.rfile.read(length)
                if self.path == "/session":
                    self._reply(200, {"session": agent.new_session()})
                    return
                agent.authenticate(self.headers.get(control.HEADER), "POST", self.path, body)
                try:
                    request = json.loads(body or b"{}")
                except ValueError:
                    raise Refused(400, "the body is not JSON") from None
                if not isinstance(request, dict):
                    raise Refused(400, "the body is not a JSON object")
                self._reply(200, agent.handle(self.path, request))
            except Refused as refused:
                self._reply(refused.status, {"error": str(refused)})
            except ValueError:  # a Content-Length that is not a number
                self._reply(400, {"error": "bad request"})
            except Exception as err:  # noqa: BLE001 - one line back, never a traceback and a dropped connection
                self._reply(500, {"error": f"the agent failed: {type(err).__name__}"})

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def parse_listen(text: str) -> tuple[str, int]:
    return control.parse_address(text, "--listen")


def serve(listen: tuple[str, int], agent: Agent, ready=lambda address: None, stop: threading.Event | None = None) -> None:
    """Serve until ``stop`` is set (or for ever); a hosted run is ended on the way out."""
    try:
        server = ThreadingHTTPServer(listen, _handler(agent))
    except OSError as err:
        raise BadInput(f"--listen {listen[0]}:{listen[1]}: cannot listen there: {err.strerror or err}") from None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="agent-http",
                              daemon=True)
    thread.start()
    ready(server.server_address)
    stop = stop or threading.Event()
    try:
        while not stop.wait(1.0):
            agent.expire()
    finally:
        server.shutdown()
        server.server_close()
        agent.end_run()


def default_work_dir() -> Path:
    return Path(tempfile.gettempdir()) / "bench-agent"
