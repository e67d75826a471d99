"""MLflow runs: one run per pipeline execution across the stages (the registry is in registry.py).

Each stage is its own process: `train` creates the run and the stage writes its id to a small
file; later stages reopen the run by id, log, and close it again. The store is the repository's
`mlruns/mlflow.db` (the real root, also for DVC's queued experiments, via DVC_ROOT) unless
MLFLOW_TRACKING_URI names another store or server.
"""

import fcntl
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from charrnn import corpus, project_root
from charrnn.errors import CharRNNError
from charrnn.evaluate import PROTOCOL_ID, loss_metrics

RUN_FILE = "models/mlflow_run.json"  # written by the train stage, read by the later ones
# The tag by which the MLflow UI picks an experiment's view: this one opens on its Training runs.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# Each split as an MLflow dataset, by its context; a metric is linked to the split its name starts with.
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
SYSTEM_METRICS_INTERVAL = 10  # seconds between samples of CPU, memory (and GPU) during training


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


def experiment_name(p, corpus_name):
    return p["tracking.experiment"] or f"charrnn-{corpus_name}"


def split_id(p, vocab):
    """The corpus bytes and the split fractions."""
    return f"{vocab.sha256[:12]}:{p['train_frac']:g}/{p['val_frac']:g}/{p['test_frac']:g}"


def comparability(p, vocab):
    """What must match for two val losses to be compared: the split (corpus bytes and fractions) and
    the evaluation protocol that measured them. Tags of each registered version."""
    return {"split": split_id(p, vocab), "eval_protocol": PROTOCOL_ID}


def split_datasets(p, vocab):
    """{split: MetaDataset} of the non-empty splits: named after the corpus, a digest of the corpus bytes,
    the fractions and the split, and the corpus origin (its URL, or the path of one's own file) as source."""
    origin = corpus.resolve(p["corpus"])
    with warnings.catch_warnings():  # MLflow has two local sources (for "" and "file:") and warns that both fit
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(origin.url or Path(origin.source).resolve().as_uri())
    return {split: MetaDataset(source, name=vocab.corpus,
                               digest=hashlib.sha256(f"{split_id(p, vocab)}:{vocab.sha256}:{split}".encode()).hexdigest()[:16])
            for split in CONTEXTS if p[f"{split}_frac"] > 0}


def run_record(key):
    """A value the train stage wrote to RUN_FILE: `run_id`, or `best_model_id` (best.pt's logged model)."""
    try:
        return json.loads(Path(RUN_FILE).read_text())[key]
    except (OSError, ValueError, KeyError):
        raise CharRNNError(f"{RUN_FILE} is missing or unreadable (run the train stage first)") from None


class PipelineRun:
    """One stage's hold on the pipeline's MLflow run: a context manager that closes it FINISHED, or
    FAILED on an error, or KILLED on an interrupt, so no run is left 'running'."""

    def __init__(self, client, run_id):
        self.client, self.id = client, run_id
        self._datasets = None

    @classmethod
    def reopen(cls, run_id=None):
        """The run whose id is given, or else the one named in RUN_FILE."""
        if run_id is None:
            run_id = run_record("run_id")
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

    def log_metrics(self, metrics, step=0, model_id=None):
        """Log metrics at `step`, each linked to the dataset of its split (`val_loss`: validation) and,
        if given, to the logged model `model_id`."""
        now = int(time.time() * 1000)
        self.client.log_batch(self.id, metrics=[Metric(key, float(value), now, step, model_id, *self.dataset_of(key))
                                                for key, value in metrics.items()])

    def dataset_of(self, metric):
        """(name, digest) of the dataset the metric was measured on, by its prefix; (None, None) if none."""
        if self._datasets is None:
            inputs = self.client.get_run(self.id).inputs.dataset_inputs
            self._datasets = {tag.value: (entry.dataset.name, entry.dataset.digest)
                              for entry in inputs for tag in entry.tags if tag.key == MLFLOW_DATASET_CONTEXT}
        return self._datasets.get(CONTEXTS.get(metric.partition("_")[0]), (None, None))

    def log_datasets(self, datasets):
        """Log {split: dataset} as the run's inputs, each with its context (training, validation, test)."""
        self.client.log_inputs(self.id, [DatasetInput(dataset._to_mlflow_entity(),
                                                      [InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS[split])])
                                         for split, dataset in datasets.items()])
        self._datasets = None

    def log_artifact(self, path, folder=None):
        self.client.log_artifact(self.id, str(path), folder)

    def log_table(self, rows, artifact_file):
        """Rows (dicts of the same keys) as an MLflow table, which the UI shows; a table already there
        gains the rows."""
        self.client.log_table(self.id, data=pd.DataFrame(rows), artifact_file=artifact_file)


