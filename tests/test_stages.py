"""The stages' refusals: bad input gives one clear line, and good outputs survive. A refusal is checked
with the stage run in-process (stage_in_process: no seconds of imports per case); prepare() runs the data
stages as subprocesses, as DVC does."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import ROOT
from helpers.configs import PIPELINE, tiny_params, write_params
from helpers.running import assert_clean_error, charrnn, prepare, run_stage, stage_in_process, with_python_path


def test_unknown_corpus(tmp_path):
    write_params(tmp_path, corpus="war-and-peace")
    assert_clean_error(stage_in_process("fetch", tmp_path), "unknown corpus 'war-and-peace'")


def test_missing_corpus_file(tmp_path):
    write_params(tmp_path, corpus="books/none.txt")
    assert_clean_error(stage_in_process("fetch", tmp_path), "corpus file 'books/none.txt' does not exist")


def test_mistyped_param(tmp_path):
    write_params(tmp_path, batch_size="abc")
    assert_clean_error(stage_in_process("fetch", tmp_path), "batch_size must be an integer >= 1 (got 'abc')")


def test_mirror_checksum_mismatch(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "pg2265.txt").write_text("not hamlet")
    write_params(tmp_path, corpus="hamlet")
    monkeypatch.setenv("CHARRNN_DATA_MIRROR", str(mirror))
    assert_clean_error(stage_in_process("fetch", tmp_path), "mirror file", "has sha256")
    assert not (tmp_path / "data" / "raw" / "hamlet.txt").exists()


def test_own_text_file_end_to_end(tmp_path):
    (tmp_path / "mine.txt").write_text("to be or not to be, that is the question\r\n" * 400)
    prepare(tmp_path, corpus="mine.txt", batch_size=4, num_steps=10)
    split = tmp_path / "data" / "split"
    sizes = [len(np.load(split / f"{name}.npy")) for name in ("train", "val", "test")]
    assert sum(sizes) == 400 * 41 and sizes[0] == int(0.9 * 400 * 41)  # CRLF read as one newline


def test_a_byte_order_mark_is_not_a_character_and_fetch_says_what_it_copied(tmp_path):
    (tmp_path / "bom.txt").write_text("\ufeff" + "to be or not to be\n" * 400, encoding="utf-8")
    fetched = charrnn("fetch", "bom.txt", "--dest", "data/raw", cwd=tmp_path)
    assert fetched.returncode == 0 and fetched.stdout == "data/raw/bom.txt: copied from bom.txt (UTF-8 checked)\n", (
        fetched
    )
    prepare(tmp_path, corpus="bom.txt", batch_size=4, num_steps=10)
    vocab = json.loads((tmp_path / "data" / "prepared" / "vocab.json").read_text())
    assert "\ufeff" not in vocab["chars"] and len(np.load(tmp_path / "data" / "prepared" / "encoded.npy")) == 400 * 19


def test_undecodable_own_file(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("na\u00efve caf\u00e9\n".encode("latin-1") * 100)
    write_params(tmp_path, corpus="latin1.txt")
    assert_clean_error(stage_in_process("fetch", tmp_path), "is not UTF-8 text", "byte 0xef")


def test_too_small_split_keeps_the_good_outputs(tmp_path):
    (tmp_path / "mine.txt").write_text("abcdefghij" * 500)
    prepare(tmp_path, corpus="mine.txt", batch_size=4, num_steps=10)
    split = tmp_path / "data" / "split"
    before = {p.name: p.read_bytes() for p in split.iterdir()}

    write_params(tmp_path, corpus="mine.txt", batch_size=64, num_steps=100)
    assert_clean_error(
        stage_in_process("split", tmp_path), "the train split has 4,500 characters, fewer than one batch"
    )
    assert {p.name: p.read_bytes() for p in split.iterdir()} == before


def test_a_train_split_too_small_to_share_between_processes(tmp_path):
    (tmp_path / "mine.txt").write_text("abcdefghij" * 500)
    sizes = dict(corpus="mine.txt", train_frac=0.5, val_frac=0.5, test_frac=0, batch_size=40, num_steps=50)
    prepare(tmp_path, **sizes, processes=2, **{"sample.prime": "abc"})
    assert_clean_error(
        stage_in_process("train", tmp_path),
        "the train split has 2,500 characters (1,250 for each of 2 "
        "processes), fewer than one batch (batch_size x num_steps + 1 = 2,001)",
        "/ processes",
    )
    assert not (tmp_path / "models").exists()


def test_bad_sample_options_are_refused_by_doctor_and_the_sample_stage_before_any_text(tmp_path):
    """The train stage reads no sample option (an edit of one never retrains): `charrnn doctor` checks
    them against the corpus before a training, and the sample stage refuses them before it writes."""
    from charrnn.data.batches import load_ids
    from charrnn.data.vocab import Vocab
    from charrnn.training.loop import train

    (tmp_path / "mine.txt").write_text("abcdefghij " * 500)
    sizes = dict(corpus="mine.txt", batch_size=4, num_steps=10)
    prepare(tmp_path, **sizes)
    p = tiny_params(**sizes, epochs=1)
    train(
        p,
        load_ids(tmp_path / "data/split/train.npy"),
        load_ids(tmp_path / "data/split/val.npy"),
        Vocab.load(tmp_path / "data/prepared/vocab.json"),
        tmp_path / "models",
    )
    for sample, message in [
        ({"sample.top_k": 12}, "sample section: top_k must be between 1 and the vocabulary size 11"),
        ({"sample.prime": "Far"}, "sample section: characters not in the mine vocabulary: 'F', 'r'"),
        ({"sample.top_k": 0}, "sample.top_k must be an integer from 1"),  # caught with params
        ({"sample.precision": "fp16"}, "sample.precision must be one of auto, fp32, bf16, int8"),
    ]:
        write_params(tmp_path, **sizes, **sample)
        assert_clean_error(charrnn("doctor", cwd=tmp_path), message)
        assert_clean_error(stage_in_process("sample", tmp_path), message)
        assert not (tmp_path / "samples").exists() and not (tmp_path / "mlruns").exists()
    write_params(tmp_path, **sizes, **{"sample.precision": "int8", "cell": "gru", "sample.prime": "abc"})
    assert_clean_error(
        charrnn("doctor", cwd=tmp_path), "int8 generation is implemented for LSTM models, and this one is a gru"
    )


def test_an_input_changed_while_a_stage_runs_is_not_recorded_as_used(tmp_path):
    """Under DVC (DVC_STAGE set) a stage whose declared params or deps changed while it ran ends with one
    error line: DVC records the inputs as they are when the stage ends, and would pair the new ones with
    outputs of the old (dvc.lock said 48, best.pt was 32). The change is made as the stage writes its first
    output (tests/replace_at_save)."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    (tmp_path / "mine.txt").write_text("abcdefghij " * 500)
    prepare(tmp_path, corpus="mine.txt", batch_size=4, num_steps=10)
    (tmp_path / "edited").mkdir(), (tmp_path / "unrelated").mkdir()
    edited = write_params(tmp_path / "edited", corpus="mine.txt", batch_size=8, num_steps=10)
    unrelated = write_params(tmp_path / "unrelated", corpus="mine.txt", batch_size=4, num_steps=10, epochs=7)
    other_text = tmp_path / "other.txt"
    other_text.write_text("zyxwvutsrq " * 500)
    cases = [
        ("split", edited, tmp_path / "params.yaml", "params.yaml's batch_size changed while stage split ran"),
        (
            "prepare",
            other_text,
            tmp_path / "data" / "raw" / "mine.txt",
            "data/raw/mine.txt changed while stage prepare ran",
        ),
    ]
    for stage, replacement, target, message in cases:
        kept = target.read_bytes()
        env = {
            **with_python_path({}, ROOT / "tests" / "replace_at_save"),
            "DVC_STAGE": stage,
            "CHARRNN_TEST_REPLACE": str(target),
            "CHARRNN_TEST_REPLACE_WITH": str(replacement),
        }
        result = run_stage(stage, tmp_path, env=env)
        assert_clean_error(result, message, "is not recorded as done; run dvc repro again")
        target.write_bytes(kept)
    # a param the stage does not declare (epochs, train's) may change while split runs
    env = {
        **with_python_path({}, ROOT / "tests" / "replace_at_save"),
        "DVC_STAGE": "split",
        "CHARRNN_TEST_REPLACE": str(tmp_path / "params.yaml"),
        "CHARRNN_TEST_REPLACE_WITH": str(unrelated),
    }
    assert run_stage("split", tmp_path, env=env).returncode == 0


