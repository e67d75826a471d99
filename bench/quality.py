"""Quality per minute: tiny-shakespeare val loss after a wall-clock training budget, beside the peer.

    python bench/quality.py [--budget 70] [--device auto] [--no-peer] [--set key=value ...]

The standard benchmark split: the first 90% of tiny-shakespeare trains, the last 10% (111,540
characters) validates. charrnn trains with its best settings for the budget on this kind of machine
(SETTINGS below: with bf16 kernels or fp32 only; a cosine learning rate that reaches its floor when
the time is up), the peer with the notebook's settings (2×512, batch 128 × 100, dropout 0.5, Adam
1e-3), each for the same wall-clock time.
Both are then scored by charrnn's evaluate(): mean nats/char over the whole val split by the one
evaluation protocol (fp32, state carried; charrnn.core.evaluate).

charrnn's line ends with the share of the budget's arithmetic it used: its training FLOP (chars x
the model's training FLOP per character, common.model_cost) over the seconds it trained times the
fastest matrix product measured in its precision before training (common.limits).
"""

import argparse
import math
import time

import peer
import torch
import yaml
from common import at_least, corpus_ids, device_sync, limits, machine, model_cost, model_of

from charrnn import params
from charrnn.core.device import pick_device, precision_context, resolve_precision
from charrnn.core.evaluate import evaluate
from charrnn.data.batches import windows
from charrnn.data.split import split_bounds
from charrnn.errors import CharRNNError, exit_on_error
from charrnn.training.loop import train_step

# charrnn's best settings per budget (seconds) and kind of machine, named by the precision `auto`
# trains in there: "bf16" where the device has bf16 kernels (swept on a 2-core Zen 4 with
# AVX512-BF16), "fp32" elsewhere (swept on 2-core AVX2-only CPUs). A recipe tuned on one kind
# overfits or underfits on the other, because the same budget buys another number of steps.
# - 70 s: one layer beats two (a 2x256 LSTM takes ~3x longer per step), and small batches buy more
#   updates, which matter more than throughput. bf16: 1x256 at batch 16 (1.4937 and 1.5040 in two
#   runs; batch 32 1.5129, 1.5174). fp32 on a Zen 1, a third of the Zen 4's speed: 1x192 with lr 1e-2
#   (1.6001; the bf16 recipe 1.6274, as a GRU 1.6615; 1x192 at lr 8e-3 1.6098, at batch 32 1.6908,
#   at batch 8 1.6208; 1x128 1.6293).
# - 600 s: two layers pay off, how wide depends on the machine's speed. bf16: 2x512 with dropout 0.4
#   (1.4544 at 6.1 epochs; dropout 0.3 1.4586, 0.5 1.4700; lr 6e-3 1.4618; batch 16 1.4636); a Zen 3's
#   fp32 recipe overfits there at 9.3 epochs (1.747). fp32 on a Zen 1: 2x256 with dropout 0.1 and lr
#   5e-3 (1.4810 at 5.7 epochs; dropout 0.2 with lr 6e-3 1.4836, 2x320 1.4897, 2x384 1.5236 at 2.7
#   epochs); on a Zen 3, twice as fast, 2x384 with dropout 0.2 and lr 4e-3 was best (1.465 at 4.4
#   epochs; 2x256 1.482, 2x320 1.473, 1x512 1.521). bench/README.md.
_COMMON = dict(cell="lstm", embedding_size=0, min_lr=0.0001, warmup_steps=20, grad_clip=5.0, precision="auto")
SETTINGS = {
    70: {
        "bf16": dict(
            _COMMON, lstm_size=256, num_layers=1, dropout=0.0, batch_size=16, num_steps=50, learning_rate=0.008
        ),
        "fp32": dict(
            _COMMON, lstm_size=192, num_layers=1, dropout=0.0, batch_size=16, num_steps=50, learning_rate=0.01
        ),
    },
    600: {
        "bf16": dict(
            _COMMON, lstm_size=512, num_layers=2, dropout=0.4, batch_size=32, num_steps=32, learning_rate=0.004
        ),
        "fp32": dict(
            _COMMON, lstm_size=256, num_layers=2, dropout=0.1, batch_size=32, num_steps=32, learning_rate=0.005
        ),
    },
}


# On a GPU the clock waits for the queued steps only every SYNC_EVERY steps: a wait at every step
# would keep the host from queueing the next step while the GPU runs this one (the budget may be
# overrun by up to SYNC_EVERY - 1 steps; the printed time is the real one).
SYNC_EVERY = 8


