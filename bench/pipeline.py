"""Pipeline overheads: a no-op `dvc repro`, and prepare + split of a 100 MB corpus with their peak memory.

    python bench/pipeline.py [--megabytes 100]

Works in a scratch clone of this repository's HEAD (nothing here is touched): runs the pipeline
once with a tiny model on Hamlet, times `dvc repro` with nothing changed, then points `corpus` at a
synthetic text (Anna Karenina repeated to --megabytes) and times the prepare and split stages, each
in its own process, reading their peak RSS from the kernel.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA_DIR, at_least, machine

from charrnn.commands import reprocheck
from charrnn.commands.scratch import PIPELINE_FILES, copy_project, environment, set_params
from charrnn.data import corpus
from charrnn.errors import CharRNNError, exit_on_error

REPO = Path(__file__).resolve().parent.parent
TINY = dict(reprocheck.TINY, keep_checkpoints=0)


def run(command, cwd, env):
    """Run `command`; return (seconds, peak RSS in MB, output). A failure is a CharRNNError with its output."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise CharRNNError(f"`{' '.join(command)}` failed ({proc.returncode}):\n{output[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, output


# 50 training steps over data/split/train.npy, memory-mapped: RSS must not grow with the split's size
TRAIN_WINDOWS = """
import torch
from charrnn.data.batches import load_ids, windows
from charrnn.core.model import CharRNN
from charrnn.training.loop import train_step
model = CharRNN(256, "lstm", 64, 1, 0.0)
optimizer, hidden = torch.optim.Adam(model.parameters()), None
for _, (x, y) in zip(range(50), windows(load_ids("data/split/train.npy"), 32, 32, "cpu")):
    _, hidden = train_step(model, optimizer, x, y, hidden, 1e-3, 5.0)
"""


def bench_environment(project):
    """The scratch copy's environment (its own MLflow store, a relative mirror as the checkout's), without
    DVC's analytics."""
    mirror = os.environ.get(corpus.MIRROR_ENV)
    return environment(project, mirror=REPO / mirror if mirror else None, DVC_NO_ANALYTICS="1")


def train_rss(project, env):
    return run([sys.executable, "-c", TRAIN_WINDOWS], project, env)[1]


def synthetic_corpus(path, megabytes):
    """Anna Karenina repeated to `megabytes` MB: a real text's vocabulary and statistics, at scale."""
    source, _ = corpus.fetch(corpus.CORPORA["anna"], DATA_DIR)
    text = Path(source).read_bytes()
    with open(path, "wb") as out:
        for _ in range(-(-megabytes * 2**20 // len(text))):
            out.write(text)


@exit_on_error
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=at_least(int, 1), default=100, help="size of the synthetic corpus")
    parser.add_argument("--repeats", type=at_least(int, 1), default=3, help="no-op `dvc repro` runs to time")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="charrnn-bench-") as scratch:
        project = copy_project(REPO, Path(scratch) / "project", PIPELINE_FILES, params=TINY)
        env = bench_environment(project)
        first, _, _ = run(["dvc", "repro"], project, env)
        times = []
        for _ in range(args.repeats):
            seconds, _, output = run(["dvc", "repro"], project, env)
            if "up to date" not in output:
                raise CharRNNError(f"the second `dvc repro` was not a no-op:\n{output[-2000:]}")
            times.append(seconds)
        small_rss = train_rss(project, env)
        print(f"scratch clone of {commit}: first `dvc repro` (tiny model on Hamlet) {first:.1f} s")
        print(
            f"  no-op `dvc repro`: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
            f"over {args.repeats} runs"
        )

        text = Path(scratch) / "synthetic.txt"
        synthetic_corpus(text, args.megabytes)
        set_params(project, {"corpus": str(text)})
        run([sys.executable, "stages/fetch.py"], project, env)
        size = text.stat().st_size / 2**20
        total = 0.0
        for stage in ("prepare", "split"):
            seconds, peak, _ = run([sys.executable, f"stages/{stage}.py"], project, env)
            total += seconds
            print(f"  {stage} of {size:,.0f} MB: {seconds:.1f} s, peak RSS {peak:,.0f} MB")
        print(f"  prepare + split: {total:.1f} s")
        print(
            f"  training windows from the {size:,.0f} MB train split: peak RSS {train_rss(project, env):,.0f} MB "
            f"(from Hamlet's: {small_rss:,.0f} MB)"
        )


if __name__ == "__main__":
    main()
