import copy

import numpy as np
import pytest
import torch

from charrnn.core.device import has_bf16_kernels
from charrnn.core.evaluate import evaluate, evaluate_checkpoint
from charrnn.core.model import CharRNN
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.generation.rules import check_sampling
from charrnn.generation.sample import generate, pick, uniform
from charrnn.generation.steppers import MAX_COST, make_stepper, teacher_forced_loss
from charrnn.generation.steppers import generation_precision as resolve

from helpers.running import assert_clean_error, charrnn


def test_top_k_1_is_greedy_and_low_temperature_converges_to_it(trained):
    model, vocab, *_ = trained
    greedy = generate(model, vocab, "the ", 80, temperature=0)
    assert generate(model, vocab, "the ", 80, temperature=1.0, top_k=1, seeds=[3]) == greedy
    assert generate(model, vocab, "the ", 80, temperature=1e-4, seeds=[9]) == greedy
    assert greedy[0].startswith("the ") and len(greedy[0]) == 84


def test_same_seed_same_text_and_batches_equal_single_streams(trained):
    model, vocab, *_ = trained
    batch = generate(model, vocab, "the", 120, temperature=1.0, seeds=[11, 12, 13])
    assert [generate(model, vocab, "the", 120, seeds=[seed])[0] for seed in (11, 12, 13)] == batch
    assert len(set(batch)) == 3  # different seeds, different texts


def test_a_temperature_near_zero_is_greedy(trained):
    model, vocab, *_ = trained
    greedy = generate(model, vocab, "the", 60, temperature=0, seeds=[1])
    assert generate(model, vocab, "the", 60, temperature=1e-300, seeds=[1]) == greedy
    assert generate(model, vocab, "the", 60, temperature=1e-300, top_k=None, top_p=0.9, seeds=[2]) == greedy


def test_top_k_never_leaves_the_k_most_likely():
    logits = torch.randn(1, 40).expand(5000, -1)
    ids = pick(logits, 1.0, 5, 1.0, uniform(torch.arange(5000), step=0))
    allowed = set(torch.topk(logits[0], 5).indices.tolist())
    assert set(ids.tolist()) == allowed  # all five appear in 5,000 draws, nothing else does


def test_top_k_keeps_exactly_k_ids_when_the_kth_is_tied():
    logits = torch.tensor([[1.0, 1.0, 1.0, 0.0]]).expand(1000, -1)
    ids = pick(logits, 1.0, 1, 1.0, uniform(torch.arange(1000), step=0))
    assert len(set(ids.tolist())) == 1  # one of the three tied ids, always the same one
    assert len(set(pick(logits, 1.0, 2, 1.0, uniform(torch.arange(1000), step=0)).tolist())) == 2


def test_top_p_keeps_the_smallest_set_with_that_mass():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    ids = pick(probs.log().expand(4000, -1), 1.0, None, 0.7, uniform(torch.arange(4000), step=1))
    assert set(ids.tolist()) == {0, 1}


def test_draws_follow_the_distribution():
    probs = torch.tensor([0.6, 0.25, 0.1, 0.05])
    ids = pick(probs.log().expand(40_000, -1), 1.0, None, 1.0, uniform(torch.arange(40_000), step=7))
    freq = np.bincount(ids.numpy(), minlength=4) / 40_000
    assert np.allclose(freq, probs.numpy(), atol=0.01)


def test_bad_sampling_options_are_named(trained):
    model, vocab, *_ = trained
    with pytest.raises(CharRNNError, match="not in the tiny vocabulary: 'Q', 'z'"):
        generate(model, vocab, "the Qz", 10)
    assert generate(model, vocab, "the Qz", 10, drop_unknown=True, temperature=0)[0].startswith("the ")
    for kwargs, message in [
        (dict(prime=""), "prime text is empty"),
        (dict(length=-1), "length must be >= 0"),
        (dict(temperature=-0.5), "temperature must be >= 0"),
        (dict(top_k=len(vocab) + 1), "top_k must be between 1 and the vocabulary size"),
        (dict(top_k=0), "top_k must be between 1 and the vocabulary size"),
        (dict(top_p=0), "top_p must be in"),
        (dict(seeds=[]), "num_samples must be >= 1"),
    ]:
        with pytest.raises(CharRNNError, match=message):
            generate(model, vocab, **{"prime": "the", "length": 5, **kwargs})


def test_a_model_with_nan_weights_writes_no_text(trained):
    model, vocab, *_ = trained
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.head.weight.fill_(float("nan"))
    with pytest.raises(CharRNNError, match="outputs are not finite numbers"):
        generate(broken, vocab, "the", 10)


def outside_top_k(model, vocab, text, prime_length, k):
    """How many characters of `text` after the prime are not among the model's k most likely there."""
    ids = torch.as_tensor(vocab.encode(text), dtype=torch.long)
    with torch.no_grad():
        logits, _ = model(ids[None, :-1])
    top = torch.topk(logits[0], k, dim=-1).indices
    return sum(int(ids[i + 1] not in top[i]) for i in range(prime_length - 1, len(ids) - 1))


