"""What the MLflow UI and registry show of a pipeline run, for real (the project's sqlite store): the
training view, the datasets, system metrics, every kept checkpoint as a logged model, the registry's
history of each version and of the champion, the samples table, and `charrnn compare`."""

import json
import math
import os
from datetime import datetime
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from charrnn.core import checkpoint
from charrnn.generation.steppers import generation_precision as resolve
from charrnn.tracking.registry import CHAMPION

from helpers.configs import tiny_corpus, tiny_params
from helpers.running import assert_clean_error, charrnn


def test_experiments_are_tagged_as_model_training(built, tmp_path, monkeypatch):
    assert built.experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    # a new experiment has the tag from the start, and one made before charrnn set it gets it with its next run
    from charrnn.tracking.live import TrainingTracker

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    older = client.create_experiment("charrnn-older")
    train_ids, val_ids, vocab = tiny_corpus()
    for p in (tiny_params(), tiny_params(**{"tracking.experiment": "charrnn-older"})):
        with TrainingTracker(p, vocab) as tracker:
            tracker.start(None)
    for experiment in (client.get_experiment_by_name("charrnn-tiny"), client.get_experiment(older)):
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_splits_are_the_runs_datasets_and_metrics_link_to_them(built):
    digests = []
    for run in built.runs.values():
        inputs = {entry.tags[0].value: entry.dataset for entry in run.inputs.dataset_inputs}
        assert sorted(inputs) == ["test", "training", "validation"]
        assert {dataset.name for dataset in inputs.values()} == {"hamlet"}
        assert all("pg2265.txt" in json.loads(dataset.source)["url"] for dataset in inputs.values())
        assert len({dataset.digest for dataset in inputs.values()}) == 3
        digests.append({context: dataset.digest for context, dataset in inputs.items()})
    assert all(digest == digests[0] for digest in digests)  # the same split of the same text: the same datasets

    best = best_model(built, built.runs["8"])
    linked = {metric.key: metric.dataset_digest for metric in best.metrics}
    assert linked["loss/val"] == linked["loss/val_bpc"] == digests[0]["validation"]
    assert linked["test_loss"] == linked["test_bpc"] == digests[0]["test"]


def test_system_metrics_are_sampled_during_training(built):
    for run in built.runs.values():
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= run.data.metrics.keys()


def test_every_kept_checkpoint_and_best_is_a_logged_model_with_its_val_loss(built, monkeypatch):
    client, run = built.client, built.runs["8"]
    steps = {output.model_id: output.step for output in run.outputs.model_outputs}
    assert sorted(steps.values())[:3] == [40, 80, 120] and len(steps) >= 3
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss/val")}
    models = [client.get_logged_model(model_id) for model_id in steps]
    for model in models:
        [linked] = [m for m in model.metrics if m.key == "loss/val"]
        assert linked.step == steps[model.model_id] and linked.value == history[linked.step]
        assert model.name.startswith(f"hamlet-1x8-lstm-step{linked.step}") and model.source_run_id == run.info.run_id
        assert model.params["lstm_size"] == "8" and model.status == LoggedModelStatus.READY
    best = best_model(built, run)
    assert best.name.endswith("-best") and best.tags["checkpoint"] in (
        "best.pt",
        f"i{steps[best.model_id]}_l8_v{history[steps[best.model_id]]:.4f}.pt",
    )
    assert min(val_loss(model) for model in models) == val_loss(best) == run.data.metrics["best_val_loss"]

    # the registered version is that very model, not a copy
    [version] = client.search_model_versions(f"name='charrnn-hamlet' and run_id='{run.info.run_id}'")
    assert version.source == f"models:/{best.model_id}"
    # the Models tab's ranking: by val_loss across the runs, the wider run's best first
    ranked = client.search_logged_models(
        [built.experiment.experiment_id], order_by=[{"field_name": "metrics.loss/val", "ascending": True}]
    )
    assert ranked[0].model_id == best_model(built, built.runs["32"]).model_id
    assert len(ranked) == sum(len(run.outputs.model_outputs) for run in built.runs.values())

    # and every logged model is servable, a kept checkpoint too
    kept = next(model for model in models if steps[model.model_id] == 40)
    store = f"sqlite:///{built.root}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # put back after the test, as mlflow.set_tracking_uri sets it
    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(f"models:/{kept.model_id}")
    text = model.predict(pd.DataFrame({"prime": ["To"], "length": [20]}))[0]
    assert text.startswith("To") and len(text) == 22
    assert model.metadata.get_params_schema().to_dict() == [
        {"name": "precision", "type": "string", "default": "auto", "shape": None}
    ]
    int8 = model.predict(pd.DataFrame({"prime": ["To"], "length": [20]}), params={"precision": "int8"})[0]
    assert int8.startswith("To") and len(int8) == 22
    with pytest.raises(mlflow.exceptions.MlflowException, match="precision must be one of"):
        model.predict(pd.DataFrame({"prime": ["To"], "length": [20]}), params={"precision": "fp16"})


