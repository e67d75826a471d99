"""The pipeline's MLflow run: one run per pipeline execution across the stages.

Each stage is its own process: `train` creates the run (tracking/live.py) and writes its id to
RUN_FILE; later stages reopen the run by id, log, and close it again. What names a run, a model and
a split, and what makes two val losses comparable, is here too.
"""

import contextlib
import getpass
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, Metric
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import (
    MLFLOW_DATASET_CONTEXT,
    MLFLOW_GIT_COMMIT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)

from charrnn import project_root
from charrnn.core.protocol import PROTOCOL_ID
from charrnn.errors import CharRNNError
from charrnn.tracking.store import connect, redacted, tracking_uri

RUN_FILE = "models/mlflow_run.json"  # written by the train stage, read by the later ones
FAILED_STAGE = "failed_stage"  # the tag naming the stage after training that failed on the run
LOGGED_MODELS = "models/logged_models.json"  # written by the log_models stage, read by register
# The tag by which the MLflow UI picks an experiment's view: this one opens on its Training runs.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# Each split as an MLflow dataset, by its context; a metric is linked to the split its name starts with.
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}


def label(corpus_name, config):
    """What a run or a logged model is, e.g. anna-2x512-lstm, from the corpus and the model's config
    (CharRNN.config, or Params.model_config())."""
    return f"{corpus_name}-{config['num_layers']}x{config['lstm_size']}-{config['cell']}"


def model_safe(name):
    """`name` as MLflow accepts it for a logged or registered model: the characters it refuses there
    (/ : . % and quotes; a corpus file may be called my.book.txt) become '-'."""
    return re.sub(r"""[/:.%"']""", "-", name)


def experiment_name(p, corpus_name):
    return p.tracking.experiment or f"charrnn-{corpus_name}"


def split_id(p, vocab):
    """The corpus bytes and the split fractions."""
    return f"{vocab.sha256[:12]}:{p.train_frac:g}/{p.val_frac:g}/{p.test_frac:g}"


def comparability(p, vocab):
    """What must match for two val losses to be compared: the split (corpus bytes and fractions) and
    the evaluation protocol that measured them. Tags of each registered version."""
    return {"split": split_id(p, vocab), "eval_protocol": PROTOCOL_ID}


def split_datasets(p, vocab):
    """{split: MetaDataset} of the non-empty splits: named after the corpus, a digest of the corpus bytes,
    the fractions and the split, and the corpus origin (its URL, or the file URI of one's own text; the
    prepare stage records it in the vocabulary) as source."""
    with warnings.catch_warnings():  # MLflow has two local sources (for "" and "file:") and warns that both fit
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(vocab.origin)
    return {
        split: MetaDataset(
            source,
            name=vocab.corpus,
            digest=hashlib.sha256(f"{split_id(p, vocab)}:{vocab.sha256}:{split}".encode()).hexdigest()[:16],
        )
        for split, fraction in zip(CONTEXTS, (p.train_frac, p.val_frac, p.test_frac))
        if fraction > 0
    }


def run_record(key, path=RUN_FILE):
    """A value an earlier stage wrote for the later ones: RUN_FILE's `run_id` (the train stage's run),
    LOGGED_MODELS' `best_model_id` (best.pt's logged model, by the log_models stage)."""
    try:
        return json.loads(Path(path).read_text())[key]
    except (OSError, ValueError, KeyError):
        raise CharRNNError(f"{path} is missing or unreadable (run `dvc repro` to build it)") from None


def deleted_part(client, run):
    """('experiment', id) or ('run', id) when the run's experiment, or the run, is deleted (in the UI's
    trash, where MLflow refuses to log to it; deleting an experiment deletes its runs, and restoring it
    restores them); None when both are active."""
    if client.get_experiment(run.info.experiment_id).lifecycle_stage == "deleted":
        return "experiment", run.info.experiment_id
    if run.info.lifecycle_stage == "deleted":
        return "run", run.info.run_id
    return None


def restore_hint(kind, key):
    return f"`mlflow {kind}s restore --{kind}-id {key}`"


