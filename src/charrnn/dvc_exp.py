"""What DVC does underneath a stage, and how charrnn adapts to it: the queue's workers share the CPUs
(core.device.auto_threads counts them), `dvc exp run -S` leaves a refused value in params.yaml
(params.load puts the baseline's back), and DVC records a stage's inputs as they are when it ends
(a stage's entry point, `stage`, refuses to end when its inputs changed while it ran). Nothing else in the
package knows DVC's internals."""

import functools
import hashlib
import os
import re
import subprocess
from pathlib import Path

import yaml

from charrnn.atomic import atomic_path
from charrnn.errors import CharRNNError, exit_on_error


def project_jobs(root):
    """The jobs of the project in `root` computing at once: its DVC queue's workers, and this process
    unless it is one of theirs (a `dvc repro` beside the queue counts as one more job)."""
    in_queue = Path.cwd().resolve().is_relative_to(Path(root) / ".dvc" / "tmp" / "exps")  # DVC's copy of a queued run
    return max(1, queue_workers(root) + (0 if in_queue else 1))


def queue_workers(root):
    """The DVC queue workers running for the project in `root` (`dvc queue start -j N` starts N; each
    runs one experiment at a time). DVC names them dvc-exp-<hash of the queue's folder>-<n>; read from
    /proc, so 0 where there is none (not Linux)."""
    folder = os.path.join(root, ".dvc", "tmp", "exps", "celery")  # as DVC's celery queue names its workers
    prefix = f"dvc-exp-{hashlib.sha256(folder.encode()).hexdigest()[:6]}-".encode()
    count = 0
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone
            continue
        if b"queue-worker" in args and any(arg.startswith(prefix) for arg in args):
            count += 1
    return count


def restore_refused_values(path, names):
    """Under `dvc exp run` in the workspace DVC writes the -S values into params.yaml before the stages
    run, and leaves them there when one fails: put the lines of the refused params `names` back as the
    experiment's baseline commit has them (comment and all), so that a refused value never stays.
    Returns the names put back ([] outside a workspace experiment)."""
    root, baseline = os.environ.get("DVC_ROOT"), os.environ.get("DVC_EXP_BASELINE_REV")
    if (
        not (root and baseline and os.environ.get("DVC_EXP_NAME"))
        or path.resolve() != Path(root, "params.yaml").resolve()
    ):
        return []  # not a workspace experiment (a queued one runs in a copy DVC throws away)
    try:
        shown = subprocess.run(["git", "show", f"{baseline}:params.yaml"], cwd=root, capture_output=True, text=True)
    except OSError:  # no git here
        return []
    if shown.returncode != 0:
        return []
    base_lines, lines = (
        shown.stdout.splitlines(keepends=True),
        path.read_text(encoding="utf-8").splitlines(keepends=True),
    )
    base_at, at = _key_lines(base_lines), _key_lines(lines)
    undone = [name for name in names if name in at and name in base_at]
    for name in undone:
        lines[at[name]] = base_lines[base_at[name]]
    if undone:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(lines), encoding="utf-8")
    return undone


def _key_lines(lines):
    """{param name: line index} of the `key: value` lines of a params file (a section's keys as
    section.key, one level deep as params.yaml nests them)."""
    found, section = {}, None
    for index, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z_]\w*)\s*:(.*)$", line.rstrip("\n"))
        if match is None:
            continue
        indent, key, rest = match.groups()
        if not indent:
            section = key if rest.split("#")[0].strip() == "" else None
            found[key] = index
        elif section:
            found[f"{section}.{key}"] = index
    return found


def stage(main):
    """A stage script's entry point: exit_on_error's one-line errors, and under `dvc repro` (DVC_STAGE set)
    an error when the stage's inputs changed while it ran (params.yaml edited, a data file replaced).
    DVC records a stage's inputs as they are when it ends, and would pair the new ones with outputs made
    from the old: dvc.lock said lstm_size 48 of a best.pt of 32, and `dvc status` up to date."""

    @exit_on_error
    @functools.wraps(main)
    def checked(*args, **kwargs):
        name = os.environ.get("DVC_STAGE")
        if not name or not Path("dvc.yaml").is_file():
            return main(*args, **kwargs)
        before = stage_inputs(name)
        result = main(*args, **kwargs)
        changed = changed_inputs(before, stage_inputs(name))
        if changed:
            raise CharRNNError(
                f"{changed} changed while stage {name} ran: its outputs are of the inputs it started with, so it "
                "is not recorded as done; run dvc repro again"
            )
        return result

    return checked


def stage_inputs(stage):
    """The inputs of the DVC stage `stage` (DVC_STAGE, e.g. `train` or `dvc.yaml:train`) as they are now:
    {param: value} of the params it declares, and {file: (size, mtime)} of every file its deps name.
    DVC hashes them once the stage has ended and records that in dvc.lock, as if the stage had used
    them: compared with the same at the start, they show an edit made while it ran."""
    spec = yaml.safe_load(Path("dvc.yaml").read_text(encoding="utf-8"))["stages"][stage.rpartition(":")[2]]
    values = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8")) or {}
    declared = {name: _dotted(values, name) for name in spec.get("params") or [] if isinstance(name, str)}
    files = {}
    for dep in spec.get("deps") or []:
        for path in sorted(Path(dep).rglob("*")) if Path(dep).is_dir() else [Path(dep)]:
            if path.is_file() and "__pycache__" not in path.parts:
                stat = path.stat()
                files[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return declared, files


def changed_inputs(before, after):
    """What differs between two stage_inputs(), in words ('' when nothing does)."""
    (params, files), (params_after, files_after) = before, after
    names = [f"params.yaml's {name}" for name in params if params[name] != params_after.get(name)]
    names += [name for name in sorted(files.keys() | files_after.keys()) if files.get(name) != files_after.get(name)]
    return ", ".join(names)


def _dotted(values, name):
    for key in name.split("."):
        values = values.get(key) if isinstance(values, dict) else None
    return values
