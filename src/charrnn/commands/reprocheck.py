"""`charrnn repro-check`: run the pipeline twice from scratch, each in a scratch copy of the repository,
with a tiny configuration; every metric and sample must come out identical, and a second `dvc repro`
must have nothing to do.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from charrnn.commands.scratch import copy_project, environment
from charrnn.data.corpus import MIRROR_ENV
from charrnn.errors import CharRNNError

# Wall-clock figures differ on every run by nature; everything else must match bit for bit.
TIMING_KEYS = {"chars_per_sec"}

# The whole pipeline on Hamlet in seconds (143 steps, a kept checkpoint at step 100, every stage run):
# repro-check's configuration, and the tiny pipeline of the tests and bench/pipeline.py. Dotted keys are
# nested sections of params.yaml (sample.length is sample: {length: ...}).
TINY = {
    "corpus": "hamlet",
    "lstm_size": 32,
    "num_layers": 1,
    "batch_size": 32,
    "num_steps": 32,
    "epochs": 1,
    "eval_every": 50,
    "keep_checkpoints": 100,
    "warmup_steps": 5,
    "dropout": 0.1,
    "learning_rate": 0.01,
    "precision": "fp32",
    "device": "cpu",
    "sample.length": 200,
}

OUTPUTS = ("metrics/*.json", "data/split/split.json", "plots/train/*.csv", "samples/*.txt")


def git_root(command):
    """The top folder of the git checkout the current folder is in; outside one, a CharRNNError."""
    result = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if result.returncode != 0:
        raise CharRNNError(f"not in a git repository: run charrnn {command} in the project's checkout")
    return Path(result.stdout.strip())


def repro_check(root, overrides=TINY, keep=False):
    """Return the list of differences (empty when the pipeline reproduces)."""
    root = Path(root).resolve()
    if not (root / "dvc.yaml").is_file() or not (root / "params.yaml").is_file():
        raise CharRNNError(
            f"{root} has no dvc.yaml and params.yaml: run charrnn repro-check in the charrnn project's checkout"
        )
    scratch = Path(tempfile.mkdtemp(prefix="charrnn-repro-"))
    try:
        results = [_run_from_scratch(root, scratch / f"run{i}", overrides) for i in (1, 2)]
    finally:
        if keep:
            print(f"scratch copies kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    (first, first_problems), (second, second_problems) = results
    problems = first_problems + second_problems
    for name in sorted(first.keys() | second.keys()):
        a, b = first.get(name), second.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            problems += [
                f"{name}: {key} {a.get(key)!r} != {b.get(key)!r}"
                for key in sorted(a.keys() | b.keys())
                if key not in TIMING_KEYS and a.get(key) != b.get(key)
            ]
        elif a != b:
            problems.append(f"{name}: differs between the two runs")
    compared = sum(len(v) if isinstance(v, dict) else 1 for v in first.values())
    print(f"repro-check: compared {compared} metrics and outputs of two runs from scratch")
    return problems


def _run_from_scratch(root, copy, overrides):
    copy_project(root, copy, params=overrides)
    mirror = os.environ.get(MIRROR_ENV)
    env = environment(copy, mirror=root / mirror if mirror else None)  # a relative mirror is the checkout's
    dvc = str(Path(sys.executable).parent / "dvc")
    print(f"repro-check: dvc repro in {copy}")
    run = subprocess.run([dvc, "repro"], cwd=copy, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:])
        raise CharRNNError(f"dvc repro failed in {copy}:\n{tail}")
    again = subprocess.run([dvc, "repro"], cwd=copy, env=env, capture_output=True, text=True)
    problems = (
        []
        if "Data and pipelines are up to date" in again.stdout
        else [f"a second dvc repro was not a no-op:\n{again.stdout.strip()}"]
    )

    outputs = {}
    for pattern in OUTPUTS:
        for path in sorted(copy.glob(pattern)):
            text = path.read_text(encoding="utf-8")
            outputs[str(path.relative_to(copy))] = json.loads(text) if path.suffix == ".json" else text
    return outputs, problems
