"""`charrnn report` on the shared build (HEAD holds its first run, the workspace the experiment
`wider`; HEAD~1 is the project before any run), and actionlint on the GitHub workflows."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT
from helpers.configs import METRIC_FILES
from helpers.running import assert_clean_error, charrnn

BIN = Path(sys.executable).parent


def _metrics(root):
    return {name: json.loads((root / name).read_text()) for name in METRIC_FILES}


def _row(report, path, key):
    """The table row of one metric, as its cells."""
    rows = [line for line in report.splitlines() if line.startswith(f"| `{path}` | `{key}` |")]
    assert len(rows) == 1, report
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_report_shows_old_and_new_metrics_the_curves_and_the_sample(built, tmp_path):
    old, new = built.first, _metrics(built.root)  # HEAD's run (1x8) and the workspace's (the experiment wider)
    assert charrnn("report", "--base", "HEAD", "--output", str(tmp_path), cwd=built.root).returncode == 0
    report = (tmp_path / "report.md").read_text()

    assert "| `lstm_size` | `8` | `32` |" in report
    for path, key in [("metrics/eval.json", "val_loss"), ("metrics/eval.json", "test_loss")]:
        before, after = old[path][key], new[path][key]
        assert before != after
        _, _, base, workspace, change = _row(report, path, key)
        assert base.startswith(f"{before:.4f} (") and workspace.startswith(f"{after:.4f} (")
        assert f"({after / 0.6931471805599453:.4f} bpc)" in workspace
        assert change.startswith(f"{after - before:+.4f}")
    protocol = old["metrics/eval.json"]["eval_protocol"]
    assert _row(report, "metrics/eval.json", "eval_protocol")[2:] == [f"`{protocol}`", f"`{protocol}`", ""]  # a string
    assert "metrics/train.json" not in report  # the training's record is no DVC metric

    image = tmp_path / "loss.png"
    assert image.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and "](loss.png)" in report
    sample = (built.root / "samples" / "best.txt").read_text()
    assert f"```text\n{sample[:400]}\n```" in report


def test_a_base_without_metrics_is_reported_as_such(built, tmp_path):
    new = _metrics(built.root)
    assert charrnn("report", "--base", "HEAD~1", "--output", str(tmp_path), cwd=built.root).returncode == 0
    report = (tmp_path / "report.md").read_text()
    assert "No metrics at base `HEAD~1`" in report
    _, _, base, workspace, change = _row(report, "metrics/eval.json", "val_loss")
    assert base == "—" and workspace.startswith(f"{new['metrics/eval.json']['val_loss']:.4f}") and change == ""
    assert "No loss curves at base `HEAD~1`." in report
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_bad_revisions_and_no_repository_are_clear_errors(built, tmp_path, monkeypatch):
    assert_clean_error(charrnn("report", "--base", "nosuch", cwd=built.root), "revision 'nosuch' not found")
    assert_clean_error(charrnn("report", cwd=built.root), "revision 'main' not found", "--base")
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    assert_clean_error(
        charrnn("report", "--base", "HEAD", "--output", str(taken), cwd=built.root),
        f"cannot write the report into {taken}",
    )
    assert taken.read_text() == "not a folder"
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert_clean_error(charrnn("report", cwd=tmp_path), "not in a git repository")


def test_repro_check_outside_a_charrnn_checkout_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert_clean_error(charrnn("repro-check", cwd=tmp_path), "not in a git repository: run charrnn repro-check")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "sub").mkdir()
    assert_clean_error(
        charrnn("repro-check", cwd=tmp_path / "sub"), f"{tmp_path.resolve()} has no dvc.yaml and params.yaml"
    )


@pytest.mark.parametrize("workflow", ["ci.yml", "report.yml"])
def test_workflows_pass_actionlint(workflow):
    path = ROOT / ".github" / "workflows" / workflow
    result = subprocess.run([str(BIN / "actionlint"), str(path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
