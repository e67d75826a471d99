"""The rules of the sampling options and of the generation precision, without torch.

Generation applies them; the served model's request rules and `charrnn doctor` check by them too,
and they import no torch.
"""

from charrnn.errors import CharRNNError
from charrnn.params import GENERATION_PRECISIONS

# What one generation may hold: its text (about 16 bytes a generated character: the ids and the random
# numbers of every step) and the prime's one pass (its logits and activations, ~1 KB a character for
# a 2x512 model), so that a typing slip in a length or a count is an error rather than gigabytes.
MAX_CHARACTERS = 10_000_000  # length x num_samples
MAX_PRIME_CHARACTERS = 100_000  # len(prime) x num_samples


def check_sampling(vocab, prime, length, temperature=1.0, top_k=None, top_p=1.0, drop_unknown=False, num_samples=1):
    """One clear error for each bad sampling option; returns the prime as generation uses it."""
    if not prime:
        raise CharRNNError("the prime text is empty: give at least one character to start from")
    if length < 0:
        raise CharRNNError(f"length must be >= 0 (got {length})")
    if num_samples < 1:
        raise CharRNNError(f"num_samples must be >= 1 (got {num_samples})")
    if length * num_samples > MAX_CHARACTERS:
        raise CharRNNError(
            f"length x num_samples must be at most {MAX_CHARACTERS:,} characters (got {length:,} x {num_samples:,})"
        )
    if len(prime) * num_samples > MAX_PRIME_CHARACTERS:
        raise CharRNNError(
            f"the prime's length x num_samples must be at most {MAX_PRIME_CHARACTERS:,} characters "
            f"(got {len(prime):,} x {num_samples:,})"
        )
    if temperature < 0:
        raise CharRNNError(f"temperature must be >= 0 (got {temperature}; 0 = greedy)")
    if top_k is not None and not 1 <= top_k <= len(vocab):
        raise CharRNNError(
            f"top_k must be between 1 and the vocabulary size {len(vocab)}, or null for off (got {top_k})"
        )
    if not 0 < top_p <= 1:
        raise CharRNNError(f"top_p must be in (0, 1] (got {top_p}; 1 = off)")
    prime = usable_prime(vocab, prime, drop_unknown)
    vocab.encode(prime)  # names the characters outside the vocabulary
    return prime


def usable_prime(vocab, prime, drop_unknown):
    """The prime as generation uses it: unchanged, or without the characters outside the vocabulary."""
    if not drop_unknown:
        return prime
    known = set(vocab.chars)
    kept = "".join(c for c in prime if c in known)
    if not kept:
        raise CharRNNError("no character of the prime text is in the vocabulary")
    return kept


def sampling_options(sample):
    """generate()'s sampling keywords from params.yaml's sample section (params.Sample)."""
    return dict(
        prime=sample.prime,
        length=sample.length,
        temperature=sample.temperature,
        top_k=sample.top_k,
        top_p=sample.top_p,
        drop_unknown=sample.drop_unknown,
    )


def choose_precision(precision, cell, device_type, missing_bf16_kernels):
    """The precision generation runs in. `auto` is bf16 where the device has bf16 kernels
    (`missing_bf16_kernels` is None), else int8 weights on a CPU, else fp32; only LSTMs have bf16 and int8
    steps. A precision the device or the cell cannot run is an error naming the choices that can;
    `missing_bf16_kernels` says why the device has no bf16 (core.device.missing_bf16_kernels)."""
    if precision not in GENERATION_PRECISIONS:
        raise CharRNNError(f"precision must be one of {', '.join(GENERATION_PRECISIONS)} (got {precision!r})")
    if precision == "auto":
        if cell != "lstm":
            return "fp32"
        if missing_bf16_kernels is None:
            return "bf16"
        return "int8" if device_type == "cpu" else "fp32"
    if precision != "fp32" and cell != "lstm":
        raise CharRNNError(
            f"{precision} generation is implemented for LSTM models, and this one is a {cell}: "
            "use precision auto or fp32"
        )
    if precision == "bf16" and missing_bf16_kernels is not None:
        alternatives = "precision auto or fp32" if device_type == "cuda" else "precision auto, fp32 or int8"
        raise CharRNNError(f"precision is bf16, but {missing_bf16_kernels}: use {alternatives}")
    if precision == "int8" and device_type != "cpu":
        raise CharRNNError("int8 generation runs on the CPU only: use precision auto, bf16 or fp32 on a GPU")
    return precision
