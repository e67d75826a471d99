"""The defaults' sweep: candidate configurations trained as the train stage would, on Anna Karenina.

    python bench/defaults_sweep.py [--precision fp32] --set key=value ... [--set ...]

Each `--set` group is one candidate: params.yaml's defaults with those values changed, trained by
charrnn's own train() on Anna Karenina's default split (train 90 %, val 5 %) from scratch, with its
validations, into a temporary folder (nothing of the project's is touched). Prints, per candidate,
the wall time of the training (validations included), its chars/s, and its best val loss.
`charrnn doctor --set ...` sizes a candidate in seconds before minutes are spent on it.

params.yaml's defaults were chosen by this sweep in fp32 (`--precision fp32`, the precision a CPU
without bf16 kernels trains in): bench/README.md has the runs.
"""

import argparse
import dataclasses
import tempfile
import time

from common import PARAMS_FILE, corpus_ids, machine

from charrnn import params
from charrnn.core.device import use_threads
from charrnn.core.model import shape
from charrnn.data.batches import num_windows
from charrnn.data.split import split_bounds
from charrnn.errors import exit_on_error
from charrnn.training.loop import train


@exit_on_error
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    parser.add_argument(
        "--set",
        nargs="*",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one candidate (repeat --set for more); no --set: params.yaml as it is",
    )
    args = parser.parse_args()
    base = params.load(PARAMS_FILE)
    vocab, ids = corpus_ids("anna")
    bounds = split_bounds(len(ids), base["train_frac"], base["val_frac"], base["test_frac"])
    train_ids, val_ids = (ids[slice(*bounds[name])] for name in ("train", "val"))
    print(f"machine: {machine()}")
    print(f"anna: {len(train_ids):,} train / {len(val_ids):,} val characters; precision {args.precision}")
    for pairs in args.set or [[]]:
        p = dataclasses.replace(
            params.with_overrides(base, pairs), precision=args.precision, keep_checkpoints=0, resume=False
        )
        use_threads(p.threads)
        total = p.epochs * num_windows(train_ids, p.batch_size, p.num_steps)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            metrics, _ = train(p, train_ids, val_ids, vocab, out)
            seconds = time.perf_counter() - start
        print(
            f"RESULT {' '.join(pairs) or '(params.yaml)'}: {shape(p.model_config())}, {total:,} steps; "
            f"{seconds:.0f} s, {metrics['chars_per_sec']:,.0f} chars/s, best val {metrics['best_val_loss']:.4f} "
            f"at step {metrics['best_step']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
