"""Bad input to the commands that write files: one line, exit 2, nothing of the user's overwritten."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from bench.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_calibrate_never_overwrites_a_file_that_is_not_a_profile(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text('{"schema_version": 1}')
    result = invoke("calibrate", "--output", summary)
    assert result.exit_code == 2 and "exists and is not a bench profile" in result.output
    assert summary.read_text() == '{"schema_version": 1}'
    assert "a profile is a .json file" in invoke("calibrate", "--output", tmp_path / "p.txt").output


def test_validate_needs_a_new_output_directory(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep").write_text("mine")
    result = invoke("validate", "--output", tmp_path / "old")
    assert result.exit_code == 2 and "exists and is not empty" in result.output


@pytest.mark.parametrize("args, message", [
    (["simulate", "--pattern", "orchestration", "--network-rtt", "5ms"], "needs --placement spread"),
    (["run", "--pattern", "orchestration", "--repeat", "0"], "--repeat"),
])
def test_options_that_cannot_be_used_are_one_line(args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output
