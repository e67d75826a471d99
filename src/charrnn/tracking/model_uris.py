"""Models loaded back by MLflow URI (models:/charrnn-anna@champion, a version, a logged model, runs:/...)
or as checkpoint files: for the commands and the play page, apart from the register stage's code."""

from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from charrnn.core import checkpoint
from charrnn.errors import CharRNNError
from charrnn.tracking.store import connect, redacted, scrubbed, tracking_uri


def download_checkpoint(model_uri):
    """The best.pt inside a logged model, e.g. models:/charrnn-anna@champion, as a local path."""
    connect()
    try:
        folder = mlflow.artifacts.download_artifacts(artifact_uri=model_uri)
    except MlflowException as err:
        raise CharRNNError(
            f"cannot load {model_uri} from {redacted(tracking_uri())}: {scrubbed(err.message)[:200]}"
        ) from None
    found = sorted(Path(folder).glob("artifacts/*.pt"))
    if not found:
        raise CharRNNError(f"{model_uri} holds no charrnn checkpoint")
    return found[0]


def load(spec):
    """(model, vocab, checkpoint payload, label) of a model URI (models:/charrnn-anna/1,
    models:/charrnn-anna@champion, a logged model's models:/m-..., runs:/...) or a checkpoint file; the
    label says which version it is (version_of)."""
    if "://" in spec or spec.startswith(("models:/", "runs:/")):
        path, label = download_checkpoint(spec), version_of(spec)
    elif Path(spec).is_file():
        path, label = Path(spec), spec
    else:
        raise CharRNNError(
            f"'{spec}' is neither a model URI (e.g. models:/charrnn-anna@champion) nor a checkpoint file"
        )
    model, vocab = checkpoint.load_model(path)
    return model, vocab, checkpoint.load(path), label


def version_of(model_uri):
    """A registry URI in words, e.g. 'charrnn-anna version 3 (@champion)'; any other URI as it is."""
    if not model_uri.startswith("models:/"):
        return model_uri
    name, _, alias = model_uri.removeprefix("models:/").partition("@")
    if alias:
        return f"{name} version {connect().get_model_version_by_alias(name, alias).version} (@{alias})"
    name, _, version = name.partition("/")
    return f"{name} version {version}" if version.isdigit() else model_uri
