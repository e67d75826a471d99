import pytest
import torch

from charrnn import params
from charrnn.core import model as model_module
from charrnn.core.device import has_bf16_kernels
from charrnn.core.model import CELLS, CharRNN, fast_dropout
from charrnn.generation.steppers import fp32_stepper


@pytest.mark.parametrize("cell", params.CELL_TYPES)
@pytest.mark.parametrize("embedding_size", [0, 8])
def test_shapes_for_every_cell_and_input(cell, embedding_size):
    model = CharRNN(vocab_size=20, cell=cell, lstm_size=16, num_layers=2, dropout=0.2, embedding_size=embedding_size)
    ids = torch.randint(0, 20, (3, 7), dtype=torch.uint8)
    logits, state = model(ids)
    assert logits.shape == (3, 7, 20)
    first = state[0] if cell == "lstm" else state
    assert first.shape == (2, 3, 16)
    logits2, _ = model(ids, state)
    assert logits2.shape == (3, 7, 20)


@pytest.mark.parametrize("cell", params.CELL_TYPES)
@pytest.mark.parametrize("embedding_size", [0, 8])
def test_one_step_equals_a_one_character_forward(cell, embedding_size):
    torch.manual_seed(0)
    model = CharRNN(
        vocab_size=20, cell=cell, lstm_size=16, num_layers=3, dropout=0.2, embedding_size=embedding_size
    ).eval()
    ids = torch.randint(0, 20, (4, 6))
    with torch.no_grad():
        _, state = model(ids[:, :5])
        logits, expected_state = model(ids[:, 5:], state)
        step_logits, step_state = fp32_stepper(model)(ids[:, 5], state)
    torch.testing.assert_close(step_logits, logits[:, 0])
    torch.testing.assert_close(step_state, expected_state)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_bf16_rnn_path_runs_in_bf16_and_trains_the_fp32_weights(cell):
    # forward() takes this path under a bf16 autocast on CUDA (autocast would run cuDNN in fp16);
    # on the CPU it is called directly
    torch.manual_seed(0)
    model = CharRNN(10, cell, 16, 2, 0.0).eval()
    inputs = model.inputs(torch.randint(0, 10, (3, 5)))
    outputs, state = model._rnn_bf16(inputs, None)
    states = state if cell == "lstm" else [state]
    assert outputs.dtype == torch.bfloat16 and all(s.dtype == torch.bfloat16 for s in states)
    reference, _ = model.rnn(inputs)
    assert torch.allclose(outputs.float(), reference, atol=3e-2)
    outputs.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.rnn.parameters())
    model._rnn_bf16(inputs, state)  # the carried state goes back in


# oneDNN has no bf16 LSTM on a CPU without bf16 kernels (AVX2 only: "could not create a primitive
# descriptor"), where charrnn never trains in bf16 (device.resolve_precision); the GRU and RNN run anywhere
BF16_CPU_CELLS = [
    pytest.param(
        cell,
        marks=pytest.mark.skipif(
            cell == "lstm" and not has_bf16_kernels("cpu"), reason="no CPU bf16 kernels, so no bf16 LSTM on the CPU"
        ),
    )
    for cell in params.CELL_TYPES
]


@pytest.mark.parametrize("cell", BF16_CPU_CELLS)
def test_bf16_training_on_the_cpu_runs_the_layers_of_nn_rnn_with_fast_dropout(cell, monkeypatch):
    torch.manual_seed(0)
    model = CharRNN(20, cell, 16, 3, 0.3).train()
    ids = torch.randint(0, 20, (4, 7))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(1)
        logits, state = model(ids)
        torch.manual_seed(1)
        layered_logits, layered_state = model._train_cpu_bf16(model.inputs(ids), None)
        assert logits.dtype == torch.bfloat16 and torch.equal(logits, layered_logits)  # forward() takes this path
        # without the masks, layer by layer is nn.LSTM/GRU/RNN's own computation, bit for bit, the state carried
        monkeypatch.setattr(model_module, "fast_dropout", lambda x, p: x)
        model.rnn.dropout = 0.0
        first, state = model._train_cpu_bf16(model.inputs(ids), None)
        second, state = model._train_cpu_bf16(model.inputs(ids), state)
        outputs, reference_state = model.rnn(model.inputs(ids))
        outputs, reference_state = model.rnn(model.inputs(ids), reference_state)
        expected = model.head(outputs)
    assert torch.equal(second, expected)
    for layered, reference in zip(*(s if cell == "lstm" else [s] for s in (state, reference_state))):
        assert torch.equal(layered, reference)


def test_fast_dropout_zeroes_a_fraction_p_and_scales_the_rest():
    x = torch.ones(1000, 1000, requires_grad=True)
    y = fast_dropout(x, 0.3)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.005
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient goes through the kept elements alone


def test_cells_in_schema_and_model_agree():
    assert tuple(CELLS) == params.CELL_TYPES


def test_parameter_count_of_the_classic_model():
    # 2 x 512 LSTM over 83 one-hot inputs with a linear head, as the Anna notebook
    model = CharRNN(vocab_size=83, lstm_size=512, num_layers=2)
    lstm = 4 * 512 * (83 + 512 + 2) + 4 * 512 * (512 + 512 + 2)
    assert model.num_params() == lstm + 512 * 83 + 83
