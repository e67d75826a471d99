"""`charrnn report`: the workspace against a git revision as a Markdown report — the params that
differ, the metrics (old, new, change; losses also in bits per character), both runs' loss curves in
one PNG, the start of the new sample, and optionally the repro-check verdict.

Params and metrics come from `dvc params diff` / `dvc metrics diff`; the base's loss curve from git
(`plots/train/loss.csv` is git-tracked). Everything works offline on a local repository.
"""

import csv
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

from charrnn.atomic import atomic_path
from charrnn.commands.reprocheck import git_root, repro_check
from charrnn.errors import CharRNNError
from charrnn.tracking.plots import plot_losses

LOSS_CURVES = "plots/train/loss.csv"
SAMPLE = "samples/best.txt"
EXCERPT_CHARS = 400
BPC_METRICS = {"val_loss", "test_loss", "best_val_loss"}  # nats/char, also shown in bits/char
IMAGE = "loss.png"


def write_report(base="main", output="report", with_repro_check=False):
    """Write `output`/report.md (and its image) comparing the workspace with `base`; return its path."""
    root = git_root("report")
    commit = _resolve(root, base)
    label = f"`{base}` ({commit[:7]})"
    sections = [f"# charrnn report\n\nThe workspace against {label}."]
    sections.append(_params_section(root, commit))
    sections.append(_metrics_section(root, commit, label))
    repro = _repro_section(root) if with_repro_check else None  # before any file is written: it may fail

    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CharRNNError(f"cannot write the report into {output}: {err.strerror}") from None
    sections.append(_curves_section(root, commit, base, output / IMAGE))
    sections.append(_sample_section(root))
    if repro is not None:
        sections.append(repro)
    path = output / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return path


def _resolve(root, revision):
    result = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], cwd=root, capture_output=True, text=True
    )
    if result.returncode != 0:
        hint = "; name the base with --base REV" if revision == "main" else ""
        raise CharRNNError(f"git revision '{revision}' not found{hint}")
    return result.stdout.strip()


def _dvc_diff(root, kind, commit, *options):
    """`dvc <kind> diff --json [options] commit` (against the workspace) as {file: {key: {"old", "new", ...}}}."""
    dvc = Path(sys.executable).parent / "dvc"
    result = subprocess.run(
        [str(dvc), kind, "diff", "--json", *options, commit], cwd=root, capture_output=True, text=True
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        raise CharRNNError(f"dvc {kind} diff failed: {lines[-1]}")
    return json.loads(result.stdout or "{}")


def _params_section(root, commit):
    rows = [
        (f"`{key}`", _plain(change.get("old")), _plain(change.get("new")))
        for _, key, change in _entries(_dvc_diff(root, "params", commit))
    ]
    if not rows:
        return "## Params\n\nNo param differs."
    return "## Params\n\n" + _table(["param", "base", "workspace"], rows)


def _metrics_section(root, commit, label):
    entries = _entries(_dvc_diff(root, "metrics", commit, "--all"))
    notes = []
    if all(change.get("old") is None for _, _, change in entries):
        notes.append(f"No metrics at base {label}.")
    if all(change.get("new") is None for _, _, change in entries):
        notes.append("No metrics in the workspace: run `dvc repro` first.")
    rows = [(f"`{path}`", f"`{key}`", *_metric_cells(key, change)) for path, key, change in entries]
    table = _table(["file", "metric", "base", "workspace", "change"], rows) if rows else ""
    legend = "Losses in nats per character, with bits per character (bpc = nats / ln 2)."
    return "\n\n".join(["## Metrics", *notes, table, legend] if table else ["## Metrics", *notes])


def _entries(diff):
    """(file, key, change) for every entry of a dvc diff, in a stable order."""
    return [(path, key, diff[path][key]) for path in sorted(diff) for key in sorted(diff[path])]


def _metric_cells(key, change):
    """The base, workspace and change cells: numbers with 4 decimals, losses also in bits per char;
    other values (a device, a precision) as they are, without a change."""
    old, new = change.get("old"), change.get("new")
    per_bit = 1 / math.log(2) if key.rsplit(".", 1)[-1] in BPC_METRICS else None

    def value(x):
        if not _is_number(x):
            return _plain(x)
        return _number(x) + (f" ({_number(x * per_bit)} bpc)" if per_bit else "")

    if not (_is_number(old) and _is_number(new)):
        return value(old), value(new), ""
    delta = new - old
    change_cell = _number(delta, sign=True) + (f" ({_number(delta * per_bit, sign=True)} bpc)" if per_bit else "")
    return value(old), value(new), change_cell


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _number(x, sign=False):
    if isinstance(x, int):
        return f"{x:+d}" if sign else str(x)
    digits = 4 if abs(x) < 1000 else 1  # losses to 4 decimals; chars/s to 1
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _plain(x):
    return "—" if x is None else f"`{x}`"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _curves_section(root, commit, base, image):
    shown = _git_show(root, commit, LOSS_CURVES)
    old = _read_curves(shown) if shown is not None else None
    current = root / LOSS_CURVES
    new = _read_curves(current.read_text(encoding="utf-8")) if current.is_file() else None
    if not old and not new:
        image.unlink(missing_ok=True)
        return f"## Loss curves\n\nNo `{LOSS_CURVES}` at the base or in the workspace."
    plot_losses({base: old, "workspace": new}, image)
    notes = []
    if not old:
        notes.append(f"No loss curves at base `{base}`.")
    if not new:
        notes.append("No loss curves in the workspace.")
    return "\n\n".join(["## Loss curves", f"![train and val loss of the base and the workspace]({image.name})", *notes])


def _git_show(root, commit, path):
    """The text of `path` at `commit`, or None if it is not there."""
    result = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=root, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def _read_curves(text):
    return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(io.StringIO(text))]


def _sample_section(root):
    path = root / SAMPLE
    if not path.is_file():
        return f"## Sample\n\nNo `{SAMPLE}` in the workspace."
    text = path.read_text(encoding="utf-8")[:EXCERPT_CHARS]
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return f"## Sample\n\nThe first {EXCERPT_CHARS} characters of `{SAMPLE}`:\n\n{fence}text\n{text}\n{fence}"


def _longest_backtick_run(text):
    return max((len(run) for run in re.findall("`+", text)), default=0)


def _repro_section(root):
    problems = repro_check(root)
    if not problems:
        return (
            "## Reproducibility\n\n`charrnn repro-check`: identical metrics and samples in two runs from "
            "scratch; a second `dvc repro` is a no-op."
        )
    listed = "\n".join(f"- {problem}" for problem in problems)
    return f"## Reproducibility\n\n`charrnn repro-check` found {len(problems)} difference(s):\n\n{listed}"
