"""Generation: prime the state in one forward pass, then sample step by step on the device.

Each of the N streams of a batch draws its random numbers from a counter-based hash of (its seed,
the step), not from a shared generator, and its step is computed alike alone and in a batch (to fp32
rounding), so stream i of a batch writes the text a single stream with the same seed writes, and a seed
alone reproduces a sample.
"""

import torch

from charrnn.errors import CharRNNError
from charrnn.generation.rules import check_sampling
from charrnn.generation.steppers import generation_precision, make_stepper

_MASK32 = 0xFFFFFFFF


def generate(
    model,
    vocab,
    prime,
    length,
    temperature=1.0,
    top_k=None,
    top_p=1.0,
    seeds=(0,),
    device="cpu",
    drop_unknown=False,
    on_step=None,
    precision="fp32",
):
    """Return one text per seed: `prime` followed by `length` generated characters.

    temperature 0 is greedy decoding (deterministic, and prone to loops); top_k None and top_p 1 are off.
    `on_step(ids)` is called with each step's new ids (one per stream), for streaming output.
    `precision` is the generation steps' (sample.precision's choices; auto as rules.choose_precision says): the prime is
    read in fp32, the sampling arithmetic is fp32 whatever it is.
    """
    prime, _, steps = writing(
        model, vocab, prime, length, temperature, top_k, top_p, seeds, device, drop_unknown, precision
    )
    out = torch.empty(len(seeds), length, dtype=torch.long, device=device)
    for step, ids in enumerate(steps):
        out[:, step] = ids
        if on_step is not None:
            on_step(ids)
    return [prime + vocab.decode(row) for row in out.cpu().numpy()]


def writing(
    model,
    vocab,
    prime,
    length,
    temperature=1.0,
    top_k=None,
    top_p=1.0,
    seeds=(0,),
    device="cpu",
    drop_unknown=False,
    precision="fp32",
):
    """(the prime as generation uses it, the precision it runs in, an iterator of each step's new ids, one
    per stream): generate()'s work one step at a time, for a caller that interleaves several models
    (charrnn play). The options are checked here, before any work; the iterator computes each step as
    it is asked for, and may be advanced from any thread (inference mode is entered per step)."""
    prime = check_sampling(vocab, prime, length, temperature, top_k, top_p, drop_unknown, num_samples=len(seeds))
    precision = generation_precision(precision, device, model.config["cell"])
    steps = _steps(model, vocab.encode(prime), length, temperature, top_k, top_p, seeds, device, precision)
    return prime, precision, steps


def _steps(model, prime_ids, length, temperature, top_k, top_p, seeds, device, precision):
    prime_ids = torch.as_tensor(prime_ids, dtype=torch.long, device=device)
    seeds = torch.as_tensor(list(seeds), dtype=torch.int64, device=device)
    model = model.to(device).eval()
    uniforms = uniform(seeds[:, None], torch.arange(length, device=device)[None, :])  # (streams, length)
    with torch.inference_mode():
        logits, state = model(prime_ids.expand(len(seeds), -1))  # the whole prime in one pass
        logits = logits[:, -1]
        if not torch.isfinite(logits).all():
            raise CharRNNError(
                "the model's outputs are not finite numbers (NaN or infinite weights): it cannot write text; retrain it"
            )
        advance = make_stepper(model, precision)
    for step in range(length):
        with torch.inference_mode():
            ids = pick(logits, temperature, top_k, top_p, uniforms[:, step])
        yield ids
        with torch.inference_mode():
            logits, state = advance(ids, state)


def format_samples(seeds, texts):
    """One text as it is; several, each under a `--- seed N ---` header."""
    if len(texts) == 1:
        return texts[0]
    return "\n\n".join(f"--- seed {seed} ---\n{text}" for seed, text in zip(seeds, texts))


# Temperatures below this are greedy, as 0 is: dividing logits by them overflows fp32 (inf - inf in the
# softmax is NaN, which picked the last id), and the distribution is a point mass on the argmax anyway.
GREEDY_BELOW = 1e-30


def pick(logits, temperature, top_k, top_p, u):
    """Next ids (batch,) from logits (batch, vocab) by inverse-CDF sampling with uniforms u (batch,)."""
    if temperature < GREEDY_BELOW:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:  # exactly the k most likely: ties at the k-th are not all kept
        values, indices = torch.topk(logits, top_k, dim=-1)
        logits = torch.full_like(logits, float("-inf")).scatter(-1, indices, values)
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely characters
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    cdf = probs.double().cumsum(dim=-1)
    ids = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).squeeze(-1)
    return ids.clamp(max=probs.shape[-1] - 1)


def uniform(seeds, step):
    """A uniform number in (0, 1) per (seed, step), broadcast: a 32-bit integer hash of the pair."""
    x = (seeds * 0x9E3779B1 + step * 0x85EBCA77 + 0x165667B1) & _MASK32
    for _ in range(2):  # lowbias32 finaliser, twice
        x = x ^ (x >> 16)
        x = (x * 0x7FEB352D) & _MASK32
        x = x ^ (x >> 15)
        x = (x * 0x846CA68B) & _MASK32
        x = x ^ (x >> 16)
    return (x.double() + 0.5) / 2.0**32
