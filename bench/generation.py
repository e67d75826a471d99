"""Generation at each precision: its quality cost against fp32, and its speed beside the peer.

    python bench/generation.py [--checkpoint models/best.pt] [--precisions fp32,bf16,int8] [--device auto]

A trained checkpoint (its corpus fetched as the other benchmarks do, split by params.yaml's fractions):
for each precision the machine can run, the generation path (charrnn.steppers) is read teacher-forced
over the val and test splits, one character at a time with the state carried (the evaluation
protocol's streams), giving its bits per character and its cost against fp32 in nats/char; then it
writes with top-k 5 from the prime "Far", one stream (`--length` characters) and `--streams` streams
(`--batch-length` each), best of `--repeat` runs, beside the peer notebook's one stream.
"""

import argparse
import math
import time

from common import PARAMS_FILE, corpus_ids, device_sync, machine
from charrnn import checkpoint, params
from charrnn.device import pick_device
from charrnn.errors import CharRNNError, exit_on_error
from charrnn.sample import generate
from charrnn.split import split_bounds
from charrnn.steppers import MAX_COST, PRECISIONS, resolve, teacher_forced_loss
import peer

PRIME = "Far"


def best_rate(write, chars, device, repeat):
    """Characters per second of `write(chars)`, the best of `repeat` runs after a short warm-up."""
    write(min(chars, 50))
    rates = []
    for _ in range(repeat):
        device_sync(device)
        start = time.perf_counter()
        write(chars)
        device_sync(device)
        rates.append(chars / (time.perf_counter() - start))
    return max(rates)


@exit_on_error
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="models/best.pt", help="a trained charrnn checkpoint")
    parser.add_argument("--precisions", default="fp32,bf16,int8", help="comma-separated, fp32 first (the reference)")
    parser.add_argument("--length", type=int, default=2000, help="characters of the one-stream measurement")
    parser.add_argument("--streams", type=int, default=256, help="streams of the batched measurement")
    parser.add_argument("--batch-length", type=int, default=200, help="characters per stream of the batched one")
    parser.add_argument("--peer-length", type=int, default=300, help="characters the (slow) peer writes")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure; the best is shown")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    device = pick_device(args.device)
    precisions = args.precisions.split(",")
    if precisions[0] != "fp32" or not set(precisions) <= set(PRECISIONS) - {"auto"}:
        raise CharRNNError(f"--precisions: fp32 first, then any of bf16, int8 (got {args.precisions!r})")
    model, vocab = checkpoint.load_model(args.checkpoint)
    model.to(device).eval()
    corpus_vocab, ids = corpus_ids(vocab.corpus)
    if (corpus_vocab.chars, corpus_vocab.sha256) != (vocab.chars, vocab.sha256):
        raise CharRNNError(f"{args.checkpoint} was trained on another text or vocabulary than corpus '{vocab.corpus}'")
    p = params.load(PARAMS_FILE)
    bounds = split_bounds(len(ids), p["train_frac"], p["val_frac"], p["test_frac"])
    splits = {name: ids[start:end] for name, (start, end) in bounds.items() if name != "train" and end - start > 1}
    config = model.config

    print(f"machine: {machine()}; device {device}")
    print(f"{args.checkpoint}: {config['num_layers']}x{config['lstm_size']} {config['cell']}, corpus {vocab.corpus} "
          f"({len(vocab)} characters); {', '.join(f'{name} {len(s):,}' for name, s in splits.items())} characters; "
          f"top-k 5, prime {PRIME!r}; auto here is {resolve('auto', device, config['cell'])}")
    net = peer.PeerCharRNN(len(vocab))
    peer_rate = best_rate(lambda n: peer.sample(net, n, vocab.encode(PRIME)), args.peer_length, "cpu", args.repeat)
    print(f"peer notebook, 1 stream (CPU): {peer_rate:,.0f} chars/s")
    header = (f"{'precision':<10}" + "".join(f"{name + ' bpc':>10}{'cost':>10}" for name in splits)
              + f"{'1 stream':>14}{'':>8}{f'{args.streams} streams':>14}")
    print(header + "\n" + "-" * len(header))
    reference = {}
    for precision in precisions:
        try:
            resolve(precision, device, config["cell"])
        except CharRNNError as err:
            print(f"{precision:<10}not run here: {err}")
            continue
        losses = {name: teacher_forced_loss(model, split, precision, device) for name, split in splits.items()}
        reference = reference or losses
        one = best_rate(lambda n: generate(model, vocab, PRIME, n, top_k=5, device=device, precision=precision),
                        args.length, device, args.repeat)
        seeds = range(args.streams)
        many = args.streams * best_rate(lambda n: generate(model, vocab, PRIME, n, top_k=5, seeds=seeds, device=device,
                                                           precision=precision), args.batch_length, device, args.repeat)
        print(f"{precision:<10}" + "".join(f"{losses[name] / math.log(2):>10.4f}{losses[name] - reference[name]:>+10.5f}"
                                           for name in splits)
              + f"{one:>14,.0f}{f'{one / peer_rate:.1f}x':>8}{many:>14,.0f}  chars/s", flush=True)
    print(f"bpc: bits per character of the generation path, teacher-forced; cost: its loss minus fp32's in nats/char "
          f"(auto may use a precision whose val cost is at most {MAX_COST}); 1 stream also as a multiple of the peer")


if __name__ == "__main__":
    main()
