"""`dvc repro` on a fresh copy of the pipeline: stages chain, reruns are exact, no-op is a no-op."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from charrnn import checkpoint

from conftest import PIPELINE, write_params


def test_repro_builds_the_chain_and_reruns_only_what_changed(project):
    write_params(project.root, **PIPELINE)

    first = project("repro").stdout
    for stage in ("fetch", "prepare", "split", "train", "evaluate", "sample", "register"):
        assert f"Running stage '{stage}'" in first
    vocab = json.loads((project.root / "data/prepared/vocab.json").read_text())
    assert vocab["corpus"] == "hamlet" and vocab["chars"] == sorted(vocab["chars"])
    sizes = json.loads((project.root / "data/split/split.json").read_text())
    assert sum(sizes.values()) == 178_707 - 15_858

    samples = sorted(path.name for path in (project.root / "samples").iterdir())
    assert samples == ["best.txt", "i100_l32_v" + samples[1][10:]]  # keep_checkpoints=100 kept step 100
    assert (project.root / "samples/best.txt").read_text().startswith("Far")

    assert "Data and pipelines are up to date" in project("repro").stdout

    params = yaml.safe_load((project.root / "params.yaml").read_text())
    write_params(project.root, **{**params, "val_frac": 0.1, "test_frac": 0})  # the benchmark split
    rerun = project("repro").stdout
    assert "Stage 'prepare' didn't change, skipping" in rerun
    assert "Running stage 'split'" in rerun and "Running stage 'train'" in rerun
    assert json.loads((project.root / "data/split/split.json").read_text())["val_chars"] == 162_849 - int(0.9 * 162_849)

    dag = project("dag").stdout
    assert all(stage in dag for stage in ("fetch", "prepare", "split", "train"))
    metrics = project("metrics", "show", "--json").stdout
    assert all(key in metrics for key in ("train_chars", "best_val_loss", "chars_per_sec", "val_bpc"))
    plots = json.loads(project("plots", "show", "--json").stdout)
    assert not plots.get("errors") and plots["data"]["plots/train/loss.csv"], plots


def test_kill_9_during_training_then_repro_resumes_to_the_same_metrics(project):
    write_params(project.root, **{**PIPELINE, "epochs": 4, "eval_every": 20, "keep_checkpoints": 0})
    project("repro", "split")
    stage = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=project.root, env=project.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = project.root / "models" / "last.pt"
    deadline = time.time() + 300
    while not (last.exists() and checkpoint.load(last)["step"] >= 100):
        assert stage.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.2)
    os.killpg(stage.pid, signal.SIGKILL)
    stage.wait()
    killed_at = checkpoint.load(last)["step"]
    assert killed_at < 4 * 143

    rerun = project("repro").stdout
    assert f"resuming from models/last.pt at step {killed_at}" in rerun
    resumed = json.loads((project.root / "metrics/train.json").read_text())

    params = yaml.safe_load((project.root / "params.yaml").read_text())
    params["resume"] = False
    (project.root / "params.yaml").write_text(yaml.safe_dump(params))
    assert "resuming" not in project("repro").stdout
    uninterrupted = json.loads((project.root / "metrics/train.json").read_text())
    resumed.pop("chars_per_sec"), uninterrupted.pop("chars_per_sec")
    assert resumed == uninterrupted