def test_cli_streams_a_sample_and_top_k_null_switches_the_filter_off(trained):
    model, vocab, folder, *_ = trained
    args = [
        "sample",
        "--checkpoint",
        str(folder / "best.pt"),
        "--prime",
        "the",
        "--length",
        "400",
        "--temperature",
        "1.0",
        "--seed",
        "5",
    ]
    filtered = charrnn(*args, "--top-k", "5")
    assert filtered.returncode == 0, filtered.stderr
    assert filtered.stdout.startswith("the") and len(filtered.stdout) == 3 + 400 + 1
    assert outside_top_k(model, vocab, filtered.stdout[:-1], 3, 5) == 0
    unfiltered = charrnn(*args, "--top-k", "null")
    assert unfiltered.returncode == 0, unfiltered.stderr
    assert outside_top_k(model, vocab, unfiltered.stdout[:-1], 3, 5) > 0  # the filter is really off


def test_cli_sample_errors(trained, tmp_path):
    folder = trained[2]
    assert_clean_error(
        charrnn("sample", "--checkpoint", str(folder / "best.pt"), "--prime", "the €"),
        "characters not in the tiny vocabulary: '€'",
    )
    assert_clean_error(charrnn("sample", "--checkpoint", str(tmp_path / "none.pt")), "not found")
    assert_clean_error(
        charrnn("sample", "--checkpoint", str(folder / "best.pt"), "--top-k", "100"),
        "top_k must be between 1 and the vocabulary size",
    )
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert_clean_error(charrnn("sample", "--checkpoint", str(tmp_path / "bad.pt")), "not a readable checkpoint")


def test_a_folder_a_device_or_a_mistyped_flag_is_one_clear_line(tmp_path):
    (tmp_path / "models.pt").mkdir()
    assert_clean_error(
        charrnn("sample", "--checkpoint", str(tmp_path / "models.pt")), "is a folder, not a checkpoint file"
    )
    assert_clean_error(charrnn("sample", "--checkpoint", "/dev/null"), "/dev/null is not a regular file")
    assert_clean_error(charrnn("sample", "--temprature", "0.5"), "charrnn: unrecognized arguments: --temprature")
    assert_clean_error(charrnn(), "the following arguments are required: command", "(see charrnn --help)")
    assert charrnn("--version").returncode == 0 and charrnn("sample", "--help").returncode == 0


def test_a_checkpoint_of_another_corpus_is_refused(trained):
    _, vocab, folder, val_ids, p = trained
    other = Vocab(chars=vocab.chars, corpus="anna", sha256="f" * 64)
    with pytest.raises(CharRNNError, match="was trained on corpus 'tiny', but the data is 'anna'"):
        evaluate_checkpoint(folder / "best.pt", other, {"val": val_ids}, "cpu")


REDUCED = [
    "int8",
    pytest.param("bf16", marks=pytest.mark.skipif(not has_bf16_kernels("cpu"), reason="no CPU bf16 kernels")),
]


@pytest.mark.parametrize("precision", ["fp32", *REDUCED])
def test_a_seed_writes_the_same_text_every_time_at_each_precision(trained, precision):
    model, vocab, *_ = trained
    first = generate(model, vocab, "the", 200, seeds=[4, 5], precision=precision)
    assert generate(model, vocab, "the", 200, seeds=[4, 5], precision=precision) == first
    assert generate(model, vocab, "the", 200, seeds=[5], precision=precision) == first[1:]  # a batch = single streams
    assert all(text.startswith("the") and len(text) == 203 for text in first)


@pytest.mark.parametrize("precision", REDUCED)
def test_reduced_precision_writes_the_learned_text_at_nearly_fp32_loss(trained, precision):
    model, vocab, _, val_ids, _ = trained
    learned = {
        precision: known_words(
            generate(model, vocab, "the ", 600, temperature=0.5, top_k=3, seeds=range(8), precision=precision)
        )
        for precision in ("fp32", precision)
    }
    assert learned[precision] > 0.6 and abs(learned[precision] - learned["fp32"]) < 0.1  # both ~0.74 here
    fp32 = teacher_forced_loss(model, val_ids, "fp32")
    assert abs(teacher_forced_loss(model, val_ids, precision) - fp32) < MAX_COST  # nats/char, as auto asks


def known_words(texts):
    """The share of the words in `texts` that are words of the tiny corpus."""
    words = [word for text in texts for word in text.replace(".", " ").split()]
    return sum(word in {"the", "cat", "dog", "rat", "bat", "sat", "on", "mat"} for word in words) / len(words)


def test_the_fp32_generation_path_scores_the_evaluation_protocols_loss(trained):
    model, vocab, _, val_ids, _ = trained
    assert teacher_forced_loss(model, val_ids, "fp32") == pytest.approx(evaluate(model, val_ids, "cpu"), abs=1e-5)


