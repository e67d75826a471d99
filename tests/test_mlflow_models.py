"""What the MLflow UI and registry show of a pipeline run, for real (the project's sqlite store): the
training view, the datasets, system metrics, every kept checkpoint as a logged model, and the
registry's history of each version and of the champion."""

import json
import math
from datetime import datetime

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from charrnn.registry import CHAMPION
from conftest import PIPELINE, make_project, tiny_corpus, tiny_params, write_params

CHECKPOINTED = dict(PIPELINE, lstm_size=8, keep_checkpoints=40)  # 143 steps: kept 40, 80, 120, and best.pt


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, mirror):
    """The tiny pipeline (a 1x8 LSTM), then the experiment `wider` (1x32), which takes `champion`."""
    run = make_project(tmp_path_factory.mktemp("models"), mirror, MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="0.2")
    write_params(run.root, **CHECKPOINTED)
    run("repro")
    run("exp", "run", "-n", "wider", "-S", "lstm_size=32")
    run.client = MlflowClient(f"sqlite:///{run.root}/mlruns/mlflow.db")
    run.experiment = run.client.get_experiment_by_name("charrnn-hamlet")
    run.runs = {r.data.params["lstm_size"]: r for r in run.client.search_runs([run.experiment.experiment_id])}
    return run


def test_the_experiment_opens_on_training_runs(tracked, tmp_path, monkeypatch):
    assert tracked.experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    # an experiment made before charrnn set the tag gets it with its next run
    from charrnn.tracking import TrainingTracker

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("charrnn-tiny")
    train_ids, val_ids, vocab = tiny_corpus()
    with TrainingTracker(tiny_params(), vocab) as tracker:
        tracker.start(None)
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_splits_are_the_runs_datasets_and_metrics_link_to_them(tracked):
    digests = []
    for run in tracked.runs.values():
        inputs = {entry.tags[0].value: entry.dataset for entry in run.inputs.dataset_inputs}
        assert sorted(inputs) == ["test", "training", "validation"]
        assert {dataset.name for dataset in inputs.values()} == {"hamlet"}
        assert all("pg2265.txt" in json.loads(dataset.source)["url"] for dataset in inputs.values())
        assert len({dataset.digest for dataset in inputs.values()}) == 3
        digests.append({context: dataset.digest for context, dataset in inputs.items()})
    assert digests[0] == digests[1]  # the same split of the same text: the same datasets

    best = best_model(tracked, tracked.runs["8"])
    linked = {metric.key: metric.dataset_digest for metric in best.metrics}
    assert linked["val_loss"] == linked["val_bpc"] == digests[0]["validation"]
    assert linked["test_loss"] == linked["test_bpc"] == digests[0]["test"]


def test_system_metrics_are_sampled_during_training(tracked):
    for run in tracked.runs.values():
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= run.data.metrics.keys()


def test_every_kept_checkpoint_and_best_is_a_logged_model_with_its_val_loss(tracked, monkeypatch):
    client, run = tracked.client, tracked.runs["8"]
    steps = {output.model_id: output.step for output in run.outputs.model_outputs}
    assert sorted(steps.values())[:3] == [40, 80, 120] and len(steps) >= 3
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_loss")}
    models = [client.get_logged_model(model_id) for model_id in steps]
    for model in models:
        [val_loss] = [m for m in model.metrics if m.key == "val_loss"]
        assert val_loss.step == steps[model.model_id] and val_loss.value == history[val_loss.step]
        assert model.name.startswith(f"hamlet-1x8-lstm-step{val_loss.step}") and model.source_run_id == run.info.run_id
        assert model.params["lstm_size"] == "8" and model.status == LoggedModelStatus.READY
    best = best_model(tracked, run)
    assert best.name.endswith("-best") and best.tags["checkpoint"] in ("best.pt", f"i{steps[best.model_id]}_l8_v"
                                                                        f"{history[steps[best.model_id]]:.4f}.pt")
    assert min(val_loss(model) for model in models) == val_loss(best) == run.data.metrics["best_val_loss"]

    # the registered version is that very model, not a copy
    [version] = client.search_model_versions(f"name='charrnn-hamlet' and run_id='{run.info.run_id}'")
    assert version.source == f"models:/{best.model_id}"
    # the Models tab's ranking: by val_loss across the runs, the wider run's best first
    ranked = client.search_logged_models([tracked.experiment.experiment_id],
                                         order_by=[{"field_name": "metrics.val_loss", "ascending": True}])
    assert ranked[0].model_id == best_model(tracked, tracked.runs["32"]).model_id
    assert len(ranked) == len(steps) + len(tracked.runs["32"].outputs.model_outputs)

    # and every logged model is servable, a kept checkpoint too
    kept = next(model for model in models if steps[model.model_id] == 40)
    store = f"sqlite:///{tracked.root}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # put back after the test, as mlflow.set_tracking_uri sets it
    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(f"models:/{kept.model_id}")
    text = model.predict(pd.DataFrame({"prime": ["To"], "length": [20]}))[0]
    assert text.startswith("To") and len(text) == 22


def test_each_version_carries_its_history_and_the_champion_its_predecessor(tracked):
    client = tracked.client
    versions = {str(v.version): v for v in client.search_model_versions("name='charrnn-hamlet'")}
    assert sorted(versions) == ["1", "2"]
    for version, (size, experiment) in {"1": ("8", ""), "2": ("32", "wider")}.items():
        tags, run = versions[version].tags, tracked.runs[size]
        assert float(tags["val_bpc"]) == pytest.approx(run.data.metrics["best_val_loss"] / math.log(2), abs=1e-4)
        assert float(tags["test_bpc"]) == pytest.approx(run.data.metrics["test_bpc"], abs=1e-4)
        assert tags["params"].startswith(f"corpus=hamlet, lstm_size={size}, num_layers=1,")
        assert tags["git_commit"] == run.data.tags["git_commit"] and len(tags["git_commit"]) == 40
        assert tags["dvc_exp_name"] == experiment
        assert f"lstm_size={size}" in versions[version].description and tags["test_bpc"] in versions[version].description
    assert versions["1"].tags["champion_replaced"] == "none"
    champion = client.get_model_version_by_alias("charrnn-hamlet", CHAMPION)
    assert str(champion.version) == "2" and champion.tags["champion_replaced"] == "1"
    assert datetime.fromisoformat(champion.tags["champion_since"]) >= datetime.fromisoformat(
        versions["1"].tags["champion_since"])


def best_model(tracked, run):
    """The logged model of the run's best.pt: the one the register stage registered."""
    [version] = tracked.client.search_model_versions(f"name='charrnn-hamlet' and run_id='{run.info.run_id}'")
    return tracked.client.get_logged_model(version.source.removeprefix("models:/"))


def val_loss(model):
    return next(m.value for m in model.metrics if m.key == "val_loss")
