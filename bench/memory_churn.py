"""Allocation churn: minor page faults and system time per step of training (bf16 where the CPU has bf16
kernels, and fp32), evaluation and generation, with charrnn's malloc setting (charrnn/memory.py) and
with glibc's defaults put back, each in a fresh process; the losses must not differ.

    python bench/memory_churn.py [--steps 30]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import at_least, corpus_ids, machine

CHILD = r"""
import json, resource, sys, time, types
if sys.argv[1] == "glibc-defaults":  # charrnn's setting left out: malloc as the process started
    sys.modules["charrnn.memory"] = types.SimpleNamespace(keep_freed_memory=lambda: False)
import charrnn
import torch
sys.path.insert(0, sys.argv[4])
from common import corpus_ids
from charrnn import params
from charrnn.data.batches import windows
from charrnn.generation.sample import generate
from charrnn.core.device import precision_context, resolve_precision
from charrnn.core.evaluate import evaluate
from charrnn.training.loop import train_step
from charrnn.core.model import CharRNN

job, steps = sys.argv[2], int(sys.argv[3])
p = params.load(sys.argv[5])
vocab, ids = corpus_ids("anna")
torch.manual_seed(0)
model = CharRNN.from_params(len(vocab), p)
optimizer = torch.optim.Adam(model.parameters(), lr=p.learning_rate)
batches = windows(ids, p.batch_size, p.num_steps, "cpu")
hidden, chars = None, p.batch_size * p.num_steps

def one():
    global hidden
    if job == "evaluate":
        return evaluate(model, ids[: 64 * 256 * 2 + 1], "cpu")  # two protocol windows of 64 streams
    if job == "generate":
        return generate(model, vocab, "Far", 200, top_k=5, seeds=range(8), precision="auto")[0]
    x, y = next(batches)
    autocast = precision_context("cpu", resolve_precision("cpu", job.split("-")[1]))
    loss, hidden = train_step(model, optimizer, x, y, hidden, p.learning_rate, p.grad_clip, autocast)
    return loss.item()

for _ in range(3):
    one()
start, clock = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    result = one()
end, seconds = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - clock
cpu = end.ru_utime - start.ru_utime + end.ru_stime - start.ru_stime
print(json.dumps(dict(faults=(end.ru_minflt - start.ru_minflt) / steps, system=(end.ru_stime - start.ru_stime) / cpu,
                      seconds=seconds / steps, chars=chars * steps / seconds, rss=end.ru_maxrss / 1024, result=result)))
"""


def measure(setting, job, steps):
    here = Path(__file__).parent
    result = subprocess.run(
        [sys.executable, "-c", CHILD, setting, job, str(steps), str(here), str(here.parent / "params.yaml")],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"error: {job} ({setting}) failed: {result.stderr.strip().splitlines()[-1]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=at_least(int, 1), default=30, help="timed steps per job (default 30)")
    args = parser.parse_args()
    corpus_ids("anna")  # fetched and encoded once, before any timing
    from charrnn.core.device import has_bf16_kernels

    jobs = (["train-bf16"] if has_bf16_kernels("cpu") else []) + ["train-fp32", "evaluate", "generate"]
    print(f"machine: {machine()}; params.yaml's defaults, {args.steps} steps each")
    print(
        f"{'job':<11} {'setting':<15} {'faults/step':>11} {'system':>7} {'ms/step':>8} {'chars/s':>8} "
        f"{'peak RSS':>9}  result"
    )
    for job in jobs:
        rows = {setting: measure(setting, job, args.steps) for setting in ("glibc-defaults", "charrnn")}
        for setting, row in rows.items():
            print(
                f"{job:<11} {setting:<15} {row['faults']:>11,.0f} {row['system']:>7.1%} {row['seconds'] * 1000:>8.1f} "
                f"{row['chars'] if job.startswith('train') else float('nan'):>8,.0f} {row['rss']:>6,.0f} MB  "
                f"{str(row['result'])[:30]!r}"
            )
        if rows["charrnn"]["result"] != rows["glibc-defaults"]["result"]:
            sys.exit(f"error: {job} computed other results with charrnn's setting")


if __name__ == "__main__":
    main()
