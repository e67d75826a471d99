"""CharRNN: characters in, next-character logits out, with the recurrent state passed explicitly."""

import warnings

import torch
import torch.nn.functional as F
from torch import nn

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}  # the names params.CELL_TYPES allows
# a whole sequence through one stack of layers of each cell (what nn.LSTM/GRU/RNN call)
CELL_SEQUENCES = {"lstm": torch.lstm, "gru": torch.gru, "rnn": torch.rnn_tanh}
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # of a layer, as nn.RNN names them
GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight blocks per layer of each cell


class CharRNN(nn.Module):
    """One-hot (embedding_size 0, as the classic notebooks) or embedded input → stacked RNN → linear head.

    Dropout sits between the RNN layers and before the head. The constructor's arguments are plain
    values, kept in `self.config` so a checkpoint can rebuild the model without params.yaml.
    """

    def __init__(self, vocab_size, cell="lstm", lstm_size=512, num_layers=2, dropout=0.5, embedding_size=0):
        super().__init__()
        self.config = dict(
            vocab_size=vocab_size,
            cell=cell,
            lstm_size=lstm_size,
            num_layers=num_layers,
            dropout=dropout,
            embedding_size=embedding_size,
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

    @classmethod
    def from_params(cls, vocab_size, p):
        """The model that params (params.Params) describe."""
        return cls(vocab_size, **p.model_config())

    def forward(self, ids, state=None):
        """ids (batch, steps) → logits (batch, steps, vocab), new state."""
        inputs = self.inputs(ids)
        if inputs.is_cuda and _bf16_autocast("cuda"):
            outputs, state = self._rnn_bf16(inputs, state)
        elif self.training and self.config["dropout"] and not inputs.is_cuda and _bf16_autocast("cpu"):
            return self._train_cpu_bf16(inputs, state)
        else:
            outputs, state = self.rnn(inputs, state)
        return self.head(self.dropout(outputs)), state

    def _train_cpu_bf16(self, inputs, state):
        """forward() in training under a bf16 autocast on the CPU: the RNN one layer at a time, each
        layer's output masked by `fast_dropout`. torch's dropout draws its masks with bernoulli_, ~80 ms
        for one 128x100x512 activation on two cores, ~15 % of a bf16 training step; this draws masks
        of the same distribution in a third of that. Being other random numbers, it is kept to bf16:
        fp32 training still draws torch's masks and stays bit-identical to earlier versions."""
        cell, num_layers = self.config["cell"], self.config["num_layers"]
        if state is None:
            state = self.zero_state(inputs.shape[0], inputs.device)
        x, layer_states = inputs, []
        for layer in range(num_layers):
            weights = [getattr(self.rnn, f"{name}_l{layer}") for name in WEIGHT_NAMES]
            layer_state = map_state(state, lambda s: s[layer : layer + 1])  # noqa: B023 (used at once)
            hx = list(layer_state) if cell == "lstm" else layer_state  # torch.lstm takes [h, c], the others h
            # (input, hx, weights, has_biases, num_layers, dropout, train, bidirectional, batch_first)
            x, *new_state = CELL_SEQUENCES[cell](x, hx, weights, True, 1, 0.0, True, False, True)
            x = fast_dropout(x, self.config["dropout"])
            layer_states.append(new_state)
        new_states = [torch.cat(states) for states in zip(*layer_states)]
        return self.head(x), tuple(new_states) if cell == "lstm" else new_states[0]

    def _rnn_bf16(self, inputs, state):
        """The RNN in bf16, under a bf16 autocast on CUDA. Autocast runs cuDNN's RNN in fp16 whatever
        dtype it was given (its rule for the cuDNN RNN casts to half), and fp16 without loss scaling can
        lose small gradients; so this casts weights, inputs and state to bf16 itself, autocast off."""
        bf16 = lambda tensor: tensor.to(torch.bfloat16)  # noqa: E731
        weights = {name: bf16(weight) for name, weight in self.rnn.named_parameters()}
        with torch.autocast("cuda", enabled=False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not part of single contiguous chunk")  # the bf16 copies
            return torch.func.functional_call(self.rnn, weights, (bf16(inputs), map_state(state, bf16)))

    def inputs(self, ids):
        """The first layer's input for ids: one-hot rows, or embeddings."""
        if self.embedding is None:
            return F.one_hot(ids.long(), self.config["vocab_size"]).to(self.head.weight.dtype)
        return self.embedding(ids.long())

    def zero_state(self, batch, device="cpu"):
        """The recurrent state a stream starts from: zeros, (h, c) for an LSTM."""
        zeros = torch.zeros(self.config["num_layers"], batch, self.config["lstm_size"], device=device)
        return (zeros, zeros) if self.config["cell"] == "lstm" else zeros

    def num_params(self):
        return sum(p.numel() for p in self.parameters())


def parameter_count(vocab_size, cell, lstm_size, num_layers, embedding_size, **_):
    """CharRNN's parameter count from its config, without building it (a model of a million units a
    layer would not fit in memory to be counted)."""
    gates, size = GATES[cell], lstm_size
    first_input = embedding_size or vocab_size
    layers = gates * size * (first_input + size + 2) + (num_layers - 1) * gates * size * (2 * size + 2)
    return vocab_size * embedding_size + layers + (size + 1) * vocab_size


def training_bytes(vocab_size, config, batch_size, num_steps):
    """About the memory a training step holds: weights, gradients and Adam's two moments (four fp32
    copies of the parameters) and the activations kept to backpropagate through `num_steps`."""
    per_character = config["num_layers"] * config["lstm_size"] * (GATES[config["cell"]] + 3) + 3 * vocab_size
    return 4 * (4 * parameter_count(vocab_size, **config) + batch_size * num_steps * per_character)


def shape(config):
    """A model's shape in words, e.g. '2x512 lstm', from its config (CharRNN.config)."""
    return f"{config['num_layers']}x{config['lstm_size']} {config['cell']}"


def _bf16_autocast(device_type):
    return torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.bfloat16


def fast_dropout(x, p):
    """Dropout in training (each element zeroed with probability p, the rest scaled by 1/(1-p)), its
    mask drawn with torch.rand, about 3x faster on the CPU than torch's bernoulli_."""
    keep = torch.rand(x.shape, device=x.device) >= p
    return x * (keep.to(x.dtype) * (1 / (1 - p)))


def map_state(state, fn):
    """Apply `fn` to a recurrent state: None, one tensor (GRU/RNN) or an (h, c) tuple (LSTM)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(fn(s) for s in state)
    return fn(state)