def test_cli_fetch_reports_errors(tmp_path):
    assert_clean_error(charrnn("fetch", "nosuchcorpus", cwd=tmp_path), "unknown corpus 'nosuchcorpus'")


def test_cli_fetch_into_a_file_or_an_impossible_folder_and_a_folder_as_corpus(tmp_path):
    (tmp_path / "taken").write_text("a file")
    assert_clean_error(
        charrnn("fetch", "hamlet", "--dest", "taken", cwd=tmp_path),
        "taken, where the corpus goes, is a file, not a folder",
    )
    assert_clean_error(charrnn("fetch", "hamlet", "--dest", "/proc/charrnn", cwd=tmp_path), "cannot be made")
    (tmp_path / "books").mkdir()
    assert_clean_error(charrnn("fetch", "books", cwd=tmp_path), "corpus 'books' is a folder: give a UTF-8 text file")
    assert (tmp_path / "taken").read_text() == "a file"


def test_cli_fetch_from_mirror(tmp_path, mirror):
    charrnn = ROOT / ".venv" / "bin" / "charrnn"
    command = [str(charrnn)] if charrnn.exists() else [sys.executable, "-m", "charrnn.commands.cli"]
    result = subprocess.run(
        command + ["fetch", "tinyshakespeare", "--dest", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"CHARRNN_DATA_MIRROR": str(mirror), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "tinyshakespeare.txt").stat().st_size == 1_115_394


def test_missing_inputs_of_later_stages(tmp_path):
    write_params(tmp_path)
    assert_clean_error(stage_in_process("split", tmp_path), "data/prepared/encoded.npy not found")
    assert_clean_error(stage_in_process("train", tmp_path), "data/prepared/vocab.json not found")


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    """kill -9 during a write leaves its temp file (100 MB for a large corpus): the next write of that
    output removes it; a temp file of a process still running stays."""
    (tmp_path / "mine.txt").write_text("abcdefghij " * 500)
    prepare(tmp_path, corpus="mine.txt", batch_size=4, num_steps=10)
    gone = subprocess.Popen(["true"])
    gone.wait()
    prepared = tmp_path / "data" / "prepared"
    leftover, running = prepared / f".encoded.npy.tmp-{gone.pid}", prepared / f".encoded.npy.tmp-{os.getpid()}"
    for path in (leftover, running):
        path.write_bytes(b"half an array")
    assert run_stage("prepare", tmp_path).returncode == 0
    assert not leftover.exists() and running.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of device: cuda needs a machine without a GPU")
def test_device_cuda_without_a_gpu_is_the_device_param_s_error(tmp_path, mirror):
    """In the stages that pick the device first, it is `device`'s error, not the sample section's."""
    prepare(tmp_path, mirror, **{**PIPELINE, "device": "cuda"})
    for name in ("train", "sample"):
        result = run_stage(name, tmp_path)
        assert_clean_error(result, "device is 'cuda' but no CUDA GPU is available here")
        assert "sample section" not in result.stderr
