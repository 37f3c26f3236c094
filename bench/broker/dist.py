"""The Kafka distribution: jars fetched from Maven Central into a per-user cache.

The manifest is ``pom.xml`` beside this file. The first install runs Maven
(visible progress on stderr); afterwards a marker file short-circuits, so a
cached start never touches the network.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench import inputs
from bench.errors import BadInput
from bench.kafka.errors import BrokerError

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).with_name("pom.xml")


def cache_root() -> Path:
    """The per-user cache: $BENCH_CACHE_DIR, else $XDG_CACHE_HOME/bench, else ~/.cache/bench. A value
    that is a file, or lies under one, is one line (exit 2), before anything is written."""
    name = "BENCH_CACHE_DIR" if os.environ.get("BENCH_CACHE_DIR") else "XDG_CACHE_HOME"
    base = os.environ.get("BENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bench"
    )
    if "\x00" in base:
        raise BadInput(f"{name}: holds a NUL character: not a directory name")
    inputs.check_output_dir(Path(base), f"{name} ({base})", BadInput, must_be_empty=False)
    return Path(base)


def dist_dir() -> Path:
    return cache_root() / f"kafka-{KAFKA_VERSION}"


def lib_dir() -> Path:
    return dist_dir() / "lib"


def _marker() -> Path:
    return dist_dir() / "installed"


def is_installed() -> bool:
    return _marker().exists()


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    if candidate and candidate.exists():
        return str(candidate)
    found = shutil.which("java")
    if not found:
        raise BrokerError("Java not found: install a JDK 17 or newer (e.g. `apt-get install openjdk-17-jdk-headless`) or set JAVA_HOME")
    return found


def classpath() -> str:
    return str(lib_dir() / "*")


def install(progress=sys.stderr) -> Path:
    """Fetch the Kafka jars once; returns the lib directory."""
    if is_installed():
        return lib_dir()
    java_executable()
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError("Maven not found: install Maven 3 (e.g. `apt-get install maven`) to fetch Kafka's jars, or pass --bootstrap-servers to use your own cluster")
    staging = dist_dir().with_name(dist_dir().name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    print(f"bench: fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {dist_dir()} (first use only)", file=progress, flush=True)
    cmd = [
        mvn, "-B", "-f", str(POM),
        "dependency:copy-dependencies", "-DincludeScope=runtime",
        f"-DoutputDirectory={staging / 'lib'}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    downloaded = 0
    for line in proc.stdout:
        output.append(line.rstrip())
        if line.startswith("Downloaded from"):
            downloaded += 1
            if downloaded % 25 == 0:
                print(f"bench: {downloaded} files downloaded", file=progress, flush=True)
    if proc.wait() != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join(output[-15:])
        raise BrokerError(f"Maven could not fetch Kafka {KAFKA_VERSION} (exit {proc.returncode}); last output:\n{tail}")
    jars = sorted((staging / "lib").glob("*.jar"))
    print(f"bench: fetched {len(jars)} jars", file=progress, flush=True)
    (staging / "installed").write_text(KAFKA_VERSION + "\n")
    shutil.rmtree(dist_dir(), ignore_errors=True)
    staging.rename(dist_dir())
    return lib_dir()
