"""The layering written in pyproject.toml ([tool.importlinter]) holds, and what it is for holds:
comparing and reporting on results loads neither the run stack nor the Kafka client."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).parents[2]
BASELINES = ROOT / "results" / "baselines"


def test_every_import_keeps_the_layering():
    # lint-imports prints which import broke which contract; pytest shows it on failure.
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"  # last: a command prints first
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.splitlines()[-1].split())


def test_the_compare_and_report_modules_do_not_load_kafka_or_the_run_stack():
    loaded = _loaded_after("import bench.cli.compare, bench.cli.report, bench.compare.comparison, bench.compare.render, bench.compare.report")
    assert "confluent_kafka" not in loaded
    assert not {m for m in loaded if m == "bench.run" or m.startswith("bench.run.")}


def test_bench_compare_does_not_load_kafka_or_the_run_stack():
    # The command as a user runs it, on the committed baselines.
    loaded = _loaded_after(
        "import sys\nfrom bench.cli import main\n"
        f"sys.argv = ['bench', 'compare', {str(BASELINES / 'choreography-300')!r}, {str(BASELINES / 'orchestration-300')!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code == 0, exit.code")
    assert "confluent_kafka" not in loaded
    assert "bench.run.run" not in loaded
