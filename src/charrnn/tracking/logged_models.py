"""Checkpoints as MLflow models (the log_models stage, after train and evaluate): each checkpoint the
train stage kept, and best.pt, is logged as a model of the pipeline's run at its step, with the val
loss of that step linked to it (and best.pt's model also the test metrics), so the Models tab ranks
checkpoints across runs and experiments. Every one is a servable pyfunc "model from code"
(charrnn/serving/) that carries only the package modules it needs; the register stage registers the
one of best.pt. The run also gets its loss curves as a picture and the vocabulary.

The stage reruns when the serving or generation code changes, on the same training run: the models
it logged before are deleted first, so a run never lists two models of one checkpoint.
"""

import csv
import shutil
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import LoggedModelOutput, Metric

from charrnn import modules
from charrnn.core import checkpoint
from charrnn.params import SCHEMA
from charrnn.serving.pyfunc import SIGNATURE
from charrnn.serving.request_rules import default_top_k
from charrnn.tracking.plots import plot_losses
from charrnn.tracking.runs import label, model_safe

REQUIREMENTS = ["torch==2.13.0", "numpy", "pandas", "tqdm", "pyyaml"]
LINKED = ("loss/val", "loss/val_bpc")  # the run's curves whose point at a checkpoint's step its model carries
LINKED_TO_BEST = ("test_loss", "test_bpc", "test_perplexity")  # and those best.pt's model carries too
SERVED_MODEL = "charrnn.serving.served_model"


def log_run_files(run, loss_csv, vocab_path):
    """The loss curves of `loss_csv` as plots/loss.png, and the vocabulary file, as artifacts of the run."""
    with open(loss_csv, encoding="utf-8", newline="") as f:
        history = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(f)]
    run.log_artifact(vocab_path)
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "loss.png"
        plot_losses({"": history}, image)
        run.log_artifact(image, "plots")


def log_checkpoints(run, folder):
    """Log the checkpoints kept in `folder`/checkpoints and `folder`/best.pt (unless a kept one holds its
    step: the same weights) as models of `run` (a tracking.runs.PipelineRun), in place of any the run
    has already; return {"best_model_id", "models": {step: model id}}."""
    found = checkpoint.run_checkpoints(folder)  # each read once; best.pt last
    by_step = {}  # step: (path, payload), a kept checkpoint first where best.pt holds its step
    for path, payload in found.items():
        by_step.setdefault(payload["step"], (path, payload))
    best_step = found[Path(folder) / "best.pt"]["step"]
    source = run.client.get_run(run.id)
    delete_models_of(run, source.info.experiment_id)
    history = {key: {m.step: m for m in run.client.get_metric_history(run.id, key)} for key in LINKED}
    test_metrics = [m for key in LINKED_TO_BEST for m in run.client.get_metric_history(run.id, key)[-1:]]
    ids = {}
    for step, (path, payload) in sorted(by_step.items()):
        linked = [history[key][step] for key in LINKED if step in history[key]]
        linked += test_metrics if step == best_step else []
        ids[step] = log_checkpoint(run, source, path, payload, best=step == best_step, linked=linked)
    return {"best_model_id": ids[best_step], "models": {str(step): model_id for step, model_id in ids.items()}}


def delete_models_of(run, experiment_id):
    """Delete the models logged from `run` so far (by an earlier log_models of the same training)."""
    for model in run.client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run.id}'"):
        run.client.delete_logged_model(model.model_id)


def log_checkpoint(run, source, path, payload, best, linked):
    """Log one checkpoint (`payload`, read from `path`) as a model of the run at its step, named by what it
    is (e.g. hamlet-1x32-lstm-step100-best), with the params of `source` (the run's MLflow record) and
    the run's metrics `linked` to it."""
    step = payload["step"]
    name = model_safe(
        f"{label(payload['vocab']['corpus'], payload['model_config'])}-step{step}{'-best' if best else ''}"
    )
    model = run.client.create_logged_model(
        source.info.experiment_id,
        name=name,
        source_run_id=run.id,
        params=source.data.params,
        tags={"checkpoint": path.name},
    )
    with tempfile.TemporaryDirectory() as folder:
        mlflow.pyfunc.log_model(
            name=name,
            input_example=example_input(payload["vocab"]["chars"]),
            model_id=model.model_id,
            **served_model(path, Path(folder)),
        )
    run.client.log_outputs(run.id, [LoggedModelOutput(model.model_id, step)])
    # the very metrics the run logged (same timestamp and step: the run's history gains no copy), now
    # also linked to the model and to the dataset they were measured on
    run.client.log_batch(
        run.id,
        metrics=[Metric(m.key, m.value, m.timestamp, m.step, model.model_id, *run.dataset_of(m.key)) for m in linked],
    )
    return model.model_id


def example_input(chars):
    """A request the model answers, shown with it: the default prime where the vocabulary `chars` has its
    characters (else its first letters), top_k at most the vocabulary's size."""
    prime = SCHEMA["sample.prime"].default
    if not set(prime) <= set(chars):
        prime = "".join([char for char in chars if char.isalpha()][:3] or chars[-1:])
    top_k = default_top_k(len(chars))
    return pd.DataFrame({"prime": [prime], "length": [100], "temperature": [0.8], "top_k": [top_k], "seed": [0]})


def served_model(path, folder):
    """The keywords of mlflow.pyfunc.log_model/save_model that make checkpoint `path` a served model,
    its code copied under `folder`."""
    return dict(
        python_model=str(modules.module_file(SERVED_MODEL)),
        artifacts={"checkpoint": str(path)},
        code_paths=[served_code(folder)],
        signature=SIGNATURE,
        pip_requirements=REQUIREMENTS,
    )


def served_code(folder):
    """A copy of the package with only the modules the served model imports (the model carries its code)."""
    package = folder / modules.PACKAGE
    for file_name in modules.closure(SERVED_MODEL):
        (package / file_name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(modules.PACKAGE_DIR / file_name, package / file_name)
    return str(package)
