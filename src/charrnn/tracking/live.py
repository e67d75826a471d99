"""The training's live view in MLflow: the train stage's tracker opens the pipeline's run (or continues
it on resume), logs each validation's losses as they come and MLflow's system metrics while it trains.

A tracking server that stops answering does not stop the training: the points it could not take are
kept and sent once it answers, and a resumed or completed run first sends the points of its history
(loss.csv's rows) that the run lacks. Only the end of the stage needs the server: its summary, the
lacking points and the run's end are logged then, or the stage fails saying what the run lacks.
"""

import hashlib
import logging
import os
import socket
from pathlib import Path

from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

from charrnn.core.evaluate import loss_metrics
from charrnn.errors import CharRNNError
from charrnn.tracking.runs import (
    EXPERIMENT_KIND,
    PipelineRun,
    comparability,
    deleted_part,
    experiment_name,
    label,
    restore_hint,
    source_tags,
    split_datasets,
)
from charrnn.tracking.store import connect, local_store, redacted, scrubbed, tracking_uri

SYSTEM_METRICS_INTERVAL = 10  # seconds between samples of CPU, memory (and GPU) during training
# A validation's losses are the run's curves, under the prefix `loss/`: MLflow's chart view puts a prefix's
# section before its "Model metrics", so a run's charts lead with them; the single figures (the evaluate
# stage's val_loss and test_loss, num_params, ...) are logged at step 0 and drawn as bars after them.
CURVES = {"train_loss": "loss/train", "val_loss": "loss/val", "val_bpc": "loss/val_bpc"}
FOLDER_TAG = "training_folder"  # which working copy trained the run, as training_folder() names it
# MLflow's HTTP client retries a request for ~8.5 minutes by default; during training a request fails in
# seconds instead, and the points wait (the user's own MLFLOW_HTTP_REQUEST_* settings are kept)
QUICK_REQUESTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


class Unanswered(CharRNNError):
    """The tracking store did not take a request."""


def training_folder():
    """This machine and working copy (the stage's folder), as a digest: the folder's path stays on
    the machine, also when the runs go to a team's server."""
    return hashlib.sha256(f"{socket.gethostname()}:{Path.cwd().resolve()}".encode()).hexdigest()[:16]


