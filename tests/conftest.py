"""The fixtures, and only they: the corpus mirror, a scratch project, the tiny pipeline built once for the
read-only checks of several modules, and each test's own MLflow environment. What the tests share
besides is in tests/helpers/."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charrnn.core import checkpoint
from charrnn.training.loop import train

from helpers import ROOT
from helpers.configs import BUILT, METRIC_FILES, tiny_corpus, tiny_params, write_params
from helpers.projects import git, make_project
from helpers.running import with_python_path

MLFLOW_ENVIRONMENT = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_MLFLOW_AT_START = {name: os.environ.get(name) for name in MLFLOW_ENVIRONMENT}


def _reset_mlflow_environment():
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    for name, value in _MLFLOW_AT_START.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# Fixtures that build a whole pipeline with `dvc repro`: a test that uses one is slow.
PIPELINE_FIXTURES = {"project", "built"}


def pytest_collection_modifyitems(items):
    """Mark `slow` every test that runs a whole pipeline (PIPELINE_FIXTURES); servers, DDP and queues
    are marked where they are. `pytest -m "not slow"` is the everyday tier."""
    for item in items:
        if PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def own_mlflow_environment():
    """mlflow.set_tracking_uri / set_registry_uri, which charrnn.tracking.connect() calls, keep the URIs
    in mlflow's globals and in os.environ (in a test or a module's fixture): reset both before and after
    each test, so that one test's in-process store never becomes a later test's (an MlflowClient made
    without a registry URI takes the global one)."""
    _reset_mlflow_environment()
    yield
    _reset_mlflow_environment()


@pytest.fixture(scope="session")
def mirror():
    """The corpus mirror folder: $CHARRNN_DATA_MIRROR, else ../shared/data beside the checkout."""
    folder = Path(os.environ.get("CHARRNN_DATA_MIRROR") or ROOT.parent / "shared" / "data")
    if not (folder / "anna.txt").is_file():
        pytest.skip(f"no corpus mirror at {folder} (set CHARRNN_DATA_MIRROR)")
    return folder.resolve()


@pytest.fixture
def project(tmp_path, mirror):
    return make_project(tmp_path, mirror)


@pytest.fixture(scope="session")
def built(tmp_path_factory, mirror):
    """The tiny pipeline built once, for the checks that only read what it made (tests that change a
    project make their own). In a git + DVC project on branch `work` (no `main`):

    - `dvc repro` of BUILT (a 1x8 LSTM; checkpoints kept at steps 40, 80 and 120, best.pt at 143), with
      the audit hook of tests/audit/ recording what each stage reads, loads and writes (into `audit`),
      and MLflow's system metrics sampled every 0.2 s; its results committed ("first run"; HEAD~1 is
      the project before any run);
    - then two queued experiments run two at a time (`dvc queue start -j 2`), `wider` (lstm_size=32,
      which takes `champion`) and `narrow` (16), into the project's one MLflow store;
    - `dvc exp apply wider`: the workspace holds wider's results.

    Returns the runner, with `client` (the project's store), `experiment`, `runs` ({lstm_size: run}),
    `versions` ({lstm_size: its registered version}), `audit` (the folder of the audit logs) and
    `first` (the committed metrics of the first run)."""
    runner = make_project(tmp_path_factory.mktemp("built"), mirror)
    git(runner, "branch", "-m", "work")  # no main, whatever git's default
    write_params(runner.root, **BUILT)
    runner.audit = runner.root / "audit"
    runner.audit.mkdir()
    plain = dict(runner.env)
    runner.env.update(
        with_python_path(plain, ROOT / "tests" / "audit"),
        CHARRNN_AUDIT_DIR=str(runner.audit),
        MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="0.2",
    )
    runner("repro")
    runner.env.clear()
    runner.env.update(plain, MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="0.2")
    with open(runner.root / ".gitignore", "a") as ignored:
        ignored.write("/audit/\n")
    git(runner, "add", "-A")
    git(runner, "commit", "-qm", "first run")
    runner.first = {name: json.loads((runner.root / name).read_text()) for name in METRIC_FILES}
    for name, size in (("wider", 32), ("narrow", 16)):
        runner("exp", "run", "--queue", "-n", name, "-S", f"lstm_size={size}")
    # the workers DVC starts outlive `dvc queue start` and would hold captured pipes open: no capture
    subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "queue", "start", "-j", "2"],
        cwd=runner.root,
        env=runner.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while any(word in runner("queue", "status").stdout for word in ("Queued", "Running")):
        assert time.time() < deadline, runner("queue", "status").stdout
        time.sleep(2)
    runner("queue", "stop", check=False)
    status = runner("queue", "status").stdout
    failed = [line.split()[0] for line in status.splitlines() if "Failed" in line]
    assert not failed, status + "".join(runner("queue", "logs", task, check=False).stdout for task in failed)
    runner("exp", "apply", "wider")

    from mlflow import MlflowClient

    runner.client = MlflowClient(f"sqlite:///{runner.root}/mlruns/mlflow.db")
    runner.experiment = runner.client.get_experiment_by_name("charrnn-hamlet")
    runner.runs = {r.data.params["lstm_size"]: r for r in runner.client.search_runs([runner.experiment.experiment_id])}
    sizes = {run.info.run_id: size for size, run in runner.runs.items()}
    runner.versions = {
        sizes[v.run_id]: str(v.version) for v in runner.client.search_model_versions("name='charrnn-hamlet'")
    }
    return runner


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for a few seconds: (model, vocab, folder with best.pt, val ids, params)."""
    folder = tmp_path_factory.mktemp("model")
    train_ids, val_ids, vocab = tiny_corpus()
    p = tiny_params(epochs=2)
    train(p, train_ids, val_ids, vocab, folder)
    model, vocab = checkpoint.load_model(folder / "best.pt")
    return model, vocab, folder, val_ids, p
