"""The MLflow store: the repository's own mlruns/mlflow.db (the real root, also for DVC's queued
experiments, via DVC_ROOT) unless MLFLOW_TRACKING_URI names another store or a tracking server.
Credentials in a URI are never printed.
"""

import fcntl
import os
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from charrnn import project_root
from charrnn.errors import CharRNNError


def local_store():
    """The project's own store: mlruns/ in the repository root."""
    return project_root() / "mlruns"


def redacted(uri):
    """The URI as it may be printed: any user:password@ (or token@) in it replaced by ***@."""
    if "@" not in urllib.parse.urlsplit(uri).netloc:
        return uri
    return _without_credentials(uri, "***@")


def _without_credentials(uri, replacement=""):
    """The URI with the user:password@ (or token@) part of its host replaced by `replacement`."""
    parts = urllib.parse.urlsplit(uri)
    return urllib.parse.urlunsplit(parts._replace(netloc=replacement + parts.netloc.rpartition("@")[2]))


def tracking_uri():
    """MLFLOW_TRACKING_URI if set (note: mlflow.set_tracking_uri sets it too), else the local store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    local_store().mkdir(exist_ok=True)
    return f"sqlite:///{local_store() / 'mlflow.db'}"


def connect():
    """An MlflowClient on the project's store; the fluent API points there too.

    A tracking server is asked for /health first, so an unreachable one is one clear error in
    seconds rather than minutes of MLflow's retries and a traceback.
    """
    uri = tracking_uri()
    # no progress bar per artifact in the stages' logs (logging a model with an input example loads it back)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if uri.startswith(("http://", "https://")):
        try:
            # asked without credentials: /health needs none, and urllib would take them for the host
            with urllib.request.urlopen(f"{_without_credentials(uri).rstrip('/')}/health", timeout=10):
                pass
        except OSError as err:
            raise CharRNNError(f"MLflow tracking server {redacted(uri)} is unreachable ({getattr(err, 'reason', err)}): "
                               "start it, or unset MLFLOW_TRACKING_URI to use mlruns/mlflow.db") from None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if not uri.startswith("sqlite:///"):
        return MlflowClient(uri, uri)
    # The first use of a sqlite store creates its tables; two queued experiments starting together must
    # not both try (the loser fails its migration), so the client is made and first used under a file lock.
    with open(Path(uri[len("sqlite:///"):]).parent / ".mlflow-init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(uri, uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    return client
