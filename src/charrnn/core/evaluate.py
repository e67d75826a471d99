"""Held-out loss of a model, measured by one protocol whatever the model was trained with.

The protocol: fp32 (no autocast, no TF32 on a GPU), the split cut into up to STREAMS contiguous
streams of at least WINDOW characters each (protocol.py), read in windows of WINDOW with the state carried and
dropout off, every character after a stream's first scored. It depends on the split alone, not on
batch_size, num_steps, precision or device, so a val loss means the same in every experiment and on
every machine (to float rounding). The training loop validates by it too: best.pt is chosen by the
number that the registry compares, and PROTOCOL_ID is part of the registry's comparability key.
"""

import math
import sys
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from charrnn.core import checkpoint
from charrnn.core.protocol import WINDOW, num_streams
from charrnn.data.batches import windows
from charrnn.errors import CharRNNError
from charrnn.progress import Heartbeat


@torch.no_grad()
def evaluate(model, ids, device, what=None):
    """Mean cross-entropy (nats/char) of `model` over the whole split `ids`, by the protocol; with
    `what` (e.g. "evaluate val"), its progress shown under that name (charrnn.progress)."""
    was_training = model.training
    model.eval()
    total, count, hidden = torch.zeros((), dtype=torch.float64, device=device), 0, None
    heartbeat = Heartbeat(what or "", len(ids), "char", show=what is not None)
    with _exact_fp32(device):
        for x, y in windows(ids, num_streams(len(ids)), WINDOW, device, partial=True):
            logits, hidden = model(x, hidden)
            total += F.cross_entropy(logits.float().flatten(0, 1), y.long().flatten(), reduction="sum")
            count += y.numel()
            heartbeat.update(x.numel())
    heartbeat.close()
    model.train(was_training)
    return (total / count).item()


@contextmanager
def _exact_fp32(device):
    """fp32 as written: no autocast of a caller's, and no TF32, which CUDA may otherwise use for fp32
    matrix products and cuDNN RNNs."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(torch.device(device).type, enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def loss_metrics(split, loss):
    """A loss (nats per character) with its bits per character and perplexity; a perplexity past the
    largest float (a loss over ~709, as a wild first validation may give) is infinite, not an error."""
    perplexity = math.exp(loss) if loss < math.log(sys.float_info.max) else math.inf
    return {f"{split}_loss": loss, f"{split}_bpc": loss / math.log(2), f"{split}_perplexity": perplexity}


def evaluate_checkpoint(path, vocab, splits, device):
    """Metrics of the model in `path` over each non-empty split ({name: ids} encoded with `vocab`)."""
    model, trained_on = checkpoint.load_model(path)
    if not trained_on.same_text(vocab):
        raise CharRNNError(
            f"{path} was trained on corpus '{trained_on.corpus}', but the data is '{vocab.corpus}' "
            "(another text or vocabulary): retrain with `dvc repro train`"
        )
    model.to(device)
    metrics = {}
    for name, ids in splits.items():
        if len(ids) > 1:
            metrics.update(loss_metrics(name, evaluate(model, ids, device, what=f"evaluate {name}")))
    return metrics
