"""A team's set-up, for real and on loopback: PostgreSQL started in a temp folder by an unprivileged
user, MLflow's tracking server on it serving the artifacts (docs/experiments-and-teams.md, command for
command), user A's clone tracking into it and pushing to the project's DVC remote, user B's fresh clone
pulling and using everything without retraining, and two registers at once on the shared registry."""

import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from charrnn.core.protocol import PROTOCOL_ID
from charrnn.tracking.registry import CHAMPION, promote, register
from charrnn.tracking.runs import PipelineRun

from helpers import ROOT
from helpers.configs import PIPELINE, write_params
from helpers.projects import clone_project, git, make_project
from helpers.running import charrnn
from helpers.servers import champion_served, free_port, post_json, wait_for

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def postgres_binaries():
    """The folder of initdb and pg_ctl (the newest PostgreSQL under /usr/lib/postgresql, else PATH's)."""
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    initdb = installed[-1] if installed else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL server in a temp folder on 127.0.0.1 (as `nobody` when the tests run as root:
    PostgreSQL refuses root), with a password-protected role and an empty database `mlflow`.
    Yields (its SQLAlchemy URI with the credentials, the password)."""
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): the team tests need PostgreSQL 15 or later")
    pytest.importorskip("psycopg", reason="no psycopg, the team extra's driver: pip install -e '.[dev]'")

    folder = Path(tempfile.mkdtemp(prefix="charrnn-postgres-"))  # in /tmp: an unprivileged user must own it
    password = secrets.token_hex(12)
    (folder / "password").write_text(password)
    as_user = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "nobody", "--"]
        for path in (folder, folder / "password"):
            shutil.chown(path, "nobody")
    port = free_port()
    data, log = folder / "data", folder / "postgres.log"

    def postgres_tool(*args):
        done = subprocess.run(
            [*as_user, *args], capture_output=True, text=True, timeout=120, env={**os.environ, "PGPASSWORD": password}
        )
        assert done.returncode == 0, done.stdout + done.stderr

    postgres_tool(
        str(binaries / "initdb"),
        "-D",
        str(data),
        "-U",
        "charrnn",
        f"--pwfile={folder / 'password'}",
        "--auth=scram-sha-256",
        "-E",
        "UTF8",
    )
    postgres_tool(
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(log),
        "-w",
        "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
        "start",
    )
    try:
        postgres_tool(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "charrnn", "mlflow")
        yield f"postgresql://charrnn:{password}@127.0.0.1:{port}/mlflow", password
    finally:
        postgres_tool(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def team_server(postgres, tmp_path_factory):
    """`mlflow server` on the PostgreSQL store, serving the artifacts it keeps in a folder of its own, as
    docs/experiments-and-teams.md starts it (the store's URI, with its password, in the environment)."""
    uri, password = postgres
    folder = tmp_path_factory.mktemp("team-server")
    port = free_port()
    log = folder / "server.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "server",
                "--serve-artifacts",
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=folder,
            env={**os.environ, "MLFLOW_BACKEND_STORE_URI": uri},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", server, seconds=600)  # a new store's schema is made first
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", log=log, password=password)
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_a_teammate_pulls_a_trained_model_and_the_server_shows_its_run(team_server, mirror, tmp_path, monkeypatch):
    # user A trains against the team's tracking server and shares data and models through the DVC remote
    a = make_project(tmp_path / "a", mirror, MLFLOW_TRACKING_URI=team_server.url)
    write_params(a.root, **{**PIPELINE, "keep_checkpoints": 0})
    trained = a("repro")
    assert not (a.root / "mlruns").exists()  # nothing went to a local store
    git(a, "add", "-A")
    git(a, "commit", "-qm", "a run")
    pushed = a("push")
    assert (tmp_path / "charrnn-storage").is_dir() and "pushed" in pushed.stdout  # ../charrnn-storage beside it

    # user B clones, pulls, and has everything: nothing to rebuild, a checkpoint to sample from
    b = clone_project(a, tmp_path / "b", mirror, MLFLOW_TRACKING_URI=team_server.url)
    b("pull")
    assert "Data and pipelines are up to date" in b("repro").stdout
    sampled = charrnn("sample", "--checkpoint", "models/best.pt", "--prime", "To be", "--length", "40", cwd=b.root)
    assert sampled.returncode == 0 and sampled.stdout.startswith("To be") and len(sampled.stdout) == 46
    assert (b.root / "models" / "best.pt").read_bytes() == (a.root / "models" / "best.pt").read_bytes()

    # user B sees A's run, its logged models and the champion through the server; artifacts go through it
    client = MlflowClient(team_server.url)
    [run] = client.search_runs([client.get_experiment_by_name("charrnn-hamlet").experiment_id])
    assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert run.info.run_id == json.loads((b.root / "models/mlflow_run.json").read_text())["run_id"]
    models = client.search_logged_models([run.info.experiment_id])
    assert {m.model_id for m in models} == set(
        json.loads((b.root / "models/logged_models.json").read_text())["models"].values()
    )
    champion = client.get_model_version_by_alias("charrnn-hamlet", CHAMPION)
    assert champion.run_id == run.info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server.url)  # B's promote and compare, in this process
    assert "champion stays on version 1" in charrnn("promote", "--dry-run", cwd=b.root).stdout
    compared = charrnn(
        "compare", "models:/charrnn-hamlet/1", "models:/charrnn-hamlet@champion", "--length", "40", cwd=b.root
    )
    assert compared.returncode == 0 and compared.stdout.count("Far") >= 2, compared.stderr
    port = free_port()
    served = champion_served(port, b.root, {**b.env, "MLFLOW_TRACKING_URI": team_server.url})
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", served)
        status, body = post_json(
            f"http://127.0.0.1:{port}/invocations", {"dataframe_records": [{"prime": "To be", "length": 30, "seed": 1}]}
        )
        assert status == 200 and body["predictions"][0].startswith("To be"), body
    finally:
        served.terminate()
        served.wait(timeout=30)

    # the database's password is in no log and no MLflow field
    seen = [
        trained.stdout,
        trained.stderr,
        pushed.stdout,
        team_server.log.read_text(),
        json.dumps(run.data.tags),
        json.dumps(run.data.params),
    ]
    assert not any(team_server.password in text for text in seen)


