"""DVC's queue on this machine: two queued experiments run one at a time and two at a time.

    python bench/dvc_queue.py [--set lstm_size=256 epochs=1]

Works in a scratch clone of this repository's HEAD (nothing here is touched): builds the data stages
once, then for each way of running queues two experiments (the --set values, each its own seed),
times `dvc queue start -j N` until the queue is empty and prints the wall time beside each run's
training speed and threads, read from the clone's MLflow store:

- `-j 1`, `threads: auto`: one experiment at a time with every CPU;
- `-j 2`, `threads: auto`: two at a time, the CPUs shared between them (charrnn's default);
- `-j 2`, `threads` = the CPU count: two at a time, each with every CPU, as before the threads
  setting (torch's own default): the oversubscribed case.
"""

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import machine
from pipeline import REPO, bench_environment, run

from charrnn.commands.scratch import PIPELINE_FILES, copy_project
from charrnn.dvc_exp import queue_workers
from charrnn.errors import CharRNNError, exit_on_error

WAYS = [
    ("-j 1, threads auto", 1, "auto"),
    ("-j 2, threads auto", 2, "auto"),
    ("-j 2, threads = CPUs (before)", 2, len(os.sched_getaffinity(0))),
]


def run_queue(project, env, jobs, names):
    """Start the queue with `jobs` workers; wait until it is empty and its workers are gone; the seconds."""
    start = time.perf_counter()
    # the workers outlive `dvc queue start`: no captured pipes for them to hold open
    subprocess.run(
        ["dvc", "queue", "start", "-j", str(jobs)],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        start_new_session=True,
    )
    while any(word in run(["dvc", "queue", "status"], project, env)[2] for word in ("Queued", "Running")):
        time.sleep(1)
    seconds = time.perf_counter() - start
    status = run(["dvc", "queue", "status"], project, env)[2]
    if any(f"{name} " in line and "Success" not in line for name in names for line in status.splitlines()):
        raise CharRNNError(f"a queued experiment failed:\n{status}")
    run(["dvc", "queue", "stop"], project, env)
    while queue_workers(project):  # a worker left over would count as a job of the next way
        time.sleep(1)
    return seconds


@exit_on_error
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set",
        nargs="*",
        default=["lstm_size=256", "epochs=1"],
        metavar="KEY=VALUE",
        help="params of both experiments (default: %(default)s)",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="charrnn-bench-") as scratch:
        project = copy_project(REPO, Path(scratch) / "project", PIPELINE_FILES)
        env = bench_environment(project)
        env.pop("OMP_NUM_THREADS", None)  # auto must see the queue
        run(["dvc", "repro", "split"], project, env)
        results, seed = [], 0
        for label, jobs, threads in WAYS:
            names = []
            for _ in range(2):
                seed += 1
                names.append(f"q{seed}")
                sets = [f"-S{value}" for value in [*args.set, f"seed={seed}", f"threads={threads}"]]
                run(["dvc", "exp", "run", "--queue", "-n", names[-1], *sets], project, env)
            results.append((label, run_queue(project, env, jobs, names), names))

        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{project}/mlruns/mlflow.db")
        runs = {
            run.data.tags.get("dvc_exp_name"): run
            for run in client.search_runs([e.experiment_id for e in client.search_experiments()])
        }
        print(f"two queued experiments ({' '.join(args.set)}, each its own seed), whole pipeline each:")
        for label, seconds, names in results:
            each = ", ".join(
                f"{runs[name].data.metrics['chars_per_sec']:,.0f} chars/s on "
                f"{runs[name].data.metrics['threads']:.0f} thread(s)"
                for name in names
            )
            print(f"  {label:<31} {seconds:6.1f} s   (training: {each})")


if __name__ == "__main__":
    main()