class TrainingTracker:
    """What the training loop reports to: `start` opens (or, on resume, continues) the run.

    As a context manager it closes the run, if one was started, as PipelineRun does.
    """

    def __init__(self, p, vocab):
        self.p, self.vocab, self.run, self.monitor = p, vocab, None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.training_done()
        if self.run is not None:
            self.run.__exit__(*exc_info)

    def training_done(self):
        """Stop sampling the system metrics (once the training itself is over)."""
        if self.monitor is not None:
            self.monitor.finish()
            self.monitor = None

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
                self._monitor_system(resumed=True)
                return self.run.id
        exp_name = experiment_name(self.p, self.vocab.corpus)
        experiment = client.get_experiment_by_name(exp_name)
        kind, view = EXPERIMENT_KIND
        if experiment is None:
            local = tracking_uri() == f"sqlite:///{local_store() / 'mlflow.db'}"
            artifacts = (local_store() / "artifacts").as_uri() if local else None  # a server picks its own
            experiment_id = client.create_experiment(exp_name, artifact_location=artifacts, tags={kind: view})
        else:
            experiment_id = experiment.experiment_id
            if kind not in experiment.tags:  # made by an earlier charrnn
                client.set_experiment_tag(experiment_id, kind, view)
        dvc_exp = os.environ.get("DVC_EXP_NAME", "")
        name = dvc_exp or f"{self.vocab.corpus}-{self.p['num_layers']}x{self.p['lstm_size']}-{self.p['cell']}"
        tags = {"git_commit": _git_commit(), "corpus": self.vocab.corpus, "corpus_sha256": self.vocab.sha256,
                "device": self.p["device"], "dvc_exp_name": dvc_exp, **comparability(self.p, self.vocab)}
        run = client.create_run(experiment_id, run_name=name, tags=tags)
        self.run = PipelineRun(client, run.info.run_id)
        client.log_batch(self.run.id, params=[Param(key, str(value)[:6000]) for key, value in self.p.items()])
        self.run.log_datasets(split_datasets(self.p, self.vocab))
        self._monitor_system(resumed=False)
        return self.run.id

    def _monitor_system(self, resumed):
        """MLflow's own sampling of CPU, memory, disk, network (and GPU, with nvidia-ml-py) into the run's
        system/ metrics, until training_done(); MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides the interval."""
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no chatter on a stage's stderr
        self.monitor = SystemMetricsMonitor(self.run.id, sampling_interval=SYSTEM_METRICS_INTERVAL,
                                            resume_logging=resumed, tracking_uri=tracking_uri())
        self.monitor.start()

    def log(self, row):
        """A validation's row; val_loss in bits per character too."""
        step = row["step"]
        metrics = {key: value for key, value in row.items() if key != "step"}
        self.run.log_metrics({**metrics, "val_bpc": loss_metrics("val", row["val_loss"])["val_bpc"]}, step=step)


def log_training(run, metrics, history, vocab_path):
    """After training: summary metrics, the vocabulary and the loss curves as an image. The final
    train_loss and val_loss are already the last points of their curves (logged at their step), so
    they are not logged again: at step 0 they would draw the curves back to the start."""
    run.log_metrics({key: value for key, value in metrics.items()
                     if isinstance(value, (int, float)) and key not in ("train_loss", "val_loss")})
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
