"""Held-out metrics of a checkpoint: loss in nats/char, bits/char and perplexity for each split."""

import math
from charrnn import checkpoint
from charrnn.errors import CharRNNError
from charrnn.train import evaluate, precision_context


def loss_metrics(split, loss):
    return {f"{split}_loss": loss, f"{split}_bpc": loss / math.log(2), f"{split}_perplexity": math.exp(loss)}


def evaluate_checkpoint(path, vocab, splits, batch_size, num_steps, device, precision):
    """Metrics of the model in `path` over each non-empty split ({name: ids} encoded with `vocab`),
    evaluated exactly as the training loop validates (same batching, carried state, autocast)."""
    model, trained_on = checkpoint.load_model(path)
    if (trained_on.chars, trained_on.sha256) != (vocab.chars, vocab.sha256):
        raise CharRNNError(f"{path} was trained on corpus '{trained_on.corpus}', but the data is '{vocab.corpus}' "
                           "(another text or vocabulary): retrain with `dvc repro train`")
    model.to(device)
    autocast = precision_context(device, precision)
    metrics = {}
    for name, ids in splits.items():
        if len(ids) > 1:
            metrics.update(loss_metrics(name, evaluate(model, ids, batch_size, num_steps, device, autocast)))
    return metrics