def test_auto_and_the_precisions_a_device_or_cell_cannot_run():
    assert resolve("auto", "cpu") == ("bf16" if has_bf16_kernels("cpu") else "int8")
    assert resolve("auto", "cpu", "gru") == "fp32" and resolve("fp32", "cpu", "gru") == "fp32"
    with pytest.raises(CharRNNError, match="bf16 generation is implemented for LSTM models, and this one is a gru"):
        resolve("bf16", "cpu", "gru")
    with pytest.raises(CharRNNError, match="int8 generation runs on the CPU only"):
        resolve("int8", "cuda")
    with pytest.raises(CharRNNError, match="precision must be one of auto, fp32, bf16, int8"):
        resolve("fp16", "cpu")


def test_what_one_generation_may_hold_is_bounded_before_it_is_allocated(trained):
    folder = trained[2]
    args = ["sample", "--checkpoint", str(folder / "best.pt")]
    assert_clean_error(
        charrnn(*args, "--length", "1000000000"),
        "length x num_samples must be at most 10,000,000 characters (got 1,000,000,000 x 1)",
    )
    assert_clean_error(
        charrnn(*args, "--num-samples", "100000000"),
        "length x num_samples must be at most 10,000,000 characters (got 2,000 x 100,000,000)",
    )
    assert_clean_error(
        charrnn(*args, "--prime", "the " * 30_000),
        "the prime's length x num_samples must be at most 100,000 characters (got 120,000 x 1)",
    )
    model, vocab, *_ = trained
    assert check_sampling(vocab, "the", 1_000_000, num_samples=10) == "the"  # at the bound: fine


def test_cli_precision_flag(trained):
    folder = trained[2]
    args = ["sample", "--checkpoint", str(folder / "best.pt"), "--prime", "the", "--length", "300", "--seed", "5"]
    runs = {precision: charrnn(*args, "--precision", precision) for precision in ("int8", "fp32")}
    for result in runs.values():
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("the") and len(result.stdout) == 3 + 300 + 1
    assert charrnn(*args, "--precision", "int8").stdout == runs["int8"].stdout
    assert charrnn(*args, "--precision", "int8", "--threads", "1").stdout == runs["int8"].stdout
    assert runs["int8"].stdout != runs["fp32"].stdout  # another precision writes other text
    assert_clean_error(
        charrnn(*args, "--precision", "fp16"), "charrnn sample: argument --precision: invalid choice: 'fp16'"
    )


@pytest.mark.parametrize("command", ["sample", "compare"])
@pytest.mark.parametrize(
    "option, value, rule",
    [
        ("--seed", "-1", "an integer from 0 to 4294967295"),
        ("--temperature", "nan", "a finite number >= 0"),
        ("--length", "1.5", "an integer >= 0"),
        ("--top-k", "0", "an integer from 1"),
        ("--threads", "0", "auto or an integer >= 1"),
        ("--threads", "two", "auto or an integer >= 1"),
    ],
)
def test_cli_sampling_options_follow_the_params_rules(command, option, value, rule):
    """The flags refuse what params.yaml's `sample.*` refuses, with its rule, before any model is read."""
    models = ["--checkpoint", "nosuch.pt"] if command == "sample" else ["nosuch.pt", "nosuch.pt"]
    assert_clean_error(charrnn(command, *models, option, value), f"{option} must be {rule}", f"(got '{value}')")


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("embedding_size", [0, 8])
def test_a_reduced_precision_step_is_close_to_the_fp32_step(precision, embedding_size):
    torch.manual_seed(0)
    model = CharRNN(vocab_size=20, lstm_size=32, num_layers=3, dropout=0.0, embedding_size=embedding_size).eval()
    ids = torch.randint(0, 20, (4, 6))
    with torch.no_grad():
        _, state = model(ids[:, :5])
        expected, (h, c) = model(ids[:, 5:], state)
        with torch.inference_mode():
            logits, (step_h, step_c) = make_stepper(model, precision)(ids[:, 5], state)
    assert logits.dtype == step_h.dtype == step_c.dtype == torch.float32
    torch.testing.assert_close(logits, expected[:, 0], atol=0.02, rtol=0)
    torch.testing.assert_close(step_h, h, atol=0.02, rtol=0)
    torch.testing.assert_close(step_c, c, atol=0.02, rtol=0)


@pytest.mark.parametrize("precision", ["fp32", *REDUCED])
def test_a_stream_steps_alike_alone_and_in_a_batch(precision):
    """What lets a seed reproduce its sample whatever the number of streams: a row of a step comes out
    the same alone as among 40 streams, to fp32 rounding (fp32 matrix products are not row-invariant to
    the last bit, so a draw within ~1e-7 of a boundary could still pick another character)."""
    torch.manual_seed(0)
    model = CharRNN(vocab_size=30, lstm_size=64, num_layers=2, dropout=0.0).eval()
    ids = torch.randint(0, 30, (40,))
    state = tuple(torch.randn(2, 40, 64) for _ in range(2))
    step = make_stepper(model, precision)
    with torch.inference_mode():
        logits, (h, c) = step(ids, state)
        for row in (0, 17, 39):
            alone, (alone_h, alone_c) = step(ids[row : row + 1], tuple(s[:, row : row + 1].contiguous() for s in state))
            torch.testing.assert_close(alone[0], logits[row], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(alone_h[:, 0], h[:, row], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(alone_c[:, 0], c[:, row], rtol=1e-5, atol=1e-6)
