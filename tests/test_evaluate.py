"""One evaluation protocol: a checkpoint's val and test loss depend on its weights and the split alone,
not on the batch_size, num_steps or precision it was trained with."""

import math

import pytest
import torch

from charrnn.core import checkpoint
from charrnn.core.device import has_bf16_kernels
from charrnn.core.evaluate import evaluate, evaluate_checkpoint
from charrnn.core.model import CharRNN
from charrnn.core.protocol import STREAMS, WINDOW, num_streams
from charrnn.training.loop import train

from helpers.configs import tiny_corpus, tiny_params


@pytest.mark.parametrize(
    "settings",
    [
        {"precision": "fp32"},
        {"precision": "bf16", "batch_size": 4},
        {"precision": "fp32", "batch_size": 16, "num_steps": 8},
    ],
    ids=["fp32", "bf16-batch4", "fp32-batch16x8"],
)
def test_the_same_weights_score_the_same_under_any_training_settings(settings, tmp_path):
    if settings["precision"] == "bf16" and not has_bf16_kernels("cpu"):
        pytest.skip("this CPU has no bf16 kernels: bf16 training cannot run here")
    train_ids, val_ids, vocab = tiny_corpus()
    train(tiny_params(**settings), train_ids, val_ids, vocab, tmp_path)
    validated = checkpoint.load(tmp_path / "best.pt")["val_loss"]  # by the training loop, under its settings
    scored = evaluate_checkpoint(tmp_path / "best.pt", vocab, {"val": val_ids, "test": val_ids[:0]}, "cpu")
    assert scored["val_loss"] == validated  # bit for bit, as the evaluate stage scores it
    assert scored["val_bpc"] == pytest.approx(scored["val_loss"] / math.log(2))
    assert "test_loss" not in scored  # an empty split has no metrics


def test_the_protocol_cuts_a_split_by_its_length_alone():
    assert num_streams(100) == 1 and num_streams(WINDOW * 10 + 1) == 10 and num_streams(10**7) == STREAMS
    train_ids, val_ids, vocab = tiny_corpus()
    torch.manual_seed(0)
    model = CharRNN(len(vocab), lstm_size=16, num_layers=1, dropout=0.3).train()
    loss = evaluate(model, val_ids, "cpu")
    assert model.training  # evaluation switches dropout off only while it runs
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's autocast does not change the protocol
        assert evaluate(model, val_ids, "cpu") == loss
