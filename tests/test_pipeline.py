"""`dvc repro` on a fresh copy of the pipeline: stages chain, reruns are exact, no-op is a no-op."""

import json
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow import MlflowClient

from charrnn.core import checkpoint

from helpers.configs import PIPELINE, write_params
from helpers.running import interrupting


def test_repro_builds_the_chain_and_reruns_only_what_changed(project):
    write_params(project.root, **PIPELINE)

    repro = project("repro")
    first = repro.stdout
    for stage in ("fetch", "prepare", "split", "train", "evaluate", "log_models", "sample", "register"):
        assert f"Running stage '{stage}'" in first
    assert "logged 2 checkpoints as models" in first  # the stages' own lines, not MLflow's INFO lines:
    assert " INFO mlflow" not in first + repro.stderr  # "Creating initial MLflow database tables...", ...
    assert "registered charrnn-hamlet version 1" in first and "Created version" not in first + repro.stderr
    vocab = json.loads((project.root / "data/prepared/vocab.json").read_text())
    assert vocab["corpus"] == "hamlet" and vocab["chars"] == sorted(vocab["chars"])
    sizes = json.loads((project.root / "data/split/split.json").read_text())
    assert sum(sizes.values()) == 178_707 - 15_858

    samples = sorted(path.name for path in (project.root / "samples").iterdir())
    assert samples == ["best.txt", "i100_l32_v" + samples[1][10:]]  # keep_checkpoints=100 kept step 100
    assert (project.root / "samples/best.txt").read_text().startswith("Far")

    assert "Data and pipelines are up to date" in project("repro").stdout

    # a refused param under `dvc repro`: DVC removed the split stage's outputs before running it, and the
    # one error line says how to get them back
    good = yaml.safe_load((project.root / "params.yaml").read_text())
    write_params(project.root, **{**good, "batch_size": 4096})
    refused = project("repro", check=False)
    [line] = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert refused.returncode != 0 and "Traceback" not in refused.stderr and "batch_size" in line
    assert line.endswith(
        "[DVC removed the outputs of stage split before running it: `dvc checkout split` restores "
        "them from the cache, `git checkout` the ones kept in git]"
    )
    assert not (project.root / "data/split/train.npy").exists()
    write_params(project.root, **good)
    project("checkout", "split")
    assert (project.root / "data/split/train.npy").exists()
    again = project("repro").stdout  # split alone writes split.json (not cached) again: the same outputs
    assert [line for line in again.splitlines() if line.startswith("Running stage")] == ["Running stage 'split':"]

    # an edit (even a comment) of generation, serving, the registry, a command or the corpus list reruns
    # the stages that run that code, never train; fetch and prepare give the same outputs again
    client = MlflowClient(f"sqlite:///{project.root}/mlruns/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("charrnn-hamlet").experiment_id])
    models = json.loads((project.root / "models/logged_models.json").read_text())["models"]
    for module, stages, keep in [
        ("serving/pyfunc.py", {"log_models"}, False),
        ("tracking/registry.py", {"register"}, False),
        ("commands/cli.py", set(), False),
        ("generation/sample.py", {"log_models", "sample"}, True),
        ("data/corpus.py", {"fetch", "prepare", "log_models", "sample"}, True),
    ]:
        edited = project.root / "src/charrnn" / module
        original = edited.read_text()
        edited.write_text(original + "# a comment\n")
        assert set(json.loads(project("status", "--json").stdout)) == stages, module
        if not keep:
            edited.write_text(original)
    rerun = project("repro").stdout
    assert "Running stage 'train'" not in rerun and "Stage 'split' didn't change, skipping" in rerun
    assert all(f"Running stage '{stage}'" in rerun for stage in ("prepare", "log_models", "sample", "register"))
    relogged = json.loads((project.root / "models/logged_models.json").read_text())["models"]
    assert relogged.keys() == models.keys() and set(relogged.values()).isdisjoint(models.values())
    # the run lists the new models only, and the champion is the newest version of the same weights
    assert {m.model_id for m in client.search_logged_models([run.info.experiment_id])} == set(relogged.values())
    champion = client.get_model_version_by_alias("charrnn-hamlet", "champion")
    assert str(champion.version) == "2" and champion.tags["run_id"] == run.info.run_id

    # a new split and a change of training's code (even a comment): prepare is skipped, split reruns, and
    # train starts from step 0 into a new MLflow run (the finished run in last.pt was made by other code)
    model_py = project.root / "src/charrnn/core/model.py"
    model_py.write_text(model_py.read_text() + "# a comment\n")
    assert "train" in json.loads(project("status", "--json").stdout)
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    write_params(project.root, **{**params, "val_frac": 0.1, "test_frac": 0})  # the benchmark split
    rerun = project("repro").stdout
    assert "Stage 'prepare' didn't change, skipping" in rerun
    assert "Running stage 'split'" in rerun and "Running stage 'train'" in rerun
    [why] = [line for line in rerun.splitlines() if line.startswith("not resuming the finished run in models/last.pt")]
    assert "changed since: code core/model.py; data val_chars; params test_frac, val_frac; training afresh" in why, why
    assert "step     50/" in rerun
    assert json.loads((project.root / "data/split/split.json").read_text())["val_chars"] == 162_849 - int(0.9 * 162_849)
    runs = client.search_runs([run.info.experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
    assert [m.step for m in client.get_metric_history(runs[-1].info.run_id, "loss/val")][0] == 50

    dag = project("dag").stdout
    assert all(stage in dag for stage in ("fetch", "prepare", "split", "train"))
    # one metrics file, each figure once, the ones compared first (the records are plain outputs)
    [metrics] = json.loads(project("metrics", "show", "--json").stdout).values()
    assert list(metrics["data"]) == ["metrics/eval.json"]
    assert list(metrics["data"]["metrics/eval.json"]["data"]) == [
        "val_loss",
        "val_bpc",
        "eval_protocol",
    ]  # no test part
    plots = json.loads(project("plots", "show", "--json").stdout)
    assert not plots.get("errors") and plots["data"]["plots/train/loss.csv"], plots


def test_a_refused_dvc_exp_run_s_loses_nothing_the_user_wrote(project):
    """charrnn never rewrites params.yaml: after a refused `dvc exp run -S` the file holds what the user
    wrote, the uncommitted edits and the -S values as DVC left them, whichever rule refused (a param's
    own, or a cross-field one). The baseline commit's value used to be put back over an uncommitted edit
    of the refused param, while a value refused by a cross-field rule stayed."""
    params_file = project.root / "params.yaml"
    edited = params_file.read_text().replace("\nepochs: 2", "\nepochs: 3  # mine, not committed")
    edited = edited.replace("\nlstm_size: 384", "\nlstm_size: 48  # mine, not committed")
    params_file.write_text(edited)
    for settings, refusal in (
        (["lstm_size=abc"], "lstm_size must be an integer >= 1 (got 'abc')"),
        (["min_lr=0.5", "lstm_size=64"], "min_lr (0.5) must not exceed learning_rate"),
    ):
        refused = project("exp", "run", *[arg for pair in settings for arg in ("-S", pair)], check=False)
        [line] = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert refusal in line and "params.yaml holds this experiment's values" in line, line
        after = params_file.read_text()
        written = {key: yaml.safe_load(value) for key, _, value in (pair.partition("=") for pair in settings)}
        assert yaml.safe_load(after) == {**yaml.safe_load(edited), **written}
        assert "epochs: 3  # mine, not committed" in after
        edited = after


def test_kill_9_during_training_then_repro_resumes_and_completes(project):
    write_params(project.root, **{**PIPELINE, "epochs": 2, "eval_every": 20, "keep_checkpoints": 0})
    project("repro", "split")
    # kill -9 as the sixth last.pt (step 120) is being written: best.pt may be ahead, last.pt holds step 100
    killed = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "repro", "train"],
        cwd=project.root,
        env=interrupting(project.env, "KILL", 6),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode != 0 and "step    100/286" in killed.stdout and "step    120/" not in killed.stdout
    assert checkpoint.load(project.root / "models" / "last.pt")["step"] == 100

    # the rerun resumes and trains to the end, then finds the disk of plots/ full (a real one where
    # root may mount a small tmpfs): one error line; once there is space, the next rerun completes from
    # the finished run in last.pt without training a step
    plots = project.root / "plots" / "train"
    plots.mkdir(parents=True)
    mounted = (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(plots)], capture_output=True).returncode
        == 0
    )
    if mounted:
        subprocess.run(["dd", "if=/dev/zero", f"of={plots / 'filler'}", "bs=4k"], capture_output=True)
        full = project("repro", "train", check=False)
        subprocess.run(["umount", "--lazy", str(plots)], check=True)
        assert full.returncode != 0 and "Traceback" not in full.stderr, full.stderr
        assert "error: no space left on the device writing plots/train/loss.csv: free some" in full.stderr
        rerun = project("repro", "train").stdout
        assert "completing it, nothing to train" in rerun and "step    286/286" not in rerun
        rerun = full.stdout  # the resumed training, up to the full disk
    else:  # the full disk needs root: the resume alone
        rerun = project("repro", "train").stdout
    assert "resuming from models/last.pt at step 100" in rerun and "step    120/286" in rerun
    # it ends as the uninterrupted run would (the same metrics: test_train.py proves resume exact in-process)
    resumed = json.loads((project.root / "metrics/train.json").read_text())
    history = (project.root / "plots/train/loss.csv").read_text().splitlines()[1:]
    assert resumed["steps"] == 286 and [int(row.split(",")[0]) for row in history] == [*range(20, 286, 20), 286]
    assert checkpoint.load(project.root / "models" / "last.pt")["step"] == 286
