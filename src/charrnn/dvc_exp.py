"""What DVC does underneath a stage, and how charrnn adapts to it: the queue's workers share the CPUs
(core.device.auto_threads counts them), `dvc exp run -S` writes its values into params.yaml and leaves
them there, also when a stage refuses one (charrnn never rewrites params.yaml: an error under a workspace
experiment says where the values are), and DVC records a stage's inputs as they are when it ends (a
stage's entry point, `stage`, refuses to end when its inputs changed while it ran). Nothing else in the
package knows DVC's internals."""

import functools
import hashlib
import logging
import os
from pathlib import Path

import yaml

from charrnn.errors import CharRNNError, exit_on_error
from charrnn.memory import keep_freed_memory


def project_jobs(root):
    """The jobs of the project in `root` computing at once: its DVC queue's workers, and this process
    unless it is one of theirs (a `dvc repro` beside the queue counts as one more job)."""
    return max(1, queue_workers(root) + (0 if in_queued_copy() else 1))


def in_queued_copy():
    """True in DVC's copy of a queued experiment (.dvc/tmp/exps/<tmp>), which DVC throws away after it."""
    return "/.dvc/tmp/exps/" in Path.cwd().resolve().as_posix() + "/"


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


def stage(main):
    """A stage script's entry point: exit_on_error's one-line errors, freed memory kept for reuse
    (memory.py), MLflow's INFO lines left out (quiet_mlflow), and under `dvc repro` (DVC_STAGE set)
    an error when the stage's inputs changed while it ran (params.yaml edited, a data file replaced).
    DVC records a stage's inputs as they are when it ends, and would pair the new ones with outputs made
    from the old: dvc.lock said lstm_size 48 of a best.pt of 32, and `dvc status` up to date."""

    @exit_on_error
    @functools.wraps(main)
    def checked(*args, **kwargs):
        keep_freed_memory()  # a stage computes in bulk and ends: see memory.py
        quiet_mlflow()
        name = os.environ.get("DVC_STAGE")
        if not name or not Path("dvc.yaml").is_file():
            return main(*args, **kwargs)
        before = stage_inputs(name)
        try:
            result = main(*args, **kwargs)
        except CharRNNError as err:
            if in_workspace_experiment():
                raise CharRNNError(f"{err} ({EXPERIMENT_VALUES})") from None
            raise
        changed = changed_inputs(before, stage_inputs(name))
        if changed:
            raise CharRNNError(
                f"{changed} changed while stage {name} ran: its outputs are of the inputs it started with, so it "
                "is not recorded as done; run dvc repro again"
            )
        return result

    return checked


def quiet_mlflow():
    """MLflow's loggers at WARNING unless MLFLOW_LOGGING_LEVEL says otherwise: a stage says itself what
    MLflow did ("registered charrnn-anna version 3"), and MLflow's INFO lines only repeated it or were
    noise in the first run's output ("Creating initial MLflow database tables...", "Validating input
    example against model signature" once per logged model). Set for an MLflow imported later (it reads
    the variable on import, also in the processes a stage starts) and for one imported already."""
    if os.environ.get("MLFLOW_LOGGING_LEVEL"):
        return
    os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
    logging.getLogger("mlflow").setLevel(logging.WARNING)


EXPERIMENT_VALUES = "params.yaml holds this experiment's values: dvc exp run -S wrote them there, and DVC leaves them"


def in_workspace_experiment():
    """True in a stage of `dvc exp run` in the workspace (not in the copy of a queued one)."""
    return bool(os.environ.get("DVC_EXP_NAME")) and not in_queued_copy()


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
