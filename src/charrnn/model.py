"""CharRNN: characters in, next-character logits out, with the recurrent state passed explicitly."""

import torch
import torch.nn.functional as F
from torch import nn

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}  # the names params.CELL_TYPES allows
# one time step of one layer of each cell, with the weights of the matching nn.LSTM/GRU/RNN layer
CELL_STEPS = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell}


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
        outputs, state = self.rnn(self._inputs(ids), state)
        return self.head(self.dropout(outputs)), state

    def step(self, ids, state):
        """One character per stream, for generation (eval mode): ids (batch,) → logits (batch, vocab), state.

        The same function as forward() on a one-character window, computed layer by layer with the
        fused single-step cell kernels: on the CPU a full-sequence RNN call costs milliseconds of
        set-up (oneDNN) however short the sequence, a cell step only its matrix products.
        """
        x = self._inputs(ids)
        lstm = self.config["cell"] == "lstm"
        hidden, cells = state if lstm else (state, None)
        new_hidden, new_cells = [], []
        for layer in range(self.config["num_layers"]):
            weights = [getattr(self.rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if lstm:
                x, c = torch.lstm_cell(x, (hidden[layer], cells[layer]), *weights)
                new_cells.append(c)
            else:
                x = CELL_STEPS[self.config["cell"]](x, hidden[layer], *weights)
            new_hidden.append(x)
        new_state = torch.stack(new_hidden)
        return self.head(x), ((new_state, torch.stack(new_cells)) if lstm else new_state)

    def _inputs(self, ids):
        if self.embedding is None:
            return F.one_hot(ids.long(), self.config["vocab_size"]).to(self.head.weight.dtype)
        return self.embedding(ids.long())

    def num_params(self):
        return sum(p.numel() for p in self.parameters())


def map_state(state, fn):
    """Apply `fn` to a recurrent state: None, one tensor (GRU/RNN) or an (h, c) tuple (LSTM)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(fn(s) for s in state)
    return fn(state)
