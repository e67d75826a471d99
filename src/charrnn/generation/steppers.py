"""The one-character step of a CharRNN that generation runs, in fp32, bf16 or with int8 weights, and
what a precision costs (teacher_forced_loss).

fp32 is fp32_stepper(): the fused single-step cell kernels on the fp32 weights. bf16 and int8
(LSTM models) cut the bytes and the arithmetic of the recurrent matrix products, which bound
generation on the CPU (one stream reads every weight per character; a batch of streams is matrix
products), and keep the rest in fp32:

- layer 0's input product is a row gather from an fp32 table (every input row times W_ih, plus both
  biases), made once: the same values as a product with a one-hot row, at no cost per step;
- every other product is one matrix product per layer, [input, h] times [W_ih, W_hh] (h alone for
  layer 0), accumulated in fp32: in bf16, bias included (on the CPU with the weights prepacked for
  oneDNN), or with int8 weights with a scale per output row (torch._weight_int8pack_mm on bf16
  activations);
- the gates, the cell state, the state between steps and the head (logits) are fp32; tanh is
  computed as 2 sigmoid(2x) - 1 (the CPU's fp32 tanh is ~6x slower than its sigmoid), with the
  factor 2 of the cell gate folded into its weights and bias (exact).

Another precision writes other text from the same seed; each writes the same text every time on a
given machine; a stream's step comes out the same alone as in a batch of any size, to fp32 rounding
(tests/test_sample.py), so a stream writes the same text alone as in a batch.

`auto` is bf16 where the device has bf16 kernels, else int8 weights on a CPU (their cost, measured by
bench/sample_speed.py with teacher_forced_loss, is within MAX_COST), else fp32. The rules of
the precisions live in charrnn.generation.rules.
"""

import torch
import torch.nn.functional as F

from charrnn.core.device import missing_bf16_kernels
from charrnn.core.model import WEIGHT_NAMES
from charrnn.core.protocol import num_streams
from charrnn.data.batches import streams
from charrnn.generation.rules import choose_precision

# one time step of one layer of each cell, with the weights of the matching nn.LSTM/GRU/RNN layer
CELL_STEPS = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell}
MAX_COST = 0.01  # nats/char: the most a precision may lose against fp32 (teacher-forced val loss) for auto


def generation_precision(precision, device, cell="lstm"):
    """The precision generation runs in on `device` (rules.choose_precision with the device's bf16 kernels):
    resolved once per generation, then passed on resolved."""
    device_type = torch.device(device).type
    return choose_precision(precision, cell, device_type, missing_bf16_kernels(device_type))


def make_stepper(model, precision):
    """A function (ids (batch,), state) → (logits (batch, vocab) fp32, state) for generation at a resolved
    precision (generation_precision); the state is the model's (an LSTM's (h, c),
    another cell's h), in fp32. It keeps its own copy of the weights: make a new one after training more."""
    if precision == "fp32":
        return fp32_stepper(model)
    return _ReducedStep(model, precision)


def fp32_stepper(model):
    """forward() on a one-character window, for generation (eval mode), as a step function.

    It runs layer by layer through the fused single-step cell kernels (on the CPU a full-sequence
    RNN call costs milliseconds of oneDNN set-up however short the sequence) on a copy of the
    weights stored column-major, which makes the one-row matrix products of a single stream
    about 2x faster on the CPU.
    """
    cell_step, lstm = CELL_STEPS[model.config["cell"]], model.config["cell"] == "lstm"
    layers = [
        [column_major(getattr(model.rnn, f"{name}_l{layer}")) for name in WEIGHT_NAMES]
        for layer in range(model.config["num_layers"])
    ]
    head_weight = column_major(model.head.weight)

    def step(ids, state):
        x = model.inputs(ids)
        hidden, cells = state if lstm else (state, None)
        new_hidden, new_cells = [], []
        for layer, weights in enumerate(layers):
            if lstm:
                x, c = cell_step(x, (hidden[layer], cells[layer]), *weights)
                new_cells.append(c)
            else:
                x = cell_step(x, hidden[layer], *weights)
            new_hidden.append(x)
        new_state = (torch.stack(new_hidden), torch.stack(new_cells)) if lstm else torch.stack(new_hidden)
        return F.linear(x, head_weight, model.head.bias), new_state

    return step


def column_major(tensor):
    """The same matrix (a detached copy) stored column-major; vectors unchanged."""
    tensor = tensor.detach()
    return tensor.t().contiguous().t() if tensor.dim() == 2 else tensor


