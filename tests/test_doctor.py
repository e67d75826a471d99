"""`charrnn doctor`: what this machine will do with params.yaml, and the time of `dvc repro`, in seconds."""

import re
import subprocess
import sys
from pathlib import Path

from helpers.configs import TINY, write_params
from helpers.running import assert_clean_error

CHARRNN = Path(sys.executable).parent / "charrnn"


def doctor(folder, mirror, *args):
    return subprocess.run(
        [str(CHARRNN), "doctor", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "CHARRNN_DATA_MIRROR": str(mirror), "HOME": str(folder)},
    )


def test_doctor_names_the_machine_the_corpus_the_store_and_estimates_the_pipeline(tmp_path, mirror):
    write_params(tmp_path, **{**TINY, "corpus": "hamlet", "epochs": 3, "keep_checkpoints": 50})
    result = doctor(tmp_path, mirror)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(
        r"^device +cpu: training in fp32 \(precision: fp32\), generation in \w+ "
        r"\(sample\.precision: auto\), \d+ CPU threads? \(threads: auto\)$",
        out,
        re.M,
    ), out
    assert re.search(rf"^corpus +hamlet: {re.escape(str(mirror))}/pg2265\.txt \(the mirror", out, re.M), out
    assert (
        f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db (the project's own store; the first training creates it)"
        in out
    )
    assert not (tmp_path / "mlruns/mlflow.db").exists()  # nothing made by looking
    assert re.search(r"^(PostgreSQL|Chromium) ", out, re.M)
    # the work counted from the params: hamlet's 162,849 characters, 90 % to train, in 8 x 16 windows
    steps = 3 * ((int(0.9 * 162_849) - 1) // 8 // 16)
    assert re.search(rf"1x32 lstm: {steps:,} steps of 8 x 16 characters \(3 epochs of [\d,]+\) at [\d,]+ chars/s", out)
    assert re.search(rf"{steps // 10 + (steps % 10 > 0)} validations, {steps // 50} kept checkpoints", out), out
    assert re.search(r"`dvc repro` from scratch: about (\d+ min \d\d s|\d+ s)$", out, re.M), out


def test_doctor_sizes_a_variant_and_refuses_a_bad_one_in_one_line(tmp_path, mirror):
    write_params(tmp_path, **{**TINY, "corpus": "hamlet"})
    variant = doctor(tmp_path, mirror, "--set", "lstm_size=48", "cell=gru")
    assert variant.returncode == 0 and "1x48 gru: " in variant.stdout, variant.stderr
    assert_clean_error(
        doctor(tmp_path, mirror, "--set", "lstm_size=big"), "lstm_size must be an integer >= 1 (got 'big')"
    )
    assert_clean_error(
        doctor(tmp_path, mirror, "--set", "lstm_sise=48"), "unknown param 'lstm_sise' (did you mean 'lstm_size'?)"
    )
