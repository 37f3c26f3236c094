"""No credential reaches anything bench writes: every secret-bearing librdkafka property,
from a --kafka-config file and from a workload's client section, through a real run, a
sweep and a simulation; every output file, stdout and stderr are searched for the values."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.broker
WORKLOADS = Path(__file__).parents[2] / "workloads"

# librdkafka accepts all of these with security.protocol=plaintext (it ignores them), so the run
# is real; a value is "SECRETV-<name>" so a leak names the property it came from.
PROPERTIES = ["sasl.password", "ssl.key.password", "ssl.key.pem", "ssl.keystore.password",
              "sasl.oauthbearer.client.secret", "sasl.oauthbearer.config", "sasl.oauthbearer.extensions",
              "sasl.oauthbearer.assertion.private.key.passphrase", "sasl.oauthbearer.assertion.private.key.pem",
              "ssl.certificate.pem", "ssl.ca.pem", "sasl.oauthbearer.client.id"]
IN_WORKLOAD = ["ssl.key.password", "sasl.oauthbearer.client.secret"]


def secret(name: str) -> str:
    return f"SECRETV-{name.replace('.', '-')}"


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300)


def test_no_secret_reaches_any_output(bootstrap_servers, tmp_path):
    props = tmp_path / "client.properties"
    lines = [f"{name}={secret(name)}" for name in PROPERTIES if name != "sasl.password"]
    # The JAAS line Java clients use, translated to sasl.username / sasl.password.
    lines.append('sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n'
                 f'  username="{secret("jaas-user")}" password="{secret("jaas-password")}";')
    props.write_text("\n".join(lines) + "\n")
    source = yaml.safe_load((WORKLOADS / "default.yaml").read_text())
    source["client"] = {**(source.get("client") or {}), **{name: secret(f"workload-{name}") for name in IN_WORKLOAD}}
    workload = tmp_path / "workload.yaml"
    workload.write_text(yaml.safe_dump(source))
    values = [secret(name) for name in PROPERTIES if name != "sasl.password"]
    values += [secret("jaas-user"), secret("jaas-password")] + [secret(f"workload-{n}") for n in IN_WORKLOAD]

    short = ["--rate", "100", "--duration", "2s", "--warmup", "1s", "--workload", str(workload)]
    done = [
        bench("run", "--pattern", "orchestration", *short, "--bootstrap-servers", bootstrap_servers,
              "--kafka-config", str(props), "--output", str(tmp_path / "run")),
        bench("sweep", "--pattern", "choreography", "--rates", "100", "--duration", "2s", "--warmup", "1s",
              "--workload", str(workload), "--bootstrap-servers", bootstrap_servers, "--kafka-config", str(props),
              "--output", str(tmp_path / "sweep")),
        bench("simulate", "--pattern", "orchestration", *short, "--output", str(tmp_path / "sim")),
    ]
    for result in done:
        assert result.returncode == 0, result.stderr[-2000:]
    written = [(f"{r.args[3]} stdout", r.stdout) for r in done] + [(f"{r.args[3]} stderr", r.stderr) for r in done]
    written += [(str(p), p.read_text(errors="replace")) for out in ("run", "sweep", "sim")
                for p in (tmp_path / out).rglob("*") if p.is_file() and p.suffix != ".png"]
    assert len(written) > 20
    for where, text in written:
        for value in values:
            assert value not in text, f"{value} in {where}"
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert "***REDACTED***" in summary and '"linger.ms": 5' in summary  # settings stay readable
