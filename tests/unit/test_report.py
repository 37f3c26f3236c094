import base64
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.compare.sides import Result
from bench.results.recording import merged, new_histogram
from bench.compare.report import CHARTS, spectrum_points, write_report
from bench.results.files import ResultsError

BASELINES = Path(__file__).parents[2] / "results" / "baselines"
RUNS = [BASELINES / "choreography-300", BASELINES / "orchestration-300"]
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def test_html_embeds_every_chart_and_writes_the_pngs_beside_it(tmp_path):
    html, pngs = write_report(RUNS, tmp_path / "out" / "report.html")
    text = html.read_text()
    embedded = [base64.b64decode(data) for data in DATA_URI.findall(text)]
    assert len(embedded) == len(CHARTS) == len(pngs) == 5
    assert [p.name for p in pngs] == [f"report-{name}.png" for name in
                                       ("spectrum", "time", "steps", "messages", "correctness")]
    for png, data in zip(pngs, embedded):
        assert png.parent == html.parent
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and png.read_bytes() == data
    # Offline: nothing is fetched from elsewhere.
    assert "http://" not in text and "https://" not in text
    for run in RUNS:
        assert str(run) in text
    assert "choreography" in text and "orchestration" in text and "step.orchestrator.p99" in text


def test_report_without_timeseries_falls_back_to_the_hlog(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUNS[1], run)
    (run / "timeseries.csv").unlink()
    html, pngs = write_report([run], tmp_path / "r.html")
    assert len(DATA_URI.findall(html.read_text())) == 5


def test_spectrum_points_rise_and_end_at_the_total_count():
    histogram = merged(Result.load(RUNS[1]).histograms("e2e.hlog"))
    x, y = spectrum_points(histogram)
    assert x[0] == 1.0 and x[-1] == pytest.approx(histogram.get_total_count())
    assert (x[1:] >= x[:-1]).all() and (y[1:] >= y[:-1]).all()
    assert y[-1] == pytest.approx(histogram.get_max_value() / 1000.0, rel=1e-3)


def test_spectrum_of_one_value():
    histogram = new_histogram()
    histogram.record_value(1000)
    x, y = spectrum_points(histogram)
    assert list(y) == [pytest.approx(1.0, rel=1e-3)] * 2


def test_missing_directory_is_a_results_error(tmp_path):
    with pytest.raises(ResultsError, match="no such result directory"):
        write_report([tmp_path / "nowhere"], tmp_path / "r.html")


def test_cli(tmp_path):
    ok = CliRunner().invoke(cli, ["report", *map(str, RUNS), "--output", str(tmp_path / "r.html")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "r.html").exists() and (tmp_path / "r-spectrum.png").exists()
    bad = CliRunner().invoke(cli, ["report", str(tmp_path / "nowhere"), "--output", str(tmp_path / "x.html")])
    assert bad.exit_code == 2 and bad.output.startswith("Error: ") and bad.output.strip().count("\n") == 0


def test_a_report_never_overwrites_a_file_that_is_not_a_report(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUNS[0], run)
    summary = (run / "summary.json").read_bytes()
    with pytest.raises(ResultsError, match="is an .html file"):
        write_report([run], run / "summary.json")
    (tmp_path / "notes.html").write_text("my notes")
    with pytest.raises(ResultsError, match="not a bench report"):
        write_report([run], tmp_path / "notes.html")
    assert (run / "summary.json").read_bytes() == summary and (tmp_path / "notes.html").read_text() == "my notes"
    html, _ = write_report([run], tmp_path / "report.html")
    write_report([run], html)  # an earlier report may be replaced