def test_two_registers_at_once_leave_champion_on_the_lowest_val_loss(team_server, monkeypatch):
    """Two experiments' register stages at once on the shared registry (threads: their requests
    interleave on the server), several rounds: every round ends with champion on the lowest val loss."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server.url)
    mlflow.set_tracking_uri(team_server.url)
    name, key = "charrnn-racers", {"split": "race:0.9/0.05/0.05", "eval_protocol": PROTOCOL_ID}
    setup = MlflowClient(team_server.url)
    experiment = setup.create_experiment("charrnn-racers")
    randomly = random.Random(7)

    def best_pt(client):
        """A run and a finished logged model of it, as train and log_models leave them."""
        run = client.create_run(experiment)
        model = client.create_logged_model(experiment, name="race", source_run_id=run.info.run_id)
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        return PipelineRun(client, run.info.run_id), model.model_id

    for round in range(8):  # each round's two versions both beat the champion: the race is who ends on it
        losses = randomly.sample([2.0 - 0.1 * round - 0.01, 2.0 - 0.1 * round - 0.02], 2)
        racers = [best_pt(MlflowClient(team_server.url)) for _ in losses]
        start, failures = threading.Barrier(len(losses)), []

        def register_and_promote(racer, loss, start=start, failures=failures):  # this round's
            try:
                run, model_id = racer
                start.wait()
                register(run, model_id, "racers", {"val_loss": loss, "val_bpc": loss, "test_bpc": loss}, key)
                promote(run.client, name, key)
            except Exception as err:  # reported below, in the test's thread
                failures.append(err)

        threads = [
            threading.Thread(target=register_and_promote, args=(racer, loss)) for racer, loss in zip(racers, losses)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        assert champion_loss(setup, name) == min(losses)

    # the losing interleaving, made certain: X's promote reads the versions before Y's is registered and
    # writes after Y's promote has finished; its re-read must put champion back on Y's better version
    other_done = threading.Event()

    class LateClient(MlflowClient):
        """A real client whose first read of the versions once armed (reads = 0) is acted on only once the
        other promote is done."""

        reads = None

        def search_model_versions(self, *args, **kwargs):
            found = super().search_model_versions(*args, **kwargs)
            if self.reads is not None:
                self.reads += 1
                if self.reads == 1:
                    other_done.wait(timeout=120)
            return found

    (x, x_model), (y, y_model) = best_pt(LateClient(team_server.url)), best_pt(MlflowClient(team_server.url))
    register(x, x_model, "racers", {"val_loss": 1.05, "val_bpc": 1.05, "test_bpc": 1.05}, key)
    x.client.reads = 0  # armed after register, which reads the versions too: promote's first read is the late one
    late = threading.Thread(target=promote, args=(x.client, name, key))
    late.start()
    register(y, y_model, "racers", {"val_loss": 1.04, "val_bpc": 1.04, "test_bpc": 1.04}, key)
    promote(y.client, name, key)
    other_done.set()
    late.join()
    assert champion_loss(setup, name) == 1.04


def champion_loss(client, name):
    return float(client.get_model_version_by_alias(name, CHAMPION).tags["val_loss"])


def test_a_corrupted_object_in_the_dvc_remote_is_refused_by_pull(tmp_path):
    """Bit rot in the remote: an object whose bytes no longer match its md5, still read-only as DVC left
    it. The project's remote verifies what it downloads (.dvc/config: verify), so a teammate's pull fails
    and leaves neither the file nor the bad object in the clone's cache (unverified, it was fetched and
    checked out silently, and `dvc status` called the clone up to date)."""

    def dvc(folder, *args):
        return subprocess.run([BIN / "dvc", *args], cwd=folder, capture_output=True, text=True)

    a = tmp_path / "a"
    subprocess.run(["git", "init", "-q", str(a)], check=True)
    dvc(a, "init", "-q")
    shutil.copyfile(ROOT / ".dvc/config", a / ".dvc/config")  # the project's remote: ../charrnn-storage
    (a / "best.pt").write_bytes(random.Random(0).randbytes(100_000))
    assert dvc(a, "add", "-q", "best.pt").returncode == 0
    git(SimpleNamespace(root=a, env=None), "add", "-A")
    git(SimpleNamespace(root=a, env=None), "commit", "-qm", "a model")
    assert dvc(a, "push", "-q").returncode == 0

    [stored] = [path for path in (tmp_path / "charrnn-storage").rglob("*") if path.is_file()]
    stored.chmod(0o644)
    with stored.open("r+b") as file:
        file.seek(50_000)
        file.write(b"\xde\xad\xbe\xef")
    stored.chmod(0o444)

    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(a), str(b)], check=True)
    pulled = dvc(b, "pull")
    assert pulled.returncode != 0, pulled.stdout + pulled.stderr
    assert "best.pt" in pulled.stderr
    assert not (b / "best.pt").exists()
    assert not [path for path in (b / ".dvc/cache").rglob("*") if path.is_file()]
