"""One evaluation protocol: a checkpoint's val and test loss depend on its weights and the split alone,
not on the batch_size, num_steps or precision it was trained with."""

import json

import torch

from charrnn.training import checkpoint
from charrnn.training.evaluate import PROTOCOL_ID, STREAMS, WINDOW, evaluate, num_streams
from charrnn.training.model import CharRNN
from conftest import PIPELINE, tiny_corpus, write_params


def test_the_same_weights_score_the_same_under_any_training_settings(project):
    write_params(project.root, **{**PIPELINE, "precision": "auto"})  # bf16 training where the CPU has it
    project("repro", "evaluate")
    validated = checkpoint.load(project.root / "models/best.pt")["val_loss"]  # by the training loop
    for overrides in ({"batch_size": 16, "precision": "bf16"}, {"batch_size": 128, "num_steps": 50,
                                                                 "precision": "fp32"}):
        write_params(project.root, **{**PIPELINE, **overrides})
        project("repro", "--force", "--single-item", "evaluate")
        scored = json.loads((project.root / "metrics/eval.json").read_text())
        assert scored["val_loss"] == validated and scored["eval_protocol"] == PROTOCOL_ID  # bit for bit


def test_the_protocol_cuts_a_split_by_its_length_alone():
    assert num_streams(100) == 1 and num_streams(WINDOW * 10 + 1) == 10 and num_streams(10**7) == STREAMS
    train_ids, val_ids, vocab = tiny_corpus()
    torch.manual_seed(0)
    model = CharRNN(len(vocab), lstm_size=16, num_layers=1, dropout=0.3).train()
    loss = evaluate(model, val_ids, "cpu")
    assert model.training  # evaluation switches dropout off only while it runs
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's autocast does not change the protocol
        assert evaluate(model, val_ids, "cpu") == loss
