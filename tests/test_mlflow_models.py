"""What the MLflow UI and registry show of a pipeline run, for real (the project's sqlite store): the
training view, the datasets and system metrics."""

import json

import pytest
from mlflow import MlflowClient

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


def test_system_metrics_are_sampled_during_training(tracked):
    for run in tracked.runs.values():
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= run.data.metrics.keys()
