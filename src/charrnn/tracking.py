"""MLflow runs: one run per pipeline execution across the stages (the registry is in registry.py).

Each stage is its own process: `train` creates the run and the stage writes its id to a small
file; later stages reopen the run by id, log, and close it again. The store is the repository's
`mlruns/mlflow.db` (the real root, also for DVC's queued experiments, via DVC_ROOT) unless
MLFLOW_TRACKING_URI names another store or server.
"""

import fcntl
import json
import os
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from charrnn import project_root
from charrnn.errors import CharRNNError
from charrnn.evaluate import PROTOCOL_ID

RUN_FILE = "models/mlflow_run.json"  # written by the train stage, read by the later ones


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


def experiment_name(p, corpus_name):
    return p["tracking.experiment"] or f"charrnn-{corpus_name}"


def split_id(p, vocab):
    """The corpus bytes and the split fractions."""
    return f"{vocab.sha256[:12]}:{p['train_frac']:g}/{p['val_frac']:g}/{p['test_frac']:g}"


def comparability(p, vocab):
    """What must match for two val losses to be compared: the split (corpus bytes and fractions) and
    the evaluation protocol that measured them. Tags of each registered version."""
    return {"split": split_id(p, vocab), "eval_protocol": PROTOCOL_ID}


class PipelineRun:
    """One stage's hold on the pipeline's MLflow run: a context manager that closes it FINISHED, or
    FAILED on an error, or KILLED on an interrupt, so no run is left 'running'."""

    def __init__(self, client, run_id):
        self.client, self.id = client, run_id

    @classmethod
    def reopen(cls, run_id=None):
        """The run whose id is given, or else the one named in RUN_FILE."""
        if run_id is None:
            try:
                run_id = json.loads(Path(RUN_FILE).read_text())["run_id"]
            except (OSError, ValueError, KeyError):
                raise CharRNNError(f"{RUN_FILE} is missing or unreadable (run the train stage first)") from None
        client = connect()
        try:
            client.update_run(run_id, status="RUNNING")
        except MlflowException as err:
            raise CharRNNError(f"MLflow run {run_id} not found in {redacted(tracking_uri())} ({err.message[:120]})") from None
        return cls(client, run_id)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
        self.client.set_terminated(self.id, status)

    def log_metrics(self, metrics, step=0):
        now = int(time.time() * 1000)
        self.client.log_batch(self.id, metrics=[Metric(key, float(value), now, step)
                                                for key, value in metrics.items()])

    def log_artifact(self, path, folder=None):
        self.client.log_artifact(self.id, str(path), folder)


class TrainingTracker:
    """What the training loop reports to: `start` opens (or, on resume, continues) the run.

    As a context manager it closes the run, if one was started, as PipelineRun does.
    """

    def __init__(self, p, vocab):
        self.p, self.vocab, self.run = p, vocab, None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.run is not None:
            self.run.__exit__(*exc_info)

    def start(self, resumed_run_id):
        client = connect()
        if resumed_run_id is not None:
            try:
                client.get_run(resumed_run_id)
            except MlflowException:
                print(f"MLflow run {resumed_run_id} of the resumed training is not in {redacted(tracking_uri())}: "
                      "starting a new run")
            else:
                self.run = PipelineRun.reopen(resumed_run_id)
                return self.run.id
        exp_name = experiment_name(self.p, self.vocab.corpus)
        experiment = client.get_experiment_by_name(exp_name)
        if experiment is None:
            local = tracking_uri() == f"sqlite:///{local_store() / 'mlflow.db'}"
            artifacts = (local_store() / "artifacts").as_uri() if local else None  # a server picks its own
            experiment_id = client.create_experiment(exp_name, artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
        dvc_exp = os.environ.get("DVC_EXP_NAME", "")
        name = dvc_exp or f"{self.vocab.corpus}-{self.p['num_layers']}x{self.p['lstm_size']}-{self.p['cell']}"
        tags = {"git_commit": _git_commit(), "corpus": self.vocab.corpus, "corpus_sha256": self.vocab.sha256,
                "device": self.p["device"], "dvc_exp_name": dvc_exp, **comparability(self.p, self.vocab)}
        run = client.create_run(experiment_id, run_name=name, tags=tags)
        self.run = PipelineRun(client, run.info.run_id)
        client.log_batch(self.run.id, params=[Param(key, str(value)[:6000]) for key, value in self.p.items()])
        return self.run.id

    def log(self, row):
        step = row["step"]
        self.run.log_metrics({key: value for key, value in row.items() if key != "step"}, step=step)


def log_training(run, metrics, history, vocab_path):
    """After training: summary metrics, the vocabulary and the loss curves as an image."""
    run.log_metrics({key: value for key, value in metrics.items() if isinstance(value, (int, float))})
    run.client.set_tag(run.id, "device", metrics["device"])
    run.log_artifact(vocab_path)
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "loss.png"
        _plot_losses(history, image)
        run.log_artifact(image, "plots")


def _plot_losses(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in history]
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(steps, [row["train_loss"] for row in history], label="train")
    axes.plot(steps, [row["val_loss"] for row in history], label="val")
    axes.set(xlabel="step", ylabel="loss (nats/char)", title="charrnn loss")
    axes.legend()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def _git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except OSError:
        return "unknown"
