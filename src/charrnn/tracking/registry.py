"""The MLflow model registry: each trained best.pt's logged model a version of charrnn-<corpus>, and the
alias `champion` on the best comparable one (tracking/model_uris.py loads them back)."""

import math
import time
from datetime import datetime, timezone

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ALREADY_EXISTS, RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from charrnn.errors import CharRNNError
from charrnn.params import changed
from charrnn.tracking.runs import model_safe

CHAMPION = "champion"


def model_name(corpus_name):
    """One registered model per corpus: validation losses on different texts are never compared."""
    return model_safe(f"charrnn-{corpus_name}")


def register(run, model_id, corpus_name, evaluation, key):
    """Register the logged model `model_id` (best.pt's, logged by the log_models stage) as a new version of
    charrnn-<corpus>, tagged with its val loss, comparability `key` and history: val/test bits per
    character (of `evaluation`, the evaluate stage's metrics), the params the run trained with that differ
    from the defaults, the git commit and the DVC experiment; the same in a short description. Returns
    the version. A logged model registered before (by a register that was killed) keeps its version."""
    name = model_name(corpus_name)
    if not usable(evaluation["val_loss"]):
        raise CharRNNError(
            f"best.pt scores val loss {evaluation['val_loss']}: its weights are not a usable model, "
            f"so it is not registered as a version of {name}; retrain it (delete models/last.pt, then `dvc repro`)"
        )
    run_data = run.client.get_run(run.id).data
    bits = {metric: f"{evaluation[metric]:.4f}" for metric in ("val_bpc", "test_bpc") if metric in evaluation}
    params = ", ".join(f"{param}={value}" for param, value in changed(run_data.params).items()) or "defaults"
    origin = {"git_commit": run_data.tags.get(MLFLOW_GIT_COMMIT), "dvc_exp_name": run_data.tags.get("dvc_exp_name")}
    history = {**bits, "params": params, **{tag: value for tag, value in origin.items() if value}}
    tags = {"val_loss": repr(float(evaluation["val_loss"])), **key, "run_id": run.id, **history}
    # a register killed after creating the version (kill -9) is rerun with the same logged model: that
    # version is completed, not doubled
    earlier = [v for v in run.client.search_model_versions(f"name='{name}'") if v.source == f"models:/{model_id}"]
    if earlier:
        version = str(min(int(v.version) for v in earlier))
        for tag, value in tags.items():
            run.client.set_model_version_tag(name, version, tag, value)
    else:
        version = str(_new_version(run.client, name, model_id, tags))
    logged = run.client.get_logged_model(model_id)
    scores = "; ".join(f"{metric.split('_')[0]} {value} bpc" for metric, value in bits.items())
    commit = f" Commit {history['git_commit'][:12]}." if "git_commit" in history else ""
    experiment = f" DVC experiment {history['dvc_exp_name']}." if "dvc_exp_name" in history else ""
    run.client.update_model_version(
        name, version, description=(f"{logged.name}: {scores}. Params: {params}.{commit}{experiment}")
    )
    return version


def _new_version(client, name, model_id, tags):
    """A new version of the registered model `name` (made if it is new) from the logged model `model_id`:
    mlflow.register_model's calls, without the lines it prints ("Registered model ... already exists.
    Creating a new version of this model...", "Created version ..."): register says it in its own."""
    try:
        client.create_registered_model(name)
    except MlflowException as err:  # made already (also by a clone registering at the same moment)
        if err.error_code not in (ErrorCode.Name(RESOURCE_ALREADY_EXISTS), ErrorCode.Name(ALREADY_EXISTS)):
            raise
    return client.create_model_version(name, f"models:/{model_id}", tags=tags, model_id=model_id).version


def promote(client, name, key, dry_run=False, switch_split=False):
    """Give `champion` to the lowest-val-loss version of `name` (the newest of equals) among those with
    the comparability `key` (split and evaluation protocol); print the decision.

    A champion measured on another split or by another protocol stays unless `switch_split`: such
    losses are not comparable, and a quick experiment on another split must not dethrone it.
    Idempotent. Returns (champion version, its val loss).

    Safe under concurrency (two experiments registering at once on one registry): after moving the
    alias it reads the registry again, and moves it again until what it reads agrees. A promote that
    chose from a list read before another's version existed, and wrote last, so sees that version on
    its re-read and corrects the alias: the last writer always ends on the best of all versions.
    """
    versions, best, current = _choice(client, name, key)
    newest = max(versions, key=lambda v: int(v.version))
    print(
        f"{name}: newest version {newest.version} val {float(newest.tags['val_loss']):.4f}; "
        f"best with {_described(key)}: version {best.version} val {float(best.tags['val_loss']):.4f}"
    )
    current_key = {tag: current.tags.get(tag) for tag in key} if current is not None else key
    if current_key != key and not switch_split:
        print(
            f"{CHAMPION} stays on version {current.version} ({_described(current_key)}): val losses of "
            "different splits or evaluation protocols are not compared; `charrnn promote --switch-split` "
            "moves it to this one's best"
        )
        return str(current.version), float(current.tags.get("val_loss", "nan"))
    if _holds(current, best):
        print(f"{CHAMPION} stays on version {best.version}")
    verb = "would move" if dry_run else "moves"
    while not _holds(current, best):
        print(f"{CHAMPION} {verb} from {_named(current)} to {_named(best)}")
        if dry_run:
            break
        _crown(client, name, best, current)
        versions, best, current = _choice(client, name, key)  # the re-check: another promote may have written
        verb = "moves again (another register changed the registry meanwhile)"
    return str(best.version), float(best.tags["val_loss"])


def _choice(client, name, key):
    """(the usable versions of `name` with the comparability `key`, the best of them, the champion now)."""
    versions = [
        v
        for v in client.search_model_versions(f"name='{name}'")
        if all(v.tags.get(tag) == value for tag, value in key.items()) and usable(v.tags.get("val_loss"))
    ]
    if not versions:
        raise CharRNNError(f"no version of {name} with {_described(key)} to promote")
    # on a tie the newest: the same weights registered again after log_models reran (new serving code)
    best = min(versions, key=lambda v: (float(v.tags["val_loss"]), -int(v.version)))
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    return versions, best, current


def _holds(current, best):
    return current is not None and str(current.version) == str(best.version)  # MLflow mixes int and str


def _named(version):
    return (
        f"version {version.version} (val {float(version.tags.get('val_loss', 'nan')):.4f})"
        if version is not None
        else "no version"
    )


def _crown(client, name, best, current):
    """Move the alias to `best`; MLflow keeps no history of an alias: the new champion records whom it
    replaced, and when."""
    replaced = str(current.version) if current is not None else "none"
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _retried(lambda: client.set_registered_model_alias(name, CHAMPION, best.version))
    _retried(lambda: client.set_model_version_tag(name, best.version, "champion_replaced", replaced))
    _retried(lambda: client.set_model_version_tag(name, best.version, "champion_since", since))


def _retried(write, attempts=4):
    """A registry write, tried again if it fails: two promotes at once write the same alias and tags,
    and a database store answers the second of two simultaneous first writes of a tag with a unique-key
    violation (MLflow's write is a read, then an insert or update); once the first has committed, the
    same write updates."""
    for attempt in range(attempts):
        try:
            return write()
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def usable(val_loss):
    """A val loss (a number or a version's tag) that a model worth keeping scores: a finite number.
    The one test of it, for registering a version and for choosing the champion."""
    try:
        return math.isfinite(float(val_loss))
    except (TypeError, ValueError):
        return False


def _described(key):
    return ", ".join(f"{name} {value}" for name, value in key.items())
