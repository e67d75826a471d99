"""Tiny configurations: params, params files and a corpus that train in seconds."""

from pathlib import Path

import yaml

from charrnn import params
from charrnn.commands import reprocheck


def write_params(folder, **overrides):
    """Write a complete params.yaml (defaults + overrides) into `folder`; return its path."""
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(params.nested({**params.defaults(), **overrides}), sort_keys=False))
    return path


TINY = dict(
    lstm_size=32,
    num_layers=1,
    batch_size=8,
    num_steps=16,
    epochs=2,
    eval_every=10,
    warmup_steps=5,
    keep_checkpoints=0,
    dropout=0.1,
    learning_rate=0.01,
    precision="fp32",
    device="cpu",
)


# The whole pipeline on Hamlet in seconds: 143 steps, a kept checkpoint at step 100 (repro-check's).
PIPELINE = dict(reprocheck.TINY)


# The shared build's first run (see `built`): smaller, with more kept checkpoints.
BUILT = dict(PIPELINE, lstm_size=8, keep_checkpoints=40)


METRIC_FILES = ("metrics/train.json", "metrics/eval.json", "data/split/split.json")


def tiny_params(**overrides):
    """Validated params for a model that trains in a second or two."""
    return params.validate({**params.defaults(), **TINY, **overrides})


def tiny_corpus(length=6000):
    """(train ids, val ids, vocab) of a small, learnable text."""
    from charrnn.data.vocab import Vocab

    text = "".join(f"the {word} sat on the mat. " for word in ("cat", "dog", "rat", "bat") * 100)[:length]
    vocab = Vocab(chars=tuple(sorted(set(text))), corpus="tiny", sha256="0" * 64, origin="file:///tiny.txt")
    ids = vocab.encode(text)
    cut = int(0.85 * len(ids))
    return ids[:cut], ids[cut:], vocab
