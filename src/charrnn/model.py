"""CharRNN: characters in, next-character logits out, with the recurrent state passed explicitly."""

import torch.nn.functional as F
from torch import nn

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}  # the names params.CELL_TYPES allows


class CharRNN(nn.Module):
    """One-hot (embedding_size 0, as the classic notebooks) or embedded input → stacked RNN → linear head.

    Dropout sits between the RNN layers and before the head. The constructor's arguments are plain
    values, kept in `self.config` so a checkpoint can rebuild the model without params.yaml.
    """

    def __init__(self, vocab_size, cell="lstm", lstm_size=512, num_layers=2, dropout=0.5, embedding_size=0):
        super().__init__()
        self.config = dict(
            vocab_size=vocab_size, cell=cell, lstm_size=lstm_size, num_layers=num_layers,
            dropout=dropout, embedding_size=embedding_size,
        )
        self.embedding = nn.Embedding(vocab_size, embedding_size) if embedding_size else None
        self.rnn = CELLS[cell](
            input_size=embedding_size or vocab_size,
            hidden_size=lstm_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(lstm_size, vocab_size)

    def forward(self, ids, state=None):
        """ids (batch, steps) → logits (batch, steps, vocab), new state."""
        if self.embedding is None:
            inputs = F.one_hot(ids.long(), self.config["vocab_size"]).to(self.head.weight.dtype)
        else:
            inputs = self.embedding(ids.long())
        outputs, state = self.rnn(inputs, state)
        return self.head(self.dropout(outputs)), state

    def num_params(self):
        return sum(p.numel() for p in self.parameters())


def map_state(state, fn):
    """Apply `fn` to a recurrent state: None, one tensor (GRU/RNN) or an (h, c) tuple (LSTM)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(fn(s) for s in state)
    return fn(state)
