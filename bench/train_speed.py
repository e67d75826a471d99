"""Training throughput of charrnn beside the reference peer notebook, in the same process.

    python bench/train_speed.py [--steps 20] [--device auto] [--val-steps 100]

Measures chars/s (batch_size × num_steps per optimizer step) at the peer's configuration — a 2×512
LSTM over one-hot Anna Karenina, batch 128 × 100 steps, dropout 0.5, Adam 1e-3, clip 5 — for the
peer and for charrnn's training step in fp32 and bf16, then at the project's default params. Where
bf16 runs, it also trains fp32 and bf16 for --val-steps steps from the same seed and compares their
val loss (the last 10% of the text), since speed is worth nothing if the model learns less.

Each figure also shows the FLOP/s it makes (chars/s x the model's training FLOP per character,
common.model_cost) as a percentage of the fastest matrix product measured in the same run in its
precision (common.limits): training is bound by matrix-product throughput.
"""

import argparse
import itertools
import math
import subprocess
import sys
from pathlib import Path

import peer
import torch
from common import PARAMS_FILE, at_least, corpus_ids, device_sync, limits, machine, model_cost, model_of, timed

from charrnn import params
from charrnn.core.device import has_bf16_kernels, pick_device, precision_context, resolve_precision
from charrnn.core.evaluate import evaluate
from charrnn.core.model import shape
from charrnn.data.batches import windows
from charrnn.errors import exit_on_error
from charrnn.training.loop import train_step

REFERENCE = dict(
    cell="lstm",
    lstm_size=512,
    num_layers=2,
    embedding_size=0,
    dropout=0.5,
    batch_size=128,
    num_steps=100,
    learning_rate=0.001,
    grad_clip=5.0,
)


def charrnn_steps(vocab, ids, config, device, precision, steps):
    """charrnn's training step, `steps` times, at a constant learning rate; yields the model after each."""
    torch.manual_seed(0)
    model = model_of(len(vocab), config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    autocast = precision_context(device, precision)
    hidden = None
    batches = windows(ids, config["batch_size"], config["num_steps"], device)
    for _, (x, y) in zip(range(steps), batches):
        _, hidden = train_step(model, optimizer, x, y, hidden, config["learning_rate"], config["grad_clip"], autocast)
        yield model  # no sync per step: the training loop queues steps ahead of a GPU too


def chars_per_sec(steps, config, device="cpu"):
    return config["batch_size"] * config["num_steps"] / timed(steps, sync=lambda: device_sync(device))


def peer_chars_per_sec(vocab, ids, steps):
    torch.manual_seed(0)
    net = peer.PeerCharRNN(len(vocab), REFERENCE["lstm_size"], REFERENCE["num_layers"], REFERENCE["dropout"])
    return chars_per_sec(itertools.islice(peer.train_steps(net, ids.astype("int64")), steps), REFERENCE)


def val_loss_after(vocab, train_ids, val_ids, device, precision, steps):
    for model in charrnn_steps(vocab, train_ids, REFERENCE, device, precision, steps):  # noqa: B007 (the last is used)
        pass
    return evaluate(model, val_ids, device)


# The peer as a notebook runs it: in a process of its own, without charrnn's malloc setting
# (charrnn/memory.py), which importing bench/common.py turns on.
PEER_PROCESS = """
import sys, types
sys.modules["charrnn.memory"] = types.SimpleNamespace(keep_freed_memory=lambda: False)
sys.path.insert(0, sys.argv[1])
import train_speed
from common import corpus_ids
vocab, ids = corpus_ids("anna")
print(train_speed.peer_chars_per_sec(vocab, ids, int(sys.argv[2])))
"""


def peer_in_own_process(steps):
    result = subprocess.run(
        [sys.executable, "-c", PEER_PROCESS, str(Path(__file__).parent), str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def row(name, rate, peer_rate=None, bound=""):
    """One figure: chars/s, beside the peer's, and `bound`, its share of the machine's limit."""
    ratio = f"{rate / peer_rate:5.2f}x the peer" if peer_rate else ""
    print(f"  {name:<44} {rate:>10,.0f} chars/s  {ratio:<15} {bound}")


@exit_on_error
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=at_least(int, 1), default=20, help="timed optimizer steps per measurement")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--val-steps", type=at_least(int, 0), default=100, help="steps before the bf16-vs-fp32 val check"
    )
    args = parser.parse_args()
    device = pick_device(args.device)
    vocab, ids = corpus_ids("anna")
    steps = args.steps + 2  # the first two are warm-up, untimed
    precisions = ["fp32"] + (["bf16"] if has_bf16_kernels(torch.device(device).type) else [])

    print(f"machine: {machine()}; device {device}")
    reference_cost = model_cost(len(vocab), REFERENCE)
    limit = limits(device, reference_cost, reference_cost.train_shapes(REFERENCE["batch_size"], REFERENCE["num_steps"]))
    print(f"limits: {limit}")

    def bound(rate, config, precision):
        return limit.of_peak(rate * model_cost(len(vocab), config).flop_train, precision)

    print(
        f"reference config: 2x512 LSTM, one-hot, batch 128 x 100, dropout 0.5, Adam 1e-3, clip 5, "
        f"Anna Karenina ({len(vocab)} characters); {args.steps} timed steps"
    )
    peer_rate = peer_in_own_process(steps) if device == "cpu" else None
    if peer_rate:
        row("peer notebook (fp32, numpy one-hot per step)", peer_rate, None, bound(peer_rate, REFERENCE, "fp32"))
        print("  (the peer in a process of its own, with glibc's malloc as a notebook has it)")
    for precision in precisions:
        rate = chars_per_sec(charrnn_steps(vocab, ids, REFERENCE, device, precision, steps), REFERENCE, device)
        row(f"charrnn {precision}", rate, peer_rate, bound(rate, REFERENCE, precision))
    if "bf16" not in precisions:
        print(f"  charrnn bf16: not run, this {device.upper()} has no bf16 kernels")
    if device == "cuda":
        big = dict(REFERENCE, lstm_size=1024)
        for precision in precisions:
            rate = chars_per_sec(charrnn_steps(vocab, ids, big, device, precision, steps), big, device)
            row(f"charrnn {precision}, lstm_size 1024", rate, None, bound(rate, big, precision))

    defaults = params.load(PARAMS_FILE)
    config = {key: value for key, value in defaults.flat().items() if key in REFERENCE}
    precision = resolve_precision(device, defaults.precision)
    print(
        f"default params.yaml: {shape(config)}, "
        f"batch {config['batch_size']} x {config['num_steps']}, dropout {config['dropout']}, {precision}"
    )
    rate = chars_per_sec(charrnn_steps(vocab, ids, config, device, precision, steps), config, device)
    row(f"charrnn {precision}", rate, peer_rate, bound(rate, config, precision))

    if "bf16" in precisions and args.val_steps:
        cut = math.floor(len(ids) * 0.9)
        losses = {p: val_loss_after(vocab, ids[:cut], ids[cut:], device, p, args.val_steps) for p in ("fp32", "bf16")}
        print(
            f"val loss after {args.val_steps} steps at the reference config: fp32 {losses['fp32']:.4f}, "
            f"bf16 {losses['bf16']:.4f} (bf16 - fp32 = {losses['bf16'] - losses['fp32']:+.4f})"
        )


if __name__ == "__main__":
    main()
