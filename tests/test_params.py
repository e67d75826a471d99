import re

import pytest
import yaml

from charrnn import params
from charrnn.errors import CharRNNError


def check(**overrides):
    return params.validate({**params.defaults(), **overrides})


def test_defaults_are_valid_and_the_workspace_params_yaml_too():
    """The schema's defaults pass its own checks, and so does the workspace's params.yaml, whatever values
    an experiment (`dvc exp apply`) or the user gave it: the tests read their own configs, never it."""
    from helpers import ROOT

    assert check().flat() == params.defaults()
    assert set(params.load(ROOT / "params.yaml").flat()) == set(params.defaults())


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("batch_size", "abc", "batch_size must be an integer >= 1 (got 'abc')"),
        ("batch_size", 0, "batch_size must be an integer >= 1"),
        ("num_steps", -5, "num_steps must be an integer >= 1"),
        ("batch_size", 2.5, "batch_size must be an integer"),
        ("batch_size", True, "batch_size must be an integer"),
        ("val_frac", 0, "val_frac must be a fraction in (0, 1)"),
        ("test_frac", 1.5, "test_frac must be a fraction in [0, 1)"),
        ("train_frac", "lots", "train_frac must be a fraction"),
        ("corpus", 3, "corpus must be a corpus name"),
        ("seed", -1, "seed must be an integer from 0 to 4294967295"),
        ("seed", 2**64, "seed must be an integer from 0 to 4294967295"),
        ("lstm_size", "abc", "lstm_size must be an integer >= 1 (got 'abc')"),
        ("num_layers", 0, "num_layers must be an integer >= 1"),
        ("dropout", 1.0, "dropout must be a number in [0, 1)"),
        ("dropout", -0.1, "dropout must be a number in [0, 1)"),
        ("cell", "transformer", "cell must be one of lstm, gru, rnn"),
        ("device", "tpu", "device must be one of auto, cpu, cuda"),
        ("learning_rate", 0, "learning_rate must be a finite number > 0"),
        ("learning_rate", float("inf"), "learning_rate must be a finite number > 0 (got inf)"),
        ("grad_clip", "nan", "grad_clip must be a finite number > 0 (got 'nan')"),
        ("sample.top_p", 0, "sample.top_p must be a number in (0, 1]"),
        ("sample.top_k", 0, "sample.top_k must be an integer from 1 to the vocabulary size, or null for off"),
        ("sample.top_k", "five", "sample.top_k must be an integer"),
        ("batch_size", None, "batch_size must be an integer >= 1 (got None)"),
        ("resume", "yes", "resume must be true or false"),
        ("sample.precision", "fp16", "sample.precision must be one of auto, fp32, bf16, int8 (got 'fp16')"),
        ("threads", 0, "threads must be auto or an integer >= 1 (CPU threads per process) (got 0)"),
        ("threads", "many", "threads must be auto or an integer >= 1"),
        ("threads", 1.5, "threads must be auto or an integer >= 1"),
    ],
)
def test_bad_values_are_named(name, value, fragment):
    with pytest.raises(CharRNNError) as err:
        check(**{name: value})
    assert fragment in str(err.value)


def test_threads_are_auto_or_a_count():
    assert check(threads="auto").threads == "auto" and check(threads=3).threads == 3


def test_null_top_k_means_off():
    assert check(**{"sample.top_k": None}).sample.top_k is None


def test_fractions_must_not_sum_over_one():
    with pytest.raises(CharRNNError, match="at most 1"):
        check(train_frac=0.9, val_frac=0.1, test_frac=0.1)
    assert check(train_frac=0.9, val_frac=0.1, test_frac=0).test_frac == 0.0


def test_float_written_without_dot_is_read_as_a_number():
    # PyYAML reads 5e-2 as the string "5e-2"; DVC writes it that way for `-S val_frac=5e-2`.
    assert check(val_frac="5e-2").val_frac == pytest.approx(0.05)
    # an int where a float is expected is taken as that float
    assert isinstance(check(test_frac=0).test_frac, float)


def test_missing_and_unknown_keys(tmp_path):
    raw = params.defaults()
    del raw["num_steps"]
    with pytest.raises(CharRNNError, match="missing param 'num_steps'"):
        params.validate(raw)
    with pytest.raises(CharRNNError, match="unknown param 'num_step' \\(did you mean 'num_steps'\\?\\)"):
        check(num_step=3)


def test_aliases_and_huge_files_are_refused_before_they_expand(tmp_path):
    laughs = tmp_path / "laughs.yaml"  # "billion laughs": 9 levels of 9 aliases, 9**9 strings once expanded
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    laughs.write_text("\n".join(lines) + "\n")
    with pytest.raises(CharRNNError, match="not valid YAML \\(an alias \\(\\*\\) at line 2: anchors and aliases"):
        params.load(laughs)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * 2_000_000 + "\n")
    with pytest.raises(CharRNNError, match="2,000,003 bytes; a params file is a few KB"):
        params.load(huge)


def test_load_reports_file_problems(tmp_path):
    with pytest.raises(CharRNNError, match="file not found"):
        params.load(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpus: [unclosed\n")
    with pytest.raises(CharRNNError, match="not valid YAML"):
        params.load(bad)
    nested = tmp_path / "nested.yaml"
    nested.write_text(yaml.safe_dump({**params.defaults(), "sample": {"lenght": 5}}))
    with pytest.raises(CharRNNError, match="unknown param 'sample.lenght' \\(did you mean 'sample.length'\\?\\)"):
        params.load(nested)


def test_params_yaml_is_read_as_dvc_reads_it():
    """YAML 1.2 (DVC's ruamel), not PyYAML's 1.1: `yes` and `1:30` were read as true and 90 while DVC
    recorded the texts in dvc.lock, and `010` as 8 where DVC has 10."""
    from dvc.utils.serialize import parse_yaml

    for text in (
        "yes",
        "no",
        "on",
        "Off",
        "1:30",
        "010",
        "0b11",
        "0o17",
        "0x1F",
        "1_000",
        "1e-3",
        "3.",
        ".inf",
        "~",
        "",
    ):
        ours, dvcs = params.read_yaml(f"value: {text}")["value"], parse_yaml(f"value: {text}", "params.yaml")["value"]
        assert (ours, type(ours)) == (dvcs, type(dvcs)), text
    with pytest.raises(CharRNNError, match=re.escape("resume must be true or false (got 'yes')")):
        params.with_overrides(params.validate(params.defaults()), ["resume=yes"])
    with pytest.raises(CharRNNError, match=re.escape("epochs must be an integer >= 1 (got '1:30')")):
        params.with_overrides(params.validate(params.defaults()), ["epochs=1:30"])
