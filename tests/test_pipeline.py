"""`dvc repro` on a fresh copy of the pipeline: stages chain, reruns are exact, no-op is a no-op."""

import json

import yaml

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
