"""Shared fixtures: the corpus mirror, params files, running stage scripts as DVC does, the `charrnn`
command in-process, and the tiny pipeline built once for the read-only checks of several modules."""

import io
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from charrnn import params
from charrnn.commands import reprocheck

ROOT = Path(__file__).resolve().parents[1]


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


def write_params(folder, **overrides):
    """Write a complete params.yaml (defaults + overrides) into `folder`; return its path."""
    nested = {}
    for key, value in {**params.defaults(), **overrides}.items():
        *sections, name = key.split(".")
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(nested, sort_keys=False))
    return path


def with_python_path(env, folder):
    """`env` with `folder` put first on PYTHONPATH."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))}


def interrupting(env, signal_name, at):
    """`env` for a train stage that sends itself SIG`signal_name` (KILL, TERM) as it is about to write
    models/last.pt for the `at`-th time: a deterministic point to interrupt training at."""
    return {**with_python_path(env, ROOT / "tests" / "signal_at_save"), "CHARRNN_TEST_SIGNAL": signal_name,
            "CHARRNN_TEST_SIGNAL_AT": str(at)}


def run_stage(name, cwd, env=None):
    """Run stages/<name>.py with `cwd` as the project root, as `dvc repro` would."""
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{name}.py")],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def prepare(folder, mirror=None, **overrides):
    """A project folder with params.yaml (defaults + overrides) and the fetch, prepare and split stages
    run, as a later stage finds it; returns the folder."""
    write_params(folder, **overrides)
    for stage in ("fetch", "prepare", "split"):
        result = run_stage(stage, folder, env={"CHARRNN_DATA_MIRROR": str(mirror)} if mirror else None)
        assert result.returncode == 0, result.stderr
    return folder


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, process, seconds=180):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited: {process.stdout.read() if process.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def post_json(url, payload):
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def in_process(entry_point, args, cwd=None):
    """Run `entry_point()` (a command's or a stage's main) in this process, in `cwd` (default: the current
    folder), as the program `args`: for the tests of what it prints and refuses, where a subprocess
    would cost seconds of imports. Returns a CompletedProcess."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    here, on_sigterm = os.getcwd(), signal.getsignal(signal.SIGTERM)  # exit_on_error sets a SIGTERM handler
    try:
        os.chdir(cwd or here)
        with redirect_stdout(out), redirect_stderr(err):
            entry_point()
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
    finally:
        os.chdir(here)
        signal.signal(signal.SIGTERM, on_sigterm)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def charrnn(*args, cwd=None):
    """`charrnn ARGS` in this process (its entry point is run as a program by test_stages.py's fetch test)."""
    from charrnn.commands import cli

    return in_process(lambda: cli.main(list(args)), ["charrnn", *args], cwd)


def stage_in_process(name, cwd):
    """stages/<name>.py in this process, with `cwd` as the project root (run_stage runs it as DVC does)."""
    script = ROOT / "stages" / f"{name}.py"
    return in_process(lambda: runpy.run_path(str(script), run_name="__main__"), [str(script)], cwd)


def assert_clean_error(result, *fragments):
    """A user error: exit 1, one `error:` line on stderr naming the problem, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", "src", ".dvc/config", ".dvcignore", ".gitignore")


def make_project(folder, mirror, **env):
    """A fresh git + DVC checkout of this project's pipeline in `folder`; returns a runner.

    `run("repro")` runs `dvc repro` there with the venv on PATH and the corpus mirror set. The stages
    import the package from the copy's src/, as in a real checkout, so an edit there takes effect.
    """
    import shutil

    for name in PROJECT_FILES:
        src, dest = ROOT / name, folder / name
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
    run = project_runner(folder, mirror, **env)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        git(run, *command)
    return run


def clone_project(source, folder, mirror, **env):
    """A teammate's `git clone` of the project runner `source` into `folder`; returns its runner."""
    subprocess.run(["git", "clone", "-q", str(source.root), str(folder)], check=True, capture_output=True)
    return project_runner(folder, mirror, **env)


def project_runner(folder, mirror, **env):
    """`run(*args, tool="dvc")`: the venv's tool run in the project `folder` with the corpus mirror set,
    the package imported from the folder's src/, and the project's own MLflow store unless `env` names
    another; `run.root`, `run.env`."""
    bin_dir = Path(sys.executable).parent
    extra_env = env
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CHARRNN_DATA_MIRROR": str(mirror),
           "PYTHONPATH": str(folder / "src")}
    for name in MLFLOW_ENVIRONMENT:
        env.pop(name, None)
    env.update(extra_env)

    def run(*args, check=True, tool="dvc"):
        result = subprocess.run(
            [str(bin_dir / tool), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=900
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    run.root, run.env = folder, env
    return run


@pytest.fixture
def project(tmp_path, mirror):
    return make_project(tmp_path, mirror)


def git(runner, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=runner.root, check=True,
                   capture_output=True, env=runner.env)


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
    runner.env.update(with_python_path(plain, ROOT / "tests" / "audit"), CHARRNN_AUDIT_DIR=str(runner.audit),
                      MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="0.2")
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
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "queue", "start", "-j", "2"], cwd=runner.root,
                   env=runner.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120, start_new_session=True)
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
    runner.versions = {sizes[v.run_id]: str(v.version) for v in runner.client.search_model_versions("name='charrnn-hamlet'")}
    return runner


TINY = dict(lstm_size=32, num_layers=1, batch_size=8, num_steps=16, epochs=2, eval_every=10,
            warmup_steps=5, keep_checkpoints=0, dropout=0.1, learning_rate=0.01, precision="fp32", device="cpu")


# The whole pipeline on Hamlet in seconds: 143 steps, a kept checkpoint at step 100 (repro-check's).
PIPELINE = dict(reprocheck.TINY)
# The shared build's first run (see `built`): smaller, with more kept checkpoints.
BUILT = dict(PIPELINE, lstm_size=8, keep_checkpoints=40)
METRIC_FILES = ("metrics/train.json", "metrics/eval.json", "data/split/split.json")


def tiny_params(**overrides):
    """Validated params for a model that trains in a second or two."""
    return params.validate({**params.defaults(), **TINY, **overrides})


def tiny_corpus(length=6000):
    """(train ids, val ids, vocab) of a small, learnable text."""
    from charrnn.data.vocab import Vocab

    text = "".join(f"the {word} sat on the mat. " for word in ("cat", "dog", "rat", "bat") * 100)[:length]
    vocab = Vocab(chars=tuple(sorted(set(text))), corpus="tiny", sha256="0" * 64, origin="file:///tiny.txt")
    ids = vocab.encode(text)
    cut = int(0.85 * len(ids))
    return ids[:cut], ids[cut:], vocab
