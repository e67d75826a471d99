"""The MLflow model registry: each trained best.pt a version of charrnn-<corpus>, the alias `champion`
on the best comparable one, and models loaded back by URI."""

import shutil
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from charrnn import modules
from charrnn.errors import CharRNNError
from charrnn.pyfunc import SIGNATURE
from charrnn.tracking import connect, redacted, tracking_uri

CHAMPION = "champion"


def model_name(corpus_name):
    """One registered model per corpus: validation losses on different texts are never compared."""
    return f"charrnn-{corpus_name}"


def register(run, best_path, corpus_name, val_loss, key):
    """Log best.pt as a pyfunc model in the run and register it as a new version tagged with its
    val loss and comparability `key`; return the version."""
    name = model_name(corpus_name)
    example = pd.DataFrame({"prime": ["Far"], "length": [100], "temperature": [0.8], "top_k": [5], "seed": [0]})
    with tempfile.TemporaryDirectory() as folder, mlflow.start_run(run_id=run.id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(modules.PACKAGE_DIR / "served_model.py"),
            artifacts={"checkpoint": str(best_path)}, code_paths=[served_code(Path(folder))],
            signature=SIGNATURE, input_example=example,
            pip_requirements=["torch==2.13.0", "numpy", "pandas", "tqdm", "pyyaml"],
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    for tag, value in {"val_loss": repr(float(val_loss)), **key, "run_id": run.id}.items():
        run.client.set_model_version_tag(name, version, tag, value)
    return version


def served_code(folder):
    """A copy of the package with only the modules the served model imports (the model carries its code)."""
    package = folder / "charrnn"
    package.mkdir()
    for file_name in modules.closure("served_model"):
        shutil.copyfile(modules.PACKAGE_DIR / file_name, package / file_name)
    return str(package)


def promote(client, name, key, dry_run=False, switch_split=False):
    """Give `champion` to the lowest-val-loss version of `name` among those with the comparability
    `key` (split and evaluation protocol); print the decision.

    A champion measured on another split or by another protocol stays unless `switch_split`: such
    losses are not comparable, and a quick experiment on another split must not dethrone it.
    Idempotent. Returns (champion version, its val loss).
    """
    versions = [v for v in client.search_model_versions(f"name='{name}'")
                if all(v.tags.get(tag) == value for tag, value in key.items()) and "val_loss" in v.tags]
    if not versions:
        raise CharRNNError(f"no version of {name} with {_described(key)} to promote")
    best = min(versions, key=lambda v: (float(v.tags["val_loss"]), int(v.version)))
    best_loss = float(best.tags["val_loss"])
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    newest = max(versions, key=lambda v: int(v.version))
    print(f"{name}: newest version {newest.version} val {float(newest.tags['val_loss']):.4f}; "
          f"best with {_described(key)}: version {best.version} val {best_loss:.4f}")
    current_key = {tag: current.tags.get(tag) for tag in key} if current is not None else key
    if current_key != key and not switch_split:
        print(f"{CHAMPION} stays on version {current.version} ({_described(current_key)}): val losses of "
              "different splits or evaluation protocols are not compared; `charrnn promote --switch-split` "
              "moves it to this one's best")
        return str(current.version), float(current.tags.get("val_loss", "nan"))
    if current is not None and str(current.version) == str(best.version):  # MLflow mixes int and str
        print(f"{CHAMPION} stays on version {best.version}")
    else:
        was = (f"version {current.version} (val {float(current.tags.get('val_loss', 'nan')):.4f})"
               if current is not None else "no version")
        verb = "would move" if dry_run else "moves"
        print(f"{CHAMPION} {verb} from {was} to version {best.version} (val {best_loss:.4f})")
        if not dry_run:
            client.set_registered_model_alias(name, CHAMPION, best.version)
    return str(best.version), best_loss


def download_checkpoint(model_uri):
    """The best.pt inside a logged model, e.g. models:/charrnn-anna@champion, as a local path."""
    connect()
    try:
        folder = mlflow.artifacts.download_artifacts(artifact_uri=model_uri)
    except MlflowException as err:
        raise CharRNNError(f"cannot load {model_uri} from {redacted(tracking_uri())}: {err.message[:200]}") from None
    found = sorted(Path(folder).glob("artifacts/*.pt"))
    if not found:
        raise CharRNNError(f"{model_uri} holds no charrnn checkpoint")
    return found[0]


def _described(key):
    return ", ".join(f"{name} {value}" for name, value in key.items())