class PipelineRun:
    """One stage's hold on the pipeline's MLflow run. Training ends it FINISHED, FAILED or KILLED
    (`end_training`); a later stage, as a context manager, leaves that status as it is and on an error
    tags the run `failed_stage` with its name until it succeeds: an experiment that changes only
    `sample:` reruns the sample stage on the baseline's run, whose training did finish. The later stages
    never mark the run RUNNING either, so one killed (kill -9), whose rerun DVC may restore from its run
    cache instead of running, leaves the run as it was rather than 'running' for good."""

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
            run = client.get_run(run_id)
        except MlflowException as err:
            raise CharRNNError(
                f"MLflow run {run_id} not found in {redacted(tracking_uri())} ({err.message[:120]})"
            ) from None
        deleted = deleted_part(client, run)
        if deleted:
            raise CharRNNError(
                f"MLflow {' '.join(deleted)} is deleted in {redacted(tracking_uri())}: restore it "
                f"({restore_hint(*deleted)}), or run `dvc repro -f train` for a new run"
            )
        return cls(client, run_id)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        stage = os.environ.get("DVC_STAGE", Path(sys.argv[0]).stem).rpartition(":")[2]
        if kind is None:
            if self.client.get_run(self.id).data.tags.get(FAILED_STAGE) == stage:
                self.client.delete_tag(self.id, FAILED_STAGE)
            return
        with contextlib.suppress(MlflowException):  # the stage's own error is the one to report
            self.client.set_tag(self.id, FAILED_STAGE, stage)

    def end_training(self, kind=None):
        """End the run as its training ended: FINISHED, KILLED on an interrupt (`kind`, the exception's
        type), or FAILED."""
        status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
        self.client.set_terminated(self.id, status)

    def log_metrics(self, metrics, step=0, model_id=None):
        """Log metrics at `step`, each linked to the dataset of its split (`val_loss`: validation) and,
        if given, to the logged model `model_id`."""
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.id,
            metrics=[
                Metric(key, float(value), now, step, model_id, *self.dataset_of(key)) for key, value in metrics.items()
            ],
        )

    def dataset_of(self, metric):
        """(name, digest) of the dataset the metric was measured on, by its name's split; (None, None) if
        none."""
        if self._datasets is None:
            inputs = self.client.get_run(self.id).inputs.dataset_inputs
            self._datasets = {
                tag.value: (entry.dataset.name, entry.dataset.digest)
                for entry in inputs
                for tag in entry.tags
                if tag.key == MLFLOW_DATASET_CONTEXT
            }
        split = metric.rpartition("/")[2].partition("_")[0]  # val_bpc, loss/val_bpc: val
        return self._datasets.get(CONTEXTS.get(split), (None, None))

    def log_datasets(self, datasets):
        """Log {split: dataset} as the run's inputs, each with its context (training, validation, test)."""
        self.client.log_inputs(
            self.id,
            [
                DatasetInput(dataset._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS[split])])
                for split, dataset in datasets.items()
            ],
        )
        self._datasets = None

    def log_artifact(self, path, folder=None):
        self.client.log_artifact(self.id, str(path), folder)

    def log_table(self, rows, artifact_file):
        """Rows (dicts of the same keys) as an MLflow table, which the UI shows; a table already there
        gains the rows."""
        self.client.log_table(self.id, data=pd.DataFrame(rows), artifact_file=artifact_file)


def source_tags():
    """MLflow's own fields of where a run came from, which its run page shows (created by, source, git
    commit): the user, the stage script, the checkout's commit. A value that cannot be found is left
    out, not tagged empty."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no entry in the password database
        user = ""
    script, checkout = Path(sys.argv[0]).resolve(), Path.cwd().resolve()  # a stage runs in its checkout's root
    source = script.relative_to(checkout) if script.is_relative_to(checkout) else script.name
    tags = {
        MLFLOW_USER: user,
        MLFLOW_SOURCE_NAME: str(source),
        MLFLOW_SOURCE_TYPE: "LOCAL",
        MLFLOW_GIT_COMMIT: git_commit(),
    }
    return {key: value for key, value in tags.items() if value}


def git_commit():
    """The checkout's commit, or "" outside a git checkout."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        return ""
