"""Sampling throughput of charrnn beside the reference peer notebook, in the same process.

    python bench/sample_speed.py [--length 2000] [--streams 256] [--device auto]

A 2×512 LSTM over Anna Karenina's 83 characters writes with top-k 5: the peer one character at a
time through numpy, as the notebook's sample(); charrnn one stream, then `--streams` streams as a
batch. The weights are untrained: the speed does not depend on them.

Beside the peer, each charrnn figure shows its share of the limit that bounds it, measured in the
same run (common.limits): one stream reads every weight per character, so its bytes of weights per
second against a one-row matrix product over as many bytes; many streams are matrix products of
`--streams` rows, so their FLOP/s against a matrix product of that shape.
"""

import argparse
import time

import torch

from common import corpus_ids, device_sync, limits, machine, model_cost
from charrnn.errors import exit_on_error
from charrnn.model import CharRNN
from charrnn.sample import generate
from charrnn.device import pick_device
import peer

PRIME = "Far"


def rate(write, chars, device):
    write(min(chars, 50))  # warm-up: kernel set-up, caches
    device_sync(device)
    start = time.perf_counter()
    write(chars)
    device_sync(device)
    return chars / (time.perf_counter() - start)


@exit_on_error
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=2000, help="characters per stream")
    parser.add_argument("--streams", type=int, default=256, help="streams of the batched measurement")
    parser.add_argument("--peer-length", type=int, default=300, help="characters the (slow) peer writes")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    device = pick_device(args.device)
    vocab, _ = corpus_ids("anna")
    torch.manual_seed(0)
    model = CharRNN(len(vocab), "lstm", 512, 2, 0.5).to(device).eval()
    net = peer.PeerCharRNN(len(vocab))
    prime_ids = vocab.encode(PRIME)

    print(f"machine: {machine()}; device {device}")
    cost = model_cost(len(vocab), model.config)
    width = "x".join(map(str, cost.gemm_width))
    limit = limits(device, cost, {f"{args.streams}x{width}": (args.streams, *cost.gemm_width)})
    print(f"limits: {limit}")
    precision = "fp32"  # the weights' precision when generating

    def bound(streams, chars_per_second):
        if streams == 1:  # every weight read once per character
            return limit.of_matvec(chars_per_second * cost.weight_bytes(precision), precision)
        return limit.of_shape(chars_per_second * cost.flop_forward, precision, f"{streams}x{width}")

    print(f"2x512 LSTM, {len(vocab)} characters, top-k 5, prime {PRIME!r}")
    peer_rate = rate(lambda n: peer.sample(net, n, prime_ids), args.peer_length, "cpu")
    print(f"  {'peer notebook, 1 stream (CPU)':<36} {peer_rate:>12,.0f} chars/s")
    for streams in (1, args.streams):
        seeds = range(streams)
        per_stream = rate(lambda n: generate(model, vocab, PRIME, n, top_k=5, seeds=seeds, device=device),
                          args.length, device)
        print(f"  {f'charrnn, {streams} stream' + ('s' if streams > 1 else ''):<36} {per_stream * streams:>12,.0f} "
              f"chars/s  {per_stream * streams / peer_rate:6.1f}x the peer  {bound(streams, per_stream * streams)}")


if __name__ == "__main__":
    main()
