"""The MLflow store: the repository's own mlruns/mlflow.db (the real root, also for DVC's queued
experiments, via DVC_ROOT) unless MLFLOW_TRACKING_URI names another store or a tracking server.
Credentials in a URI are never printed.
"""

import fcntl
import os
import re
import socket
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from charrnn import project_root
from charrnn.errors import CharRNNError

DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}  # the default port of each database scheme


def local_store():
    """The project's own store: mlruns/ in the repository root."""
    return project_root() / "mlruns"


# a query parameter whose value is a credential (?password=, ?access_token=, ?sig=...): its value is
# taken out of any text that may quote it; a printed URI hides every query value
SECRET_KEY = re.compile(r"pass|pwd|token|secret|key|auth|cred|sig", re.IGNORECASE)


def redacted(uri):
    """The URI as it may be printed: any user:password@ (or token@) in it replaced by ***@, and the value
    of each query parameter (?password=, ?token=, ...) by ***."""
    parts = urllib.parse.urlsplit(uri)
    if parts.query:
        hidden = [f"{key}=***" for key, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
        uri = urllib.parse.urlunsplit(parts._replace(query="&".join(hidden)))
    if "@" not in parts.netloc:
        return uri
    return _without_credentials(uri, "***@")


def _without_credentials(uri, replacement=""):
    """The URI with the user:password@ (or token@) part of its host replaced by `replacement`."""
    parts = urllib.parse.urlsplit(uri)
    return urllib.parse.urlunsplit(parts._replace(netloc=replacement + parts.netloc.rpartition("@")[2]))


def tracking_uri():
    """MLFLOW_TRACKING_URI if set (note: mlflow.set_tracking_uri sets it too), else the local store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        uri = os.environ["MLFLOW_TRACKING_URI"]
        try:
            urllib.parse.urlsplit(uri).port  # noqa: B018 (parsed for its errors: a bad host or port)
        except ValueError as err:
            # not printed: a URI that does not parse cannot have its credentials hidden
            raise CharRNNError(
                f"MLFLOW_TRACKING_URI is not a valid URI ({err}): e.g. http://host:5000 or sqlite:///path/mlflow.db"
            ) from None
        return uri
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
            raise CharRNNError(
                f"MLflow tracking server {redacted(uri)} is unreachable ({getattr(err, 'reason', err)}): "
                "start it, or unset MLFLOW_TRACKING_URI to use mlruns/mlflow.db"
            ) from None
    elif urllib.parse.urlsplit(uri).scheme.split("+")[0] in DATABASE_PORTS:
        _reach_database(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        if not uri.startswith("sqlite:///"):
            return _opened(uri)
        # The first use of a sqlite store creates its tables; two queued experiments starting together
        # must not both try (the loser fails its migration): the store is opened under a file lock.
        folder = Path(uri[len("sqlite:///") :]).parent
        if not folder.is_dir():
            raise CharRNNError(f"the MLflow store {redacted(uri)} is in a folder that does not exist ({folder})")
        with open(folder / ".mlflow-init.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return _opened(uri)
    except CharRNNError:
        raise
    except Exception as err:  # the store's own error (MLflow's, the database driver's): one line, no secrets
        line = scrubbed((str(err).strip().splitlines() or [type(err).__name__])[0], uri)
        raise CharRNNError(f"cannot use the MLflow store {redacted(uri)}: {line[:300]}") from None


def scrubbed(text, uri=None):
    """`text` (an error of MLflow's, which may quote the store's URI) without the credentials of `uri`
    (default: the tracking URI)."""
    uri = uri or tracking_uri()
    parts = urllib.parse.urlsplit(uri)
    secrets = [parts.password, *(value for key, value in urllib.parse.parse_qsl(parts.query) if SECRET_KEY.search(key))]
    text = text.replace(uri, redacted(uri))
    for secret in filter(None, secrets):
        text = text.replace(secret, "***")
    return text


def _reach_database(uri):
    """A database server that does not answer is one clear error in seconds (MLflow retries its
    connection for minutes, then prints a traceback)."""
    parts = urllib.parse.urlsplit(uri)
    address = (parts.hostname or "localhost", parts.port or DATABASE_PORTS[parts.scheme.split("+")[0]])
    try:
        socket.create_connection(address, timeout=10).close()
    except OSError as err:
        raise CharRNNError(
            f"the database server of the MLflow store {redacted(uri)} is unreachable "
            f"({err.strerror or err}): start it, or unset MLFLOW_TRACKING_URI to use "
            "mlruns/mlflow.db"
        ) from None


def _opened(uri):
    """A client on `uri`, used once, so that a store it cannot use fails here."""
    client = MlflowClient(uri, uri)
    client.search_experiments(max_results=1)
    client.search_registered_models(max_results=1)
    return client