def teacher_forced_loss(model, ids, precision, device="cpu"):
    """Mean cross-entropy (nats/char) of the generation path at `precision` over the split `ids`: the
    evaluation protocol's streams read one character at a time by the stepper, state carried, every
    character after a stream's first scored. In fp32 it equals core.evaluate.evaluate() to float
    rounding: the difference is what the precision costs."""
    precision = generation_precision(precision, device, model.config["cell"])
    model = model.to(device).eval()
    inputs, targets = (torch.from_numpy(a.astype("int64")).to(device) for a in streams(ids, num_streams(len(ids))))
    state = model.zero_state(inputs.shape[0], device)
    step = make_stepper(model, precision)
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode():
        for t in range(inputs.shape[1]):
            logits, state = step(inputs[:, t], state)
            total += F.cross_entropy(logits, targets[:, t], reduction="sum")
    return (total / targets.numel()).item()


class _ReducedStep:
    """An LSTM step with bf16 or int8 matrix products and fp32 gates, state and head (see the module)."""

    def __init__(self, model, precision):
        rnn, size = model.rnn, model.config["lstm_size"]
        layers = [
            [_gate_rows(getattr(rnn, f"{name}_l{layer}").detach().float(), size) for name in WEIGHT_NAMES]
            for layer in range(model.config["num_layers"])
        ]
        product = {"bf16": _Bf16Product, "int8": _Int8Product}[precision]
        w_ih, w_hh, b_ih, b_hh = layers[0]
        with torch.no_grad():
            every_input = model.inputs(torch.arange(model.config["vocab_size"], device=w_ih.device)).float()
            self.table = every_input @ w_ih.t() + b_ih + b_hh  # (vocab, 4 size): layer 0's input product
        self.products = [product(w_hh)] + [
            product(torch.cat([w_ih, w_hh], 1), b_ih + b_hh) for w_ih, w_hh, b_ih, b_hh in layers[1:]
        ]
        self.head_weight, self.head_bias = model.head.weight.detach().float(), model.head.bias.detach().float()
        self.size = size

    def __call__(self, ids, state):
        hidden, cells = state
        new_hidden = hidden.new_empty(hidden.shape, dtype=torch.float32)
        new_cells = cells.new_empty(cells.shape, dtype=torch.float32)
        for layer, product in enumerate(self.products):
            if layer == 0:
                gates = F.embedding(ids.long(), self.table).add_(product(hidden[0]))
            else:
                gates = product(torch.cat([new_hidden[layer - 1], hidden[layer]], 1))
            _lstm_cell(gates, cells[layer], self.size, new_hidden[layer], new_cells[layer])
        return F.linear(new_hidden[-1], self.head_weight, self.head_bias), (new_hidden, new_cells)


def _gate_rows(tensor, size):
    """An LSTM weight or bias with its gate rows reordered from (i, f, g, o) to (i, f, o, 2g)."""
    i, f, g, o = tensor.split(size)
    return torch.cat([i, f, o, 2 * g])


def _lstm_cell(gates, c, size, h_out, c_out):
    """Write the new h and c into h_out and c_out from the pre-activations (in _gate_rows' order) and the
    old c, in fp32, with tanh(x) = 2 sigmoid(2x) - 1: c' = f c + i (2 s_g - 1), h = o (2 sigmoid(2c') - 1)."""
    i, f, o, g = gates.float().sigmoid().split(size, 1)
    torch.addcmul(torch.addcmul(-i, f, c), i, g, value=2, out=c_out)
    torch.addcmul(-o, o, c_out.mul(2).sigmoid_(), value=2, out=h_out)


class _Bf16Product:
    """x @ weight.T (+ bias) with bf16 weights, bias and inputs, accumulated in fp32 and rounded to bf16;
    on the CPU through oneDNN with the weights prepacked (for one row about 2.4x faster than the same
    product on a plain matrix)."""

    def __init__(self, weight, bias=None):
        self.weight = weight.to(torch.bfloat16)
        self.bias = None if bias is None else bias.to(torch.bfloat16)
        self.packed = None
        if self.weight.is_cpu and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
            self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, 1)

    def __call__(self, x):
        x = x.to(torch.bfloat16)
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


class _Int8Product:
    """x @ weight.T (+ bias) with int8 weights, one bf16 scale per output row (symmetric, rounded to
    nearest), and bf16 inputs, accumulated in fp32; the bias is added in fp32. Always this one kernel,
    whose rows do not depend on the number of rows: an fp32 product with the same weights is a little
    faster for many streams (256 rows: 6.4 against 7.3 ms on a Zen 4), but writes other text, so a
    stream would write one text alone and another in a batch."""

    def __init__(self, weight, bias=None):
        scale = (weight.abs().amax(1) / 127).clamp(min=1e-12).to(torch.bfloat16)
        self.scale, self.bias = scale, bias
        self.weight = (weight / scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8)

    def __call__(self, x):
        product = torch._weight_int8pack_mm(x.to(torch.bfloat16), self.weight, self.scale)
        return product if self.bias is None else torch.add(product, self.bias)
