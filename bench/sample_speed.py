"""Generation at each precision: its speed beside the reference peer notebook, the limit that bounds
it, and its quality cost against fp32.

    python bench/sample_speed.py [--checkpoint models/best.pt] [--precisions fp32,bf16,int8] [--device auto]

The model is a trained checkpoint (`--checkpoint`; by default models/best.pt when `dvc repro` has
made it, the 2x512 LSTM on Anna Karenina), else an untrained 2x512 LSTM over Anna Karenina's
characters: the speed does not depend on the weights, but the cost needs trained ones. For each
precision the device can run (fp32 first, the reference):

- with a checkpoint, its generation path (charrnn.generation.steppers) read teacher-forced over the val and test
  splits (params.yaml's fractions), one character at a time with the state carried (the evaluation
  protocol's streams): bits per character, and the cost against fp32 in nats/char;
- chars/s writing with top-k 5 from the prime "Far": one stream (`--length` characters) and
  `--streams` streams (`--batch-length` each), the median of 5 runs (common.median_seconds), beside
  the peer's one stream (one character at a time through numpy, as the notebook's sample()), timed
  the same way.

Each speed is followed by its share of the limit that bounds it, measured in the same run
(common.limits). One stream, per character, reads every weight once (counted at the precision's
bytes per weight), at best at the rate of an fp32 one-row product over the fp32 weights (the fastest
plain read of them), and runs a few dozen operations (counted as they are dispatched), each at least
as long as one small operation: the sum is its ceiling. Beside it, the time of one stream's matrix
products alone (products_seconds): on a CPU whose one-row kernel for a precision computes slower
than it reads (int8 on AVX2), that, not the read, is the floor of a step. Many streams are matrix
products of `--streams` rows, so their FLOP/s against a matrix product of that shape in their
precision (int8: bf16, its products' inputs, where the device has it).
"""

import argparse
import math
from pathlib import Path

import peer
import torch
import torch.nn.functional as F
from common import PARAMS_FILE, at_least, corpus_ids, limits, machine, median_seconds, model_cost
from torch.utils._python_dispatch import TorchDispatchMode

from charrnn import params
from charrnn.core import checkpoint
from charrnn.core.device import pick_device
from charrnn.core.model import CharRNN
from charrnn.core.model import shape as model_shape
from charrnn.data.split import split_bounds
from charrnn.errors import CharRNNError, exit_on_error
from charrnn.generation.sample import generate
from charrnn.generation.steppers import MAX_COST, column_major, make_stepper, teacher_forced_loss
from charrnn.generation.steppers import generation_precision as resolve
from charrnn.params import GENERATION_PRECISIONS

PRIME = "Far"
DEFAULT_CHECKPOINT = Path("models/best.pt")


def chars_per_second(write, chars, device):
    """Characters per second of `write(chars)`, from the median of 5 timed runs after a warm-up."""
    return chars / median_seconds(lambda: write(chars), device)


class _CountOps(TorchDispatchMode):
    """Counts the operations dispatched inside its `with` block."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def ops_per_char(write):
    """Operations one more character costs `write(n)` (writing 11 characters against 1, per character)."""
    counts = []
    for chars in (1, 11):
        with _CountOps() as counter:
            write(chars)
        counts.append(counter.count)
    return (counts[1] - counts[0]) / 10


def products_seconds(model, precision, device):
    """Seconds per character of one stream's recurrent matrix products alone at `precision`, each on a
    one-row input as its step runs them: fp32 as torch.lstm_cell does (input and hidden products on
    the column-major weights of CharRNN.stepper), bf16/int8 the stepper's own products (layer 0's input
    is a row gather there). The floor of one stream's step before the gates, the head and sampling."""
    if precision == "fp32":
        weights = [column_major(weight) for name, weight in model.rnn.named_parameters() if name.startswith("weight_")]
        products = [lambda x, w=w: F.linear(x, w) for w in weights]
        widths = [w.shape[1] for w in weights]
    else:
        products = make_stepper(model, precision).products
        widths = [product.weight.shape[1] for product in products]
    rows = [torch.randn(1, width, device=device) for width in widths]
    return median_seconds(lambda: [product(row) for product, row in zip(products, rows)], device)