def test_each_version_carries_its_history_and_the_champion_its_predecessor(built):
    client = built.client
    versions = {str(v.version): v for v in client.search_model_versions("name='charrnn-hamlet'")}
    assert sorted(versions) == ["1", "2", "3"] and built.versions["8"] == "1"  # the queued two in either order
    for size, experiment in {"8": None, "32": "wider", "16": "narrow"}.items():
        version, run = versions[built.versions[size]], built.runs[size]
        tags = version.tags
        assert float(tags["val_bpc"]) == pytest.approx(run.data.metrics["best_val_loss"] / math.log(2), abs=1e-4)
        assert float(tags["test_bpc"]) == pytest.approx(run.data.metrics["test_bpc"], abs=1e-4)
        assert tags["params"].startswith(f"corpus=hamlet, lstm_size={size}, num_layers=1,")
        assert tags["git_commit"] == run.data.tags["mlflow.source.git.commit"] and len(tags["git_commit"]) == 40
        assert tags.get("dvc_exp_name") == experiment  # a plain `dvc repro` has none: no empty tag
        assert f"lstm_size={size}" in version.description and tags["test_bpc"] in version.description
    assert versions["1"].tags["champion_replaced"] == "none"
    champion = client.get_model_version_by_alias("charrnn-hamlet", CHAMPION)
    assert str(champion.version) == built.versions["32"]
    assert champion.tags["champion_replaced"] in (built.versions["8"], built.versions["16"])  # who held it before
    assert datetime.fromisoformat(champion.tags["champion_since"]) >= datetime.fromisoformat(
        versions["1"].tags["champion_since"]
    )


def test_the_samples_are_a_table(built):
    run = built.runs["8"]
    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="samples.json", tracking_uri=f"sqlite:///{built.root}/mlruns/mlflow.db"
    )
    table = json.loads(Path(path).read_text())
    assert table["columns"] == ["checkpoint", "step", "prime", "seed", "temperature", "precision", "text"]
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert [row["step"] for row in rows][:3] == [40, 80, 120] and rows[-1]["checkpoint"] == "best"
    assert all(row["prime"] == "Far" and row["text"].startswith("Far") and row["seed"] == 1234 for row in rows)
    assert {row["precision"] for row in rows} == {resolve("auto", "cpu")}  # sample.precision auto, resolved


def compare(built, *args, columns=60):
    """`charrnn compare ARGS` in the built project, on a terminal `columns` wide."""
    width = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        return charrnn("compare", *args, cwd=built.root)
    finally:
        os.environ.pop("COLUMNS") if width is None else os.environ.update(COLUMNS=width)


def texts(output):
    """[(heading, text)] of compare's output on a narrow terminal (one text after the other)."""
    assert output.startswith("== ") and output.endswith("\n"), output
    return [tuple(block.split("\n", 1)) for block in output[len("== ") : -1].split("\n\n== ")]


def test_compare_two_versions_side_by_side(built):
    wider = f"models:/charrnn-hamlet/{built.versions['32']}"
    different = compare(built, "models:/charrnn-hamlet/1", wider, "--prime", "To be", "--length", "120", "--seed", "3")
    assert different.returncode == 0, different.stderr
    (head_1, text_1), (head_2, text_2) = texts(different.stdout)
    assert head_1.startswith("charrnn-hamlet version 1: val ") and ", 1x8 lstm," in head_1
    assert head_2.startswith(f"charrnn-hamlet version {built.versions['32']}: val ") and ", 1x32 lstm," in head_2
    assert text_1.startswith("To be") and text_2.startswith("To be") and len(text_1) == len(text_2) == 125
    assert text_1 != text_2

    same = compare(built, wider, "models:/charrnn-hamlet@champion", "--length", "120")
    (head_a, text_a), (head_b, text_b) = texts(same.stdout)
    assert head_b.startswith(f"charrnn-hamlet version {built.versions['32']} (@champion): val ") and text_a == text_b
    assert texts(compare(built, "models/best.pt", wider, "--length", "120").stdout)[0][1] == text_a
    by_precision = {
        precision: texts(compare(built, "models/best.pt", wider, "--length", "300", "--precision", precision).stdout)
        for precision in ("int8", "fp32")
    }
    assert by_precision["int8"][0][1] == by_precision["int8"][1][1] != by_precision["fp32"][0][1]

    wide = compare(built, "models:/charrnn-hamlet/1", wider, columns=200).stdout.splitlines()
    assert wide[0].startswith("== charrnn-hamlet version 1: val ")
    assert f" | == charrnn-hamlet version {built.versions['32']}: val " in wide[0]
    assert all(len(line) <= 200 for line in wide) and wide[2].startswith("Far") and " | Far" in wide[2]


def test_compare_errors_are_one_line(built, tmp_path):
    assert_clean_error(
        compare(built, "models:/charrnn-hamlet/9", "models:/charrnn-hamlet/1"), "cannot load models:/charrnn-hamlet/9"
    )  # three versions exist
    assert_clean_error(
        compare(built, "models:/charrnn-hamlet@nobody", "models:/charrnn-hamlet/1"),
        "cannot load models:/charrnn-hamlet@nobody",
    )
    assert_clean_error(
        compare(built, "modles:/charrnn-hamlet/1", "models:/charrnn-hamlet/1"),
        "'modles:/charrnn-hamlet/1' is neither a model URI",
    )
    other = checkpoint.load(built.root / "models/best.pt")
    other["vocab"] = {**other["vocab"], "corpus": "elsinore", "sha256": "1" * 64}
    checkpoint.save(tmp_path / "other.pt", other)
    assert_clean_error(
        compare(built, str(tmp_path / "other.pt"), "models:/charrnn-hamlet/1"),
        "learned 'elsinore'",
        "models of different corpora are not compared",
    )


def best_model(built, run):
    """The logged model of the run's best.pt: the one the register stage registered."""
    [version] = built.client.search_model_versions(f"name='charrnn-hamlet' and run_id='{run.info.run_id}'")
    return built.client.get_logged_model(version.source.removeprefix("models:/"))


def val_loss(model):
    return next(m.value for m in model.metrics if m.key == "loss/val")