def settings_for(budget, device):
    """The settings for the device's kind (the precision `auto` trains in there) of the largest budget
    not above `budget` (the smallest one for shorter budgets)."""
    fitting = [b for b in SETTINGS if b <= budget] or [min(SETTINGS)]
    return dict(SETTINGS[max(fitting)][resolve_precision(device, "auto")])


def train_for(model, config, train_ids, budget, device, autocast):
    """Train until `budget` seconds have passed; the learning rate follows warmup + cosine in time.
    Returns the number of steps and the seconds they took (from the first step: the optimizer's
    one-off set-up, ~2 s of imports on a first construction, is not training time)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    start, step = time.perf_counter(), 0
    sync_every = SYNC_EVERY if torch.device(device).type == "cuda" else 1
    model.train()
    while True:
        hidden = None  # each epoch starts every stream from the beginning of its text
        for x, y in windows(train_ids, config["batch_size"], config["num_steps"], device):
            if step % sync_every == 0:
                device_sync(device)  # the clock must see the GPU's work, not just its queue
            elapsed = time.perf_counter() - start
            if elapsed >= budget and step % sync_every == 0:
                return step, elapsed
            elapsed = min(elapsed, budget)
            warmup = min(1.0, (step + 1) / config["warmup_steps"])
            cosine = 0.5 * (1 + math.cos(math.pi * elapsed / budget))
            lr = warmup * (config["min_lr"] + (config["learning_rate"] - config["min_lr"]) * cosine)
            _, hidden = train_step(model, optimizer, x, y, hidden, lr, config["grad_clip"], autocast)
            step += 1


def peer_for(vocab, train_ids, budget):
    """The notebook's loop, epoch after epoch, until the budget is spent; the model as charrnn evaluates it."""
    torch.manual_seed(0)
    net = peer.PeerCharRNN(len(vocab))
    start = time.perf_counter()
    for _ in peer.train_steps(net, train_ids.astype("int64"), epochs=10**6):
        if time.perf_counter() - start >= budget:
            break
    return peer.Evaluated(net)


def parse_overrides(pairs, config):
    """--set's key=value pairs, each a key of `config` with a value params.yaml would accept for it."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CharRNNError(f"--set takes key=value (got {pair!r})")
        if key not in config:
            raise CharRNNError(f"--set: unknown setting {key!r} (the settings: {', '.join(sorted(config))})")
        overrides[key] = params.check_value(key, yaml.safe_load(value), "--set")
    return overrides


@exit_on_error
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budget", type=at_least(float, 0, strict=True), default=70, help="training seconds (default 70; also try 600)"
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-peer", action="store_true", help="skip the peer notebook's run")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a setting")
    args = parser.parse_args()
    device = pick_device(args.device)
    config = settings_for(args.budget, device)
    config.update(parse_overrides(args.set, config))
    vocab, ids = corpus_ids("tinyshakespeare")
    bounds = split_bounds(len(ids), 0.9, 0.1, 0.0)
    train_ids, val_ids = (ids[slice(*bounds[name])] for name in ("train", "val"))

    print(f"machine: {machine()}; device {device}")
    cost = model_cost(len(vocab), config)
    limit = limits(device, cost, cost.train_shapes(config["batch_size"], config["num_steps"]))
    print(f"limits: {limit}")
    print(f"tiny-shakespeare: {len(train_ids):,} train / {len(val_ids):,} val characters; budget {args.budget:g} s")
    torch.manual_seed(0)
    model = model_of(len(vocab), config).to(device)
    autocast = precision_context(device, config["precision"])
    steps, seconds = train_for(model, config, train_ids, args.budget, device, autocast)
    val = evaluate(model, val_ids, device)
    chars = steps * config["batch_size"] * config["num_steps"]
    print(
        f"  charrnn  val {val:.4f} nats/char after {steps:,} steps in {seconds:.1f} s "
        f"({chars / len(train_ids):.1f} epochs, {chars / seconds:,.0f} chars/s)  {config}"
    )
    precision = resolve_precision(device, config["precision"])
    print(
        f"  charrnn  {limit.of_peak(chars * cost.flop_train / seconds, precision)}: the share of the budget's "
        f"arithmetic its training used"
    )
    if not args.no_peer:
        net = peer_for(vocab, train_ids, args.budget)
        val = evaluate(net, val_ids, "cpu")
        print(f"  peer     val {val:.4f} nats/char (notebook settings: 2x512, batch 128 x 100, dropout 0.5, Adam 1e-3)")
    print("  for scale, on a 2-core CPU: nanoGPT's CPU recipe 1.886 in 69 s; its A100 result 1.4697")


if __name__ == "__main__":
    main()