def load_model(path, device):
    """(model, vocab, {split name: ids} to score it on) of the checkpoint at `path`, or of an untrained
    2x512 LSTM over Anna Karenina (no splits) when `path` is None."""
    if path is None:
        vocab, _ = corpus_ids("anna")
        torch.manual_seed(0)
        return CharRNN(len(vocab), "lstm", 512, 2, 0.5).to(device).eval(), vocab, {}
    model, vocab = checkpoint.load_model(path)
    corpus_vocab, ids = corpus_ids(vocab.corpus)
    if not corpus_vocab.same_text(vocab):
        raise CharRNNError(f"{path} was trained on another text or vocabulary than corpus '{vocab.corpus}'")
    p = params.load(PARAMS_FILE)
    bounds = split_bounds(len(ids), p.train_frac, p.val_frac, p.test_frac)
    splits = {name: ids[start:end] for name, (start, end) in bounds.items() if name != "train" and end - start > 1}
    return model.to(device).eval(), vocab, splits


@exit_on_error
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help=f"a trained checkpoint (default: {DEFAULT_CHECKPOINT} if "
        "it exists, else an untrained 2x512 LSTM: speed only)",
    )
    parser.add_argument("--precisions", default="fp32,bf16,int8", help="comma-separated, fp32 first (the reference)")
    parser.add_argument(
        "--length", type=at_least(int, 1), default=2000, help="characters of the one-stream measurement"
    )
    parser.add_argument("--streams", type=at_least(int, 1), default=256, help="streams of the batched measurement")
    parser.add_argument(
        "--batch-length", type=at_least(int, 1), default=200, help="characters per stream of the batched one"
    )
    parser.add_argument("--peer-length", type=at_least(int, 1), default=300, help="characters the (slow) peer writes")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    device = pick_device(args.device)
    precisions = args.precisions.split(",")
    if precisions[0] != "fp32" or not set(precisions) <= set(GENERATION_PRECISIONS) - {"auto"}:
        raise CharRNNError(f"--precisions: fp32 first, then any of bf16, int8 (got {args.precisions!r})")
    path = args.checkpoint or (DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.exists() else None)
    model, vocab, splits = load_model(path, device)
    config = model.config

    print(f"machine: {machine()}; device {device}")
    cost = model_cost(len(vocab), config)
    shape = f"{args.streams}x" + "x".join(map(str, cost.gemm_width))
    limit = limits(device, cost, {shape: (args.streams, *cost.gemm_width)})
    print(f"limits: {limit}")

    def bound(precision, streams, rate, write):
        if streams == 1:  # every weight read once per character, by a few dozen small operations
            products = products_seconds(model, precision, device)
            return (
                f"{limit.of_one_stream(rate, cost.weight_bytes(precision), ops_per_char(write))}; "
                f"its products alone {products * 1e6:.0f} µs/char (at most {1 / products:,.0f} chars/s)"
            )
        gemm = precision if precision in limit.gemm else "bf16" if "bf16" in limit.gemm else "fp32"
        return limit.of_shape(rate * cost.flop_forward, gemm, shape)

    scored = ", ".join(f"{name} {len(ids):,}" for name, ids in splits.items())
    print(
        f"{path or 'untrained (speed only)'}: {model_shape(config)}, "
        f"{len(vocab)} characters{f'; scored on {scored} characters' if splits else ''}; top-k 5, prime "
        f"{PRIME!r}; auto here is {resolve('auto', device, config['cell'])}"
    )
    net = peer.PeerCharRNN(len(vocab))
    peer_rate = chars_per_second(lambda n: peer.sample(net, n, vocab.encode(PRIME)), args.peer_length, "cpu")
    print(f"  {'peer notebook, 1 stream (CPU)':<26}{peer_rate:>10,.0f} chars/s")
    reference = {}
    for precision in precisions:
        try:
            resolve(precision, device, config["cell"])
        except CharRNNError as err:
            print(f"  {precision}: not run here: {err}")
            continue
        losses = {name: teacher_forced_loss(model, ids, precision, device) for name, ids in splits.items()}
        reference = reference or losses
        if losses:
            print(
                f"  {precision}: "
                + ", ".join(
                    f"{name} {loss / math.log(2):.4f} bpc (cost {loss - reference[name]:+.5f})"
                    for name, loss in losses.items()
                )
            )
        for streams in (1, args.streams):
            seeds = range(streams)

            def write(n):
                # timed within this iteration
                return generate(model, vocab, PRIME, n, top_k=5, seeds=seeds, device=device, precision=precision)  # noqa: B023

            rate = streams * chars_per_second(write, args.length if streams == 1 else args.batch_length, device)
            label = f"{precision}, {streams} stream{'s' if streams > 1 else ''}"
            print(
                f"  {label:<26}{rate:>10,.0f} chars/s {rate / peer_rate:6.1f}x the peer  "
                f"{bound(precision, streams, rate, write)}",
                flush=True,
            )
    print(
        f"bpc: of the generation path, teacher-forced; cost: its loss minus fp32's in nats/char (auto may use a "
        f"precision whose val cost is at most {MAX_COST})"
    )


if __name__ == "__main__":
    main()
