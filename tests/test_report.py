"""`charrnn report` on a temp git repository with two commits of a tiny pipeline, and actionlint on the
GitHub workflows."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PIPELINE, ROOT, assert_clean_error, make_project, write_params

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, mirror):
    """A project on branch `work` (no `main`) whose HEAD holds a run with lstm_size 32 and whose workspace
    holds one with 16; HEAD~1 is the first commit, before any run. Returns (runner, old metrics, new metrics)."""
    project = make_project(tmp_path_factory.mktemp("report"), mirror)
    subprocess.run(["git", "branch", "-m", "work"], cwd=project.root, check=True)  # no main, whatever git's default
    write_params(project.root, **PIPELINE)
    project("repro")
    subprocess.run(["git", "add", "-A"], cwd=project.root, check=True, env=project.env)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first run"],
                   cwd=project.root, check=True, env=project.env)
    old = _metrics(project.root)
    write_params(project.root, **{**PIPELINE, "lstm_size": 16})
    project("repro")
    return project, old, _metrics(project.root)


def _metrics(root):
    return {name: json.loads((root / name).read_text())
            for name in ("metrics/train.json", "metrics/eval.json", "data/split/split.json")}


def _row(report, path, key):
    """The table row of one metric, as its cells."""
    rows = [line for line in report.splitlines() if line.startswith(f"| `{path}` | `{key}` |")]
    assert len(rows) == 1, report
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_report_shows_old_and_new_metrics_the_curves_and_the_sample(two_runs):
    project, old, new = two_runs
    project("report", "--base", "HEAD", tool="charrnn")
    report = (project.root / "report" / "report.md").read_text()

    assert "| `lstm_size` | `32` | `16` |" in report
    for path, key in [("metrics/eval.json", "val_loss"), ("metrics/eval.json", "test_loss"),
                      ("metrics/train.json", "best_val_loss")]:
        before, after = old[path][key], new[path][key]
        assert before != after
        _, _, base, workspace, change = _row(report, path, key)
        assert base.startswith(f"{before:.4f} (") and workspace.startswith(f"{after:.4f} (")
        assert f"({after / 0.6931471805599453:.4f} bpc)" in workspace
        assert change.startswith(f"{after - before:+.4f}")
    assert _row(report, "metrics/train.json", "num_params")[2:] == [
        str(old["metrics/train.json"]["num_params"]), str(new["metrics/train.json"]["num_params"]),
        f"{new['metrics/train.json']['num_params'] - old['metrics/train.json']['num_params']:+d}"]
    assert _row(report, "metrics/train.json", "device")[2:] == ["`cpu`", "`cpu`", ""]  # a string: no change

    image = project.root / "report" / "loss.png"
    assert image.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and "](loss.png)" in report
    sample = (project.root / "samples" / "best.txt").read_text()
    assert f"```text\n{sample[:400]}\n```" in report


def test_a_base_without_metrics_is_reported_as_such(two_runs):
    project, _, new = two_runs
    project("report", "--base", "HEAD~1", "--output", "first", tool="charrnn")
    report = (project.root / "first" / "report.md").read_text()
    assert "No metrics at base `HEAD~1`" in report
    _, _, base, workspace, change = _row(report, "metrics/eval.json", "val_loss")
    assert base == "—" and workspace.startswith(f"{new['metrics/eval.json']['val_loss']:.4f}") and change == ""
    assert "No loss curves at base `HEAD~1`." in report
    assert (project.root / "first" / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_bad_revisions_and_no_repository_are_clear_errors(two_runs, tmp_path):
    project, _, _ = two_runs
    assert_clean_error(project("report", "--base", "nosuch", check=False, tool="charrnn"),
                       "revision 'nosuch' not found")
    assert_clean_error(project("report", check=False, tool="charrnn"), "revision 'main' not found", "--base")
    outside = subprocess.run([str(BIN / "charrnn"), "report"], cwd=tmp_path, capture_output=True, text=True,
                             env={**project.env, "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)})
    assert_clean_error(outside, "not in a git repository")
    taken = project.root / "taken"
    taken.write_text("not a folder")
    assert_clean_error(project("report", "--base", "HEAD", "--output", "taken", check=False, tool="charrnn"),
                       "cannot write the report into taken")
    assert taken.read_text() == "not a folder"


def test_repro_check_outside_a_charrnn_checkout_is_a_clear_error(two_runs, tmp_path):
    project, _, _ = two_runs
    env = {**project.env, "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)}
    repro_check = [str(BIN / "charrnn"), "repro-check"]
    outside = subprocess.run(repro_check, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert_clean_error(outside, "not in a git repository: run charrnn repro-check")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "sub").mkdir()
    other = subprocess.run(repro_check, cwd=tmp_path / "sub", capture_output=True, text=True, env=env)
    assert_clean_error(other, f"{tmp_path.resolve()} has no dvc.yaml and params.yaml")


@pytest.mark.parametrize("workflow", ["ci.yml", "report.yml"])
def test_workflows_pass_actionlint(workflow):
    path = ROOT / ".github" / "workflows" / workflow
    result = subprocess.run([str(BIN / "actionlint"), str(path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
