"""Checkpoints as MLflow models: each checkpoint the train stage keeps, and best.pt, is logged as a model
of the run at its step, with the val loss of that step linked to it, so the Models tab ranks checkpoints
across runs and experiments. Every one is a servable pyfunc "model from code" (served_model.py) that
carries only the package modules it needs; the register stage registers the one of best.pt.
"""

import shutil
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import LoggedModelOutput, Metric

from charrnn import checkpoint, modules
from charrnn.pyfunc import SIGNATURE

EXAMPLE = pd.DataFrame({"prime": ["Far"], "length": [100], "temperature": [0.8], "top_k": [5], "seed": [0]})
REQUIREMENTS = ["torch==2.13.0", "numpy", "pandas", "tqdm", "pyyaml"]
LINKED = ("val_loss", "val_bpc")  # the run's metrics of a checkpoint's step that its model carries


def log_checkpoints(run, folder):
    """Log the checkpoints kept in `folder`/checkpoints and `folder`/best.pt (unless a kept one holds its
    step: the same weights) as models of `run` (a tracking.PipelineRun); return best.pt's model id."""
    folder = Path(folder)
    by_step = {checkpoint.load(path)["step"]: path for path in (folder / "checkpoints").glob("*.pt")}
    best_step = checkpoint.load(folder / "best.pt")["step"]
    by_step.setdefault(best_step, folder / "best.pt")
    history = {key: {m.step: m for m in run.client.get_metric_history(run.id, key)} for key in LINKED}
    ids = {step: log_checkpoint(run, path, step, best=step == best_step, history=history)
           for step, path in sorted(by_step.items())}
    return ids[best_step]


def log_checkpoint(run, path, step, best, history):
    """Log one checkpoint as a model of the run at `step`, named by what it is (e.g.
    hamlet-1x32-lstm-step100-best), with the run's params and the metrics of `history` at that step."""
    payload = checkpoint.load(path)
    config = payload["model_config"]
    name = (f"{payload['vocab']['corpus']}-{config['num_layers']}x{config['lstm_size']}-{config['cell']}"
            f"-step{step}{'-best' if best else ''}")
    source = run.client.get_run(run.id)
    model = run.client.create_logged_model(source.info.experiment_id, name=name, source_run_id=run.id,
                                           params=source.data.params, tags={"checkpoint": path.name})
    with tempfile.TemporaryDirectory() as folder:
        mlflow.pyfunc.log_model(
            name=name, python_model=str(modules.PACKAGE_DIR / "served_model.py"),
            artifacts={"checkpoint": str(path)}, code_paths=[served_code(Path(folder))],
            signature=SIGNATURE, input_example=EXAMPLE, pip_requirements=REQUIREMENTS, model_id=model.model_id,
        )
    run.client.log_outputs(run.id, [LoggedModelOutput(model.model_id, step)])
    # the very metrics the run logged at this step (same timestamp: the run's history gains no copy),
    # now also linked to the model and to the dataset they were measured on
    run.client.log_batch(run.id, metrics=[
        Metric(m.key, m.value, m.timestamp, m.step, model.model_id, *run.dataset_of(m.key))
        for m in (history[key][step] for key in history if step in history[key])])
    return model.model_id


def served_code(folder):
    """A copy of the package with only the modules the served model imports (the model carries its code)."""
    package = folder / "charrnn"
    package.mkdir()
    for file_name in modules.closure("served_model"):
        shutil.copyfile(modules.PACKAGE_DIR / file_name, package / file_name)
    return str(package)
