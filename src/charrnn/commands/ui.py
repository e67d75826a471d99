"""`charrnn ui`: MLflow's UI on the project's store, with the links that open where a user looks.

MLflow 3's UI opens an experiment on its GenAI pages (traces, an overview of token usage) unless the
link asks for the model-training view (`workflowType=machine_learning`); the experiment tag
`mlflow.experimentKind` does not change that in MLflow 3.17. So the links name the view: the training
runs as charts (their loss curves first, see tracking/live.py), the logged checkpoints, the champion.
"""

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from urllib.parse import urlsplit

from mlflow.exceptions import MlflowException

from charrnn.commands.hosts import is_loopback, link_host, warn_if_exposed
from charrnn.errors import CharRNNError
from charrnn.tracking import registry, store

TRAINING_VIEW = "workflowType=machine_learning"
START_SECONDS = 120  # a first start migrates a new sqlite store's schema: tens of seconds on a slow machine


def links(url, client, experiment_name, model_name):
    """[(what, link)] into the UI at `url`: the experiment's training runs as charts and its logged
    models, and the champion's page in the registry; what does not exist yet is left out."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    runs = f"{url}/#/experiments/{experiment.experiment_id}"
    found = [
        ("training runs (loss curves)", f"{runs}/runs?{TRAINING_VIEW}&compareRunsMode=CHART"),
        ("checkpoints (logged models)", f"{runs}/models?{TRAINING_VIEW}"),
    ]
    try:
        champion = client.get_model_version_by_alias(model_name, registry.CHAMPION)
    except MlflowException:  # no such model or alias yet
        return found
    return found + [
        (
            f"the champion, {model_name} version {champion.version}",
            f"{url}/#/models/{model_name}/versions/{champion.version}?{TRAINING_VIEW}",
        )
    ]


@contextmanager
def mlflow_server(tracking_uri, host="127.0.0.1", port=5000):
    """(URL of MLflow's UI on `tracking_uri`, a function that serves until the server stops): the
    tracking server it names (a link never carries its credentials; nothing to serve: None), or else a
    new `mlflow server` on host:port, stopped when the block ends."""
    if tracking_uri.startswith(("http://", "https://")):
        parts = urlsplit(tracking_uri)
        yield f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path.rstrip('/')}", None
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as err:
            raise CharRNNError(f"cannot serve the UI on {host}:{port} ({err.strerror}): pass another --port") from None
    url = f"http://{link_host(host)}:{port}"
    warn_if_exposed(
        host,
        port,
        "can read, change and delete this project's MLflow runs, models and aliases "
        "(MLflow's server asks for no login)",
        "the UI",
    )
    # this machine's own names only: a web page that points a name of its own at this machine (DNS
    # rebinding) is refused; MLflow's default also lets in the private networks' addresses
    allowed = ["--allowed-hosts", ",".join(f"{name}:{port}" for name in ("localhost", "127.0.0.1", "[::1]"))]
    with tempfile.TemporaryFile("w+") as log:  # the server's own lines, for the one line of a failure
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                tracking_uri,
                "--host",
                host,
                "--port",
                str(port),
                "--workers",
                "1",
                *(allowed if is_loopback(host) else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def serve():
            server.wait()
            raise _exited(server, log)

        try:
            _wait_for(url, server, log)
            yield url, serve
        finally:
            server.terminate()
            server.wait(timeout=30)


def _exited(server, log):
    log.seek(0)
    lines = log.read().strip().splitlines() or ["no output"]
    return CharRNNError(f"mlflow server exited with status {server.returncode}: {lines[-1]}")


def _wait_for(url, server, log):
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise _exited(server, log)
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise CharRNNError(f"mlflow server on {url} did not answer within {START_SECONDS} s")


def ui(experiment_name, model_name, host, port):
    """Serve the UI (or name the tracking server's), print the links, and serve until Ctrl-C."""
    uri = store.tracking_uri()
    client = store.connect()  # a store that does not answer is one line in seconds, before any server starts
    with mlflow_server(uri, host, port) as (url, serve):
        found = links(url, client, experiment_name, model_name)
        print(f"MLflow UI on {store.redacted(uri)}: {url}")
        if not found:
            print(f"no experiment {experiment_name} there yet: run `dvc repro` first")
        for what, link in found:
            print(f"  {what}: {link}")
        if serve is None:
            return
        print("Ctrl-C stops it", flush=True)
        try:
            serve()
        except KeyboardInterrupt:
            return
