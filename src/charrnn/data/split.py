"""Contiguous train / val / test split of the encoded corpus."""

import numpy as np

from charrnn.errors import CharRNNError

SPLITS = ("train", "val", "test")


def split_bounds(length, train_frac, val_frac, test_frac):
    """(start, end) of each split: consecutive, by fractions of `length`, each end rounded down.

    With train_frac=0.9, val_frac=0.1, test_frac=0 this is the common tiny-shakespeare benchmark
    split (nanoGPT's shakespeare_char: 1,003,854 / 111,540 characters).
    """
    # the epsilon keeps 0.7 + 0.2 + 0.1 (= 0.9999999999999999) from losing the last character
    ends = np.floor(np.cumsum([train_frac, val_frac, test_frac]) * length + 1e-6).astype(int)
    ends = np.minimum(ends, length)
    starts = np.concatenate([[0], ends[:-1]])
    return {name: (int(s), int(e)) for name, s, e in zip(SPLITS, starts, ends)}


def split_array(encoded, params):
    """Views of `encoded` for each split; every non-empty split must hold at least one batch."""
    fractions = (params.train_frac, params.val_frac, params.test_frac)
    bounds = split_bounds(len(encoded), *fractions)
    for (name, (start, end)), fraction in zip(bounds.items(), fractions):
        if fraction > 0:
            require_one_batch(name, end - start, params.batch_size, params.num_steps)
    return {name: encoded[start:end] for name, (start, end) in bounds.items()}


def require_one_batch(name, length, batch_size, num_steps, processes=1):
    """A split of `length` characters must give each of `processes` at least one full window."""
    one_batch = batch_size * num_steps + 1
    if length // processes < one_batch:
        share = f" ({length // processes:,} for each of {processes} processes)" if processes > 1 else ""
        raise CharRNNError(
            f"the {name} split has {length:,} characters{share}, fewer than one batch "
            f"(batch_size x num_steps + 1 = {one_batch:,}): raise {name}_frac or lower "
            f"batch_size / num_steps{' / processes' if processes > 1 else ''}"
        )