class TrainingTracker:
    """The tracker train() reports to: `start` opens (or, on resume, continues) the pipeline's run and
    MLflow's sampling of the system metrics; `log` adds a validation's row to the curves.

    As a context manager it ends the run, if one was started, as the training ended (PipelineRun.end_training).
    """

    def __init__(self, p, vocab):
        self.p, self.vocab, self.run, self.monitor = p, vocab, None, None
        self.unsent = []  # (step, {metric: value}) of validations the store has not taken yet
        self.unanswered = False  # said that the store does not answer

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.training_done()
        if self.run is not None:
            try:
                self.run.end_training(exc_info[0])
            except (MlflowException, OSError):
                if exc_info[0] is None:
                    raise Unanswered(self._lacking("its end")) from None
                # the error that ended the training is the one to report

    def training_done(self):
        """Stop sampling the system metrics (once the training itself is over)."""
        if self.monitor is not None:
            self.monitor.finish()
            self.monitor = None

    def start(self, resumed_run_id, history=()):
        """Open the run, or continue `resumed_run_id` and send the points of `history` (the training's
        rows so far) that it lacks; returns the run's id."""
        for name, value in QUICK_REQUESTS.items():
            os.environ.setdefault(name, value)
        client = connect()
        if resumed_run_id is not None:
            try:
                deleted = deleted_part(client, client.get_run(resumed_run_id))
                why = f"its {' '.join(deleted)} is deleted in" if deleted else ""
            except MlflowException:
                why = "it is not in"
            if why:
                store = redacted(tracking_uri())
                print(f"MLflow run {resumed_run_id} of the resumed training: {why} {store}: starting a new run")
            else:
                self.run = PipelineRun(client, resumed_run_id)  # found and not deleted, just above
                client.update_run(self.run.id, status="RUNNING")
                self._end_abandoned_runs(client)
                logged = {metric.step for metric in client.get_metric_history(self.run.id, CURVES["val_loss"])}
                self.unsent = [_points(row) for row in history if row["step"] not in logged]
                self._send()
                self._monitor_system(resumed=True)
                return self.run.id
        exp_name = experiment_name(self.p, self.vocab.corpus)
        experiment = client.get_experiment_by_name(exp_name)
        kind, view = EXPERIMENT_KIND
        if experiment is None:
            local = tracking_uri() == f"sqlite:///{local_store() / 'mlflow.db'}"
            artifacts = (local_store() / "artifacts").as_uri() if local else None  # a server picks its own
            experiment_id = client.create_experiment(exp_name, artifact_location=artifacts, tags={kind: view})
        elif experiment.lifecycle_stage == "deleted":
            raise CharRNNError(
                f"MLflow experiment {exp_name} is deleted in {redacted(tracking_uri())}: restore it "
                f"({restore_hint('experiment', experiment.experiment_id)}), or set tracking.experiment to another name"
            )
        else:
            experiment_id = experiment.experiment_id
            if kind not in experiment.tags:  # made by an earlier charrnn
                client.set_experiment_tag(experiment_id, kind, view)
        dvc_exp = os.environ.get("DVC_EXP_NAME", "")
        name = dvc_exp or label(self.vocab.corpus, self.p.model_config())
        tags = {
            **source_tags(),
            "corpus": self.vocab.corpus,
            "corpus_sha256": self.vocab.sha256,
            "device": self.p.device,
            **comparability(self.p, self.vocab),
            FOLDER_TAG: training_folder(),
        }
        if dvc_exp:
            tags["dvc_exp_name"] = dvc_exp
        run = client.create_run(experiment_id, run_name=name, tags=tags)
        self.run = PipelineRun(client, run.info.run_id)
        client.log_batch(
            self.run.id, params=[Param(key, str(value)[:6000]) for key, value in self.p.flat(skip=("sample",)).items()]
        )
        self.run.log_datasets(split_datasets(self.p, self.vocab))
        self._end_abandoned_runs(client)
        self._monitor_system(resumed=False)
        return self.run.id

    def _end_abandoned_runs(self, client):
        """End as KILLED the runs still RUNNING that an earlier training in this folder left (kill -9, a
        power cut) and that this one does not continue: one training at a time runs in a folder (DVC
        locks the repository; each queued experiment has a folder of its own), so none will go on."""
        experiments = [experiment.experiment_id for experiment in client.search_experiments()]
        for run in client.search_runs(
            experiments, f"tags.{FOLDER_TAG} = '{training_folder()}' and attributes.status = 'RUNNING'"
        ):
            if run.info.run_id != self.run.id:
                client.set_terminated(run.info.run_id, "KILLED")
                print(f"MLflow run {run.info.run_id} of an earlier training here, never ended, is marked KILLED")

    def _monitor_system(self, resumed):
        """MLflow's own sampling of CPU, memory, disk, network (and GPU, with nvidia-ml-py) into the run's
        system/ metrics, until training_done(); MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides the interval."""
        # no chatter on a stage's stderr, also while the store does not answer (the tracker says so once)
        logging.getLogger("mlflow.system_metrics").setLevel(logging.CRITICAL)
        self.monitor = SystemMetricsMonitor(
            self.run.id, sampling_interval=SYSTEM_METRICS_INTERVAL, resume_logging=resumed, tracking_uri=tracking_uri()
        )
        self.monitor.start()

    def log(self, row):
        """A validation's row (step, train_loss, val_loss, lr, chars_per_sec) as points of the run's curves,
        sent with any the store has not taken yet; while it does not answer, they wait."""
        self.unsent.append(_points(row))
        self._send()

    def _send(self):
        """Send the waiting points, oldest first; True when none is left. The first failure says so in a
        line, and training goes on."""
        try:
            while self.unsent:
                step, metrics = self.unsent[0]
                self.run.log_metrics(metrics, step=step)
                self.unsent.pop(0)
        except (MlflowException, OSError) as err:
            if not self.unanswered:
                self.unanswered = True
                reason = scrubbed(str(getattr(err, "message", err)).splitlines()[0])[:160]
                print(
                    f"WARNING: the MLflow store {redacted(tracking_uri())} does not answer ({reason}): training goes "
                    "on, and the curves' points wait to be sent when it answers",
                    flush=True,
                )
            return False
        if self.unanswered:
            self.unanswered = False
            print("the MLflow store answers again: the curves' points that waited are sent", flush=True)
        return True

    def _lacking(self, what):
        store = redacted(tracking_uri())
        return (
            f"training finished (models/best.pt and last.pt are saved), but the MLflow store {store} does not "
            f"answer, so the run lacks {len(self.unsent)} validation points and {what}: once it answers, run dvc "
            "repro again (the run is completed from models/last.pt, with nothing to train)"
        )

    def log_summary(self, metrics):
        """After training: the points that waited, then metrics/train.json's single figures. Its final
        train_loss, val_loss and chars_per_sec are the last points of curves already (logged at their
        step), so they are not logged again: at step 0 they would draw a curve back to the start."""
        if not self._send():
            raise Unanswered(self._lacking("its summary"))
        try:
            self._log_summary(metrics)
        except (MlflowException, OSError):
            raise Unanswered(self._lacking("its summary")) from None

    def _log_summary(self, metrics):
        self.run.log_metrics(
            {
                key: value
                for key, value in metrics.items()
                if isinstance(value, (int, float)) and key not in ("train_loss", "val_loss", "chars_per_sec")
            }
        )
        self.run.client.set_tag(self.run.id, "device", metrics["device"])


def _points(row):
    """A validation's row as (step, {curve: value}): val_loss in bits per character too."""
    metrics = {**row, "val_bpc": loss_metrics("val", row["val_loss"])["val_bpc"]}
    return row["step"], {CURVES.get(key, key): value for key, value in metrics.items() if key != "step"}
