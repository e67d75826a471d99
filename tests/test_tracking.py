"""MLflow for real: the local sqlite store, a real `mlflow server`, the registry and a served model."""

import http.client
import json
import math
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from charrnn.commands.ui import links
from charrnn.core import checkpoint
from charrnn.core.protocol import PROTOCOL_ID
from charrnn.errors import CharRNNError
from charrnn.tracking.model_uris import download_checkpoint
from charrnn.tracking.registry import CHAMPION, promote, register
from charrnn.tracking.runs import PipelineRun

from helpers.configs import PIPELINE, write_params
from helpers.running import assert_clean_error, charrnn, interrupting, prepare, run_stage
from helpers.servers import free_port, post_json, serving, wait_for


def test_one_run_spans_the_stages(built):
    client, run = built.client, built.runs["32"]  # the workspace's: the experiment `wider`
    run_id = run.info.run_id
    assert built.experiment.artifact_location.startswith((built.root / "mlruns").as_uri())
    assert json.loads((built.root / "models/mlflow_run.json").read_text())["run_id"] == run_id
    assert run.info.status == "FINISHED" and run.info.run_name == "wider"
    assert (
        run.data.params["lstm_size"] == "32" and "sample.prime" not in run.data.params
    )  # the sample stage's, not the training's
    assert {"corpus", "corpus_sha256", "device", "split"} <= run.data.tags.keys()
    assert run.data.tags["eval_protocol"] == PROTOCOL_ID
    assert run.data.tags["corpus_sha256"] == "048e9e99c691ebac2756b8442a15291ca13adb7880104a3486cdb2c67e42bdaf"
    # MLflow's own fields of where a run came from, which its run page shows; no empty tag
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=built.root, capture_output=True, text=True).stdout.strip()
    assert run.data.tags["mlflow.source.name"] == "stages/train.py" and run.data.tags["mlflow.source.type"] == "LOCAL"
    assert run.data.tags["mlflow.source.git.commit"] == commit and run.data.tags["mlflow.user"]
    assert run.data.tags["dvc_exp_name"] == "wider" and "dvc_exp_name" not in built.runs["8"].data.tags
    assert all(value != "" for value in run.data.tags.values())
    # the curves: one point per validation (every 50 steps, at each kept checkpoint, at the end), none at
    # step 0; the single figures: at step 0 only
    for curve in ("loss/train", "loss/val", "loss/val_bpc", "lr", "chars_per_sec"):
        assert [m.step for m in client.get_metric_history(run_id, curve)] == [40, 50, 80, 100, 120, 143], curve
    for figure in ("num_params", "best_val_loss", "best_step", "val_loss", "val_bpc", "test_loss", "test_bpc"):
        assert [m.step for m in client.get_metric_history(run_id, figure)] == [0], figure
    assert "train_loss" not in run.data.metrics  # the curve under one name only
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"samples", "plots", "vocab.json"} <= artifacts
    samples = sorted(a.path for a in client.list_artifacts(run_id, "samples"))
    assert [path.split("/")[1].split("_")[0] for path in samples] == ["best.txt", "i120", "i40", "i80"]

    # the evaluate stage scores best.pt as the training loop did (one protocol, whatever the params)
    evaluation = json.loads((built.root / "metrics/eval.json").read_text())
    assert evaluation["val_loss"] == checkpoint.load(built.root / "models/best.pt")["val_loss"]
    assert evaluation["eval_protocol"] == PROTOCOL_ID
    champion = client.get_model_version_by_alias("charrnn-hamlet", CHAMPION)
    assert str(champion.version) == built.versions["32"] and champion.tags["run_id"] == run_id
    assert float(champion.tags["val_loss"]) == evaluation["val_loss"]
    assert f"champion stays on version {champion.version}" in charrnn("promote", "--dry-run", cwd=built.root).stdout


def test_queued_experiments_ran_two_at_a_time_into_the_one_store(built, monkeypatch):
    runs = built.runs.values()
    assert sorted(built.runs) == ["16", "32", "8"] and all(run.info.status == "FINISHED" for run in runs)
    assert {built.runs[size].data.tags["dvc_exp_name"] for size in ("16", "32")} == {"narrow", "wider"}
    assert all(run.info.run_name == run.data.tags.get("dvc_exp_name", run.info.run_name) for run in runs)
    # threads: auto shares the CPUs among the queue's two workers; the first run, alone, took them all
    omp, cpus = built.env.get("OMP_NUM_THREADS"), len(os.sched_getaffinity(0))
    expected = [int(omp)] * 3 if omp else [cpus, max(1, cpus // 2), max(1, cpus // 2)]
    assert [built.runs[size].data.metrics["threads"] for size in ("8", "16", "32")] == expected
    best = min(runs, key=lambda run: run.data.metrics["val_loss"])
    assert built.client.get_model_version_by_alias("charrnn-hamlet", CHAMPION).tags["run_id"] == best.info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{built.root}/mlruns/mlflow.db")
    for size, version in built.versions.items():  # each registered its own best.pt
        model = checkpoint.load(download_checkpoint(f"models:/charrnn-hamlet/{version}"))
        assert model["model_config"]["lstm_size"] == int(size)
        assert model["val_loss"] == pytest.approx(built.runs[size].data.metrics["best_val_loss"])


def test_ui_serves_the_store_and_links_to_the_training_view(built, tmp_path):
    port = free_port()
    ui = serving("charrnn", "ui", "--port", str(port), cwd=built.root, env=built.env)
    try:
        printed = []
        for line in ui.stdout:
            printed.append(line.rstrip("\n"))
            if line.startswith(("Ctrl-C", "error:")):
                break
        url = f"http://127.0.0.1:{port}"
        store = f"sqlite:///{built.root.resolve()}/mlruns/mlflow.db"
        experiment = f"{url}/#/experiments/{built.experiment.experiment_id}"
        champion = built.versions["32"]
        assert printed == [
            f"MLflow UI on {store}: {url}",
            f"  training runs (loss curves): {experiment}/runs?workflowType=machine_learning&compareRunsMode=CHART",
            f"  checkpoints (logged models): {experiment}/models?workflowType=machine_learning",
            f"  the champion, charrnn-hamlet version {champion}: {url}/#/models/charrnn-hamlet/versions/{champion}"
            "?workflowType=machine_learning",
            "Ctrl-C stops it",
        ], printed
        with urllib.request.urlopen(url, timeout=30) as page:  # the UI itself
            assert b"MLflow" in page.read()
        with urllib.request.urlopen(
            f"{url}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=charrnn-hamlet", timeout=30
        ) as answer:  # on the project's store
            assert json.loads(answer.read())["experiment"]["experiment_id"] == built.experiment.experiment_id
        # a page whose own name points at this machine (DNS rebinding) sends its name as Host: refused,
        # a private network's address included (MLflow's default lets those in)
        for forged in ("rebound.example", "192.168.1.5"):
            request = urllib.request.Request(url, headers={"Host": f"{forged}:{port}"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 403, forged
    finally:
        ui.terminate()  # as Ctrl-C: the UI's server stops with it
        ui.wait(timeout=60)
    assert ui.returncode == 0
    with socket.socket() as probe:  # nothing is left serving (the port may still be in TIME_WAIT)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))

    with socket.socket() as taken:  # a port another server listens on
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert_clean_error(
            charrnn("ui", "--port", str(busy), cwd=built.root), f"cannot serve the UI on 127.0.0.1:{busy}"
        )
    assert links("http://x", MlflowClient(f"sqlite:///{tmp_path}/empty.db"), "charrnn-hamlet", "charrnn-hamlet") == []


def test_ui_on_a_store_that_does_not_answer_says_so_before_it_starts_a_server(tmp_path):
    port = free_port()  # nothing listens there
    write_params(tmp_path, **PIPELINE)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"postgresql://alice:s3cret@127.0.0.1:{port}/mlflow"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "charrnn"), "ui", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_clean_error(
        result, f"the database server of the MLflow store postgresql://***@127.0.0.1:{port}/mlflow is unreachable"
    )


def test_ui_on_another_host_warns_what_it_opens_and_prints_links_that_open(built):
    port = free_port()
    ui = serving("charrnn", "ui", "--host", "0.0.0.0", "--port", str(port), cwd=built.root, env=built.env)
    try:
        printed = []
        for line in ui.stdout:  # up to the line with the UI's address (or the end, if it fails)
            printed.append(line)
            if line.startswith(("MLflow UI on", "error:")):
                break
        warning, first = printed[0], printed[-1]
        assert warning.startswith(
            f"WARNING: serving on 0.0.0.0, not on this machine alone: anyone who reaches port {port} here can read, "
            "change and delete this project's MLflow runs"
        ), printed
        url = first.split()[-1]
        assert url == f"http://127.0.0.1:{port}", first
        with urllib.request.urlopen(url, timeout=30) as page:
            assert b"MLflow" in page.read()
    finally:
        ui.terminate()
        ui.wait(timeout=60)


def test_champion_loads_in_a_fresh_process_and_samples(built):
    code = (
        "import mlflow, pandas as pd; "
        "m = mlflow.pyfunc.load_model('models:/charrnn-hamlet@champion'); "
        "print(repr(m.predict(pd.DataFrame({'prime': ['To be'], 'length': [40], 'seed': [3]}))[0]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**built.env, "MLFLOW_TRACKING_URI": f"sqlite:///{built.root}/mlruns/mlflow.db"},
    )
    assert result.returncode == 0, result.stderr
    text = eval(result.stdout.strip().splitlines()[-1])
    assert text.startswith("To be") and len(text) == 45

    streamed = charrnn(
        "sample", "--model", "models:/charrnn-hamlet@champion", "--length", "30", "--prime", "The", cwd=built.root
    )
    assert streamed.stdout.startswith("The") and len(streamed.stdout) == 3 + 30 + 1
    missing = charrnn("sample", "--model", "models:/charrnn-nothing@champion", cwd=built.root)
    assert_clean_error(missing, "cannot load models:/charrnn-nothing@champion")


def test_served_champion_answers_over_http(built):
    """`charrnn serve` (README's Serving): MLflow's scoring server behind charrnn's door."""
    port = free_port()
    server = serving("charrnn", "serve", "--port", str(port), cwd=built.root, env=built.env)
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", server)
        status, body = post_json(
            f"http://127.0.0.1:{port}/invocations", {"dataframe_records": [{"prime": "To be", "length": 60, "seed": 1}]}
        )
        assert status == 200, body
        assert body["predictions"][0].startswith("To be") and len(body["predictions"][0]) == 65

        for payload, message in [
            ({"dataframe_records": [{"prime": "To be", "length": 10**6}]}, "over the limit of"),
            ({"dataframe_records": [{"prime": "To be \u20ac", "length": 5}]}, "not in the"),
            ({"dataframe_records": [{"prime": "To be", "top_k": 0}]}, "top_k must be an integer from 1"),
            ({"dataframe_records": [{"length": 5}]}, "prime"),
            # what MLflow's schema enforcement used to convert or drop before the model saw it
            ({"dataframe_records": [{"prime": "To be", "length": 2.5}]}, "length must be an integer >= 0 (got 2.5)"),
            ({"dataframe_records": [{"prime": "To be", "length": True}]}, "length must be an integer >= 0 (got True)"),
            ({"dataframe_records": [{"prime": "To be", "lenght": 5}]}, "unknown column 'lenght'"),
            ({"dataframe_records": [{"prime": "To be", "seed": 2**70}]}, f"(got {2**70})"),
        ]:
            status, body = post_json(f"http://127.0.0.1:{port}/invocations", payload)
            assert status == 400 and message in body.get("message", ""), (payload, status, body)
            assert "\n" not in body["message"], body  # the model's line, without MLflow's copy of the table
        off = {"dataframe_records": [{"prime": "To be", "top_k": None, "length": 5}]}  # null top_k: off, as documented
        status, body = post_json(f"http://127.0.0.1:{port}/invocations", off)
        assert status == 200 and len(body["predictions"][0]) == 10, body

        # bodies MLflow cannot parse: a 400 with no stack trace and no server path
        for content_type, data in [
            ("text/csv", b'prime,length\n"To be,5\n'),
            ("application/vnd.apache.parquet", b"PAR1 not parquet"),
            ("application/json", b"[" * 100_000),
        ]:
            url = f"http://127.0.0.1:{port}/invocations"
            request = urllib.request.Request(url, data, {"Content-Type": content_type})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=60)
            body = refused.value.read()
            assert refused.value.code == 400, (content_type, body)
            assert not any(leak in body for leak in (b"stack_trace", b"Traceback", b"site-packages")), body
        # a body over the bound is refused from its Content-Length, before it is sent
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.putrequest("POST", "/invocations")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(400_000_000))
        connection.endheaders()
        answer = connection.getresponse()
        assert answer.status == 413 and b"over 8,388,608 bytes" in answer.read()
        connection.close()
        # a 1.5 MB prime (within the 8 MiB a body may have): refused in a short body, no stack trace, no path
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            json.dumps({"dataframe_records": [{"prime": "To be " * 250_000, "length": 5}]}).encode(),
            {"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as huge:
            urllib.request.urlopen(request, timeout=120)
        body = huge.value.read()
        assert huge.value.code == 400 and b"over the limit of 10,000 per prime" in body and len(body) < 10_000
        assert not any(leak in body for leak in (b"Traceback", b"site-packages", str(built.root).encode()))

        # a bounded load (stops by itself): five of the largest requests at once and small ones among them;
        # every small one is answered, the large ones answered or refused (429) beyond the three in flight
        large = {"dataframe_records": [{"prime": "To be", "length": 10_000}, {"prime": "To be", "length": 10_000}]}
        answers = {"large": [], "small": []}

        def ask(kind, payload):
            answers[kind].append(post_json(f"http://127.0.0.1:{port}/invocations", payload))

        crowd = [threading.Thread(target=ask, args=("large", large)) for _ in range(5)]
        crowd += [
            threading.Thread(target=ask, args=("small", {"dataframe_records": [{"prime": "To", "length": 10}]}))
            for _ in range(5)
        ]
        for thread in crowd:
            thread.start()
        for thread in crowd:
            thread.join()
        assert len(answers["large"]) == 5, answers["large"]  # each answered (a thread that raised added none)
        assert [status for status, _ in answers["small"]] == [200] * 5
        assert all(
            status == 200
            and len(body["predictions"][1]) == 10_005
            or status == 429
            and "the server is busy" in body["message"]
            for status, body in answers["large"]
        )

        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", b"{not json", {"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as malformed:
            urllib.request.urlopen(request, timeout=60)
        assert malformed.value.code == 400
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def registry(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/registry.db")
    client.create_registered_model("charrnn-x")

    def add(val_loss, split="s", protocol=PROTOCOL_ID):
        tags = {"val_loss": repr(val_loss), "split": split, "eval_protocol": protocol}
        return str(client.create_model_version("charrnn-x", source=(tmp_path / "model").as_uri(), tags=tags).version)

    return client, add


def key(split="s", protocol=PROTOCOL_ID):
    return {"split": split, "eval_protocol": protocol}


def test_promotion_picks_the_lowest_val_loss_of_the_same_split_and_protocol(registry, capsys):
    client, add = registry
    for loss in (1.5, 1.2, 1.4):
        add(loss)
    assert promote(client, "charrnn-x", key()) == ("2", 1.2)
    assert str(client.get_model_version_by_alias("charrnn-x", CHAMPION).version) == "2"
    assert promote(client, "charrnn-x", key()) == ("2", 1.2)  # idempotent
    assert "champion stays on version 2" in capsys.readouterr().out

    add(1.0, split="other")  # another split's loss is never compared with the champion's
    assert promote(client, "charrnn-x", key())[0] == "2"
    assert promote(client, "charrnn-x", key("other")) == ("2", 1.2)  # the champion of split s stays
    assert f"champion stays on version 2 (split s, eval_protocol {PROTOCOL_ID})" in capsys.readouterr().out
    add(0.9, protocol="bf16-s32-w100")  # nor is a loss measured another way
    assert promote(client, "charrnn-x", key()) == ("2", 1.2)
    add(1.1)
    assert promote(client, "charrnn-x", key(), dry_run=True)[0] == "6"
    assert "would move from version 2 (val 1.2000) to version 6 (val 1.1000)" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias("charrnn-x", CHAMPION).version) == "2"
    with pytest.raises(CharRNNError, match="no version of charrnn-x with split nope"):
        promote(client, "charrnn-x", key("nope"))
    assert promote(client, "charrnn-x", key("other"), switch_split=True) == ("4", 1.0)
    assert str(client.get_model_version_by_alias("charrnn-x", CHAMPION).version) == "4"


def test_a_model_with_a_non_finite_val_loss_is_never_champion(registry):
    client, add = registry
    add(1.3)
    add(float("nan"))  # a version an older charrnn registered from a NaN best.pt
    add(float("-inf"))
    assert promote(client, "charrnn-x", key()) == ("1", 1.3)
    add(float("nan"), split="nan")
    with pytest.raises(CharRNNError, match="no version of charrnn-x with split nan"):
        promote(client, "charrnn-x", key("nan"))
    # nor is such a model registered: the register stage stops with one line, before the registry changes
    with pytest.raises(CharRNNError, match="best.pt scores val loss nan: its weights are not a usable model"):
        register(None, "m-none", "x", {"val_loss": float("nan")}, key())


def test_sigterm_during_training_saves_last_step_and_marks_the_run_killed(project, mirror):
    prepare(project.root, mirror, **{**PIPELINE, "epochs": 4, "eval_every": 20, "keep_checkpoints": 0})
    # SIGTERM arrives as the second last.pt (step 40) is written: the step finishes, is saved, and training stops
    result = subprocess.run(
        [sys.executable, "stages/train.py"],
        cwd=project.root,
        env=interrupting(project.env, "TERM", 2),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 130 and result.stderr.strip().splitlines()[-1] == "interrupted", result.stderr
    assert "stopped at step 40: models/last.pt saved" in result.stdout
    last = project.root / "models" / "last.pt"
    assert checkpoint.load(last)["step"] == 40
    client = MlflowClient(f"sqlite:///{project.root}/mlruns/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("charrnn-hamlet").experiment_id])
    assert run.info.status == "KILLED"
    assert (project.root / "models" / "best.pt").exists()


def test_a_tracking_server_that_dies_mid_training_loses_no_point(project, mirror, tmp_path):
    """The server is killed as the first last.pt is saved: training goes on to the end (it used to retry
    for 515 s and die with a traceback), the stage then fails saying what the run lacks, and once the
    server is back a rerun completes the run from last.pt, its curves holding every row of loss.csv."""
    prepare(project.root, mirror, **{**PIPELINE, "epochs": 1, "eval_every": 20, "keep_checkpoints": 0})
    port, store = free_port(), tmp_path / "store"
    store.mkdir()

    def tracking_server():
        server = serving(
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{store}/mlflow.db",
            "--artifacts-destination",
            str(store / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            cwd=tmp_path,
            env=project.env,
            group=True,
        )
        wait_for(f"http://127.0.0.1:{port}/health", server)
        return server

    env = {**project.env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    server = tracking_server()
    try:
        result = subprocess.run(
            [sys.executable, "stages/train.py"],
            cwd=project.root,
            env=interrupting(env, "KILL", 1, pid=server.pid),
            capture_output=True,
            text=True,
            timeout=300,
        )
        server.wait(timeout=30)
        assert "WARNING: the MLflow store http://127.0.0.1" in result.stdout, result.stdout + result.stderr
        assert_clean_error(result, "training finished (models/best.pt and last.pt are saved), but the MLflow store")
        assert "validation points and its summary: once it answers, run dvc repro again" in result.stderr
        history = (project.root / "plots/train/loss.csv").read_text().splitlines()[1:]
        assert len(history) == 8 and checkpoint.load(project.root / "models/last.pt")["step"] == 143

        server = tracking_server()
        result = subprocess.run(
            [sys.executable, "stages/train.py"], cwd=project.root, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
        client = MlflowClient(f"sqlite:///{store}/mlflow.db")
        [run] = client.search_runs([client.get_experiment_by_name("charrnn-hamlet").experiment_id])
        steps = [int(line.split(",")[0]) for line in history]
        assert sorted(point.step for point in client.get_metric_history(run.info.run_id, "loss/val")) == steps
        assert run.info.status == "FINISHED" and "best_val_loss" in run.data.metrics
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_unreachable_tracking_server_is_one_clear_line(tmp_path):
    port = free_port()  # nothing listens there
    write_params(tmp_path, **PIPELINE)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mlflow_run.json").write_text('{"run_id": "0123"}')
    result = run_stage("evaluate", tmp_path, env={"MLFLOW_TRACKING_URI": f"http://alice:s3cret@127.0.0.1:{port}"})
    assert_clean_error(result, f"MLflow tracking server http://***@127.0.0.1:{port} is unreachable")
    assert "s3cret" not in result.stdout + result.stderr  # credentials never reach a log
    result = run_stage("evaluate", tmp_path, env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}/?token=s3cret"})
    assert_clean_error(result, f"MLflow tracking server http://127.0.0.1:{port}/?token=*** is unreachable")
    assert "s3cret" not in result.stdout + result.stderr  # nor in the query string


@pytest.mark.parametrize(
    "store, message",
    [
        (
            "sqlite:////nonexistent/x.db",
            "the MLflow store sqlite:////nonexistent/x.db is in a folder that does not exist",
        ),
        ("bogus://x", "cannot use the MLflow store bogus://x: Model registry functionality is unavailable"),
        ("corrupt", "file is not a database"),
        (
            "postgresql://alice:s3cret@127.0.0.1:{port}/mlflow",
            "the database server of the MLflow store postgresql://***@127.0.0.1:{port}/mlflow is unreachable",
        ),
        (
            "postgresql://127.0.0.1:{port}/mlflow?user=alice&password=s3cret",
            "the MLflow store postgresql://127.0.0.1:{port}/mlflow?user=***&password=*** is unreachable",
        ),
        # URIs that do not parse (ValueError's traceback): not echoed, their credentials cannot be found
        ("postgresql://alice:s3cret@[127.0.0.1/mlflow", "MLFLOW_TRACKING_URI is not a valid URI (Invalid IPv6 URL)"),
        ("mysql://alice:s3cret@host:port/mlflow", "MLFLOW_TRACKING_URI is not a valid URI (Port could not be cast"),
    ],
)
def test_a_store_mlflow_cannot_use_is_one_clear_line(store, message, tmp_path, monkeypatch):
    port = free_port()  # nothing listens there
    if store == "corrupt":  # the project's own store, damaged
        (tmp_path / "mlruns").mkdir()
        (tmp_path / "mlruns" / "mlflow.db").write_text("not a database")
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", store.format(port=port))
    result = charrnn("sample", "--model", "models:/charrnn-hamlet@champion", cwd=tmp_path)
    assert_clean_error(result, message.format(port=port))
    assert "s3cret" not in result.stdout + result.stderr


def test_unreachable_tracking_server_stops_training_before_it_changes_a_file(tmp_path, mirror):
    prepare(tmp_path, mirror, **{**PIPELINE, "resume": False})
    kept = tmp_path / "models" / "checkpoints" / "i100_l32_v2.0000.pt"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"a kept checkpoint of an earlier run")
    port = free_port()
    result = run_stage("train", tmp_path, env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})
    assert_clean_error(result, f"MLflow tracking server http://127.0.0.1:{port} is unreachable")
    assert [path.name for path in (tmp_path / "models").rglob("*")] == ["checkpoints", kept.name]


def test_a_diverged_training_marks_its_run_failed(tmp_path, monkeypatch):
    from charrnn.tracking.live import TrainingTracker
    from charrnn.training import loop as train_module

    from helpers.configs import tiny_corpus, tiny_params

    class Diverging(train_module.CharRNN):
        def forward(self, ids, state=None):
            logits, state = super().forward(ids, state)
            return (logits * float("nan") if self.training else logits), state

    monkeypatch.setattr(train_module, "CharRNN", Diverging)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    train_ids, val_ids, vocab = tiny_corpus()
    p = tiny_params(epochs=1)
    with pytest.raises(CharRNNError, match="training diverged"):
        with TrainingTracker(p, vocab) as tracker:
            train_module.train(p, train_ids, val_ids, vocab, tmp_path / "models", tracker=tracker)
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(tracker.run.id)
    assert run.info.status == "FAILED"


@pytest.fixture
def finished_run(tmp_path, monkeypatch):
    """(client, run id) of a run whose training finished, in an MLflow store of its own that the tracking
    code uses, from tmp_path as the project root."""
    from charrnn.tracking.live import TrainingTracker

    from helpers.configs import tiny_corpus, tiny_params

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    tracker = TrainingTracker(tiny_params(), tiny_corpus()[2])
    run_id = tracker.start(None)
    tracker.training_done()
    tracker.run.end_training()
    return MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), run_id


def test_a_run_or_experiment_deleted_between_stages_is_one_line(finished_run):
    """Moved to the UI's trash between train and a later stage: MLflow refused the stage's writes with a
    traceback. Now: one line with the restore command; a new training in a deleted experiment too."""
    client, run_id = finished_run
    client.delete_run(run_id)
    restore = f"mlflow runs restore --run-id {run_id}"
    with pytest.raises(CharRNNError, match=f"MLflow run {run_id} is deleted in .*{restore}"):
        PipelineRun.reopen(run_id)
    client.restore_run(run_id)
    experiment_id = client.get_run(run_id).info.experiment_id
    client.delete_experiment(experiment_id)
    with pytest.raises(CharRNNError, match=f"MLflow experiment {experiment_id} is deleted in .*--experiment-id"):
        PipelineRun.reopen(run_id)
    from charrnn.tracking.live import TrainingTracker

    from helpers.configs import tiny_corpus, tiny_params

    with pytest.raises(CharRNNError, match="MLflow experiment charrnn-tiny is deleted in .*or set tracking.experiment"):
        TrainingTracker(tiny_params(), tiny_corpus()[2]).start(None)


def test_a_huge_finite_val_loss_is_logged_not_a_traceback(tmp_path, monkeypatch):
    """A wild first validation (a finite loss of 1000 nats) made the perplexity overflow: OverflowError."""
    from charrnn.core.evaluate import loss_metrics
    from charrnn.tracking.live import TrainingTracker

    from helpers.configs import tiny_corpus, tiny_params

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    assert loss_metrics("val", 1000.0)["val_perplexity"] == math.inf
    with TrainingTracker(tiny_params(), tiny_corpus()[2]) as tracker:
        tracker.start(None)
        tracker.log({"step": 20, "train_loss": 900.0, "val_loss": 1000.0, "lr": 0.01, "chars_per_sec": 1.0})
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(tracker.run.id)
    assert run.data.metrics["loss/val"] == 1000.0


def test_a_run_left_running_by_a_killed_stage_never_stays_running(tmp_path, monkeypatch):
    """kill -9 runs no cleanup: a training killed leaves its run RUNNING until the next training in
    the same folder ends it (KILLED); a later stage never marks the run RUNNING, so one killed (which
    DVC may then restore from its run cache rather than rerun) leaves the run as training ended it."""
    from charrnn.tracking.live import TrainingTracker

    from helpers.configs import tiny_corpus, tiny_params

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    _, _, vocab = tiny_corpus()
    started = {}
    for folder in ("work", "other", "work"):  # a killed training here, a running one elsewhere, a new one here
        (tmp_path / folder).mkdir(exist_ok=True)
        monkeypatch.chdir(tmp_path / folder)
        tracker = TrainingTracker(tiny_params(seed=len(started)), vocab)
        started[len(started)] = tracker.start(None)
        tracker.training_done()
    tracker.run.end_training()  # the new one finishes
    assert [client.get_run(started[n]).info.status for n in range(3)] == ["KILLED", "RUNNING", "FINISHED"]
    PipelineRun.reopen(started[2]).log_metrics({"val_loss": 1.5})  # and the evaluate stage is killed
    assert client.get_run(started[2]).info.status == "FINISHED"


def test_a_stage_after_training_that_fails_leaves_the_trainings_status_and_names_itself(finished_run, monkeypatch):
    """An experiment that changes only `sample:` reruns the sample stage on the baseline's run: its
    failure (a top_k above the vocabulary) marked the baseline's finished run FAILED. The run's status is
    its training's; the failed stage is a tag until that stage succeeds."""
    client, run_id = finished_run
    monkeypatch.setenv("DVC_STAGE", "sample")
    with pytest.raises(CharRNNError, match="top_k"):
        with PipelineRun.reopen(run_id):
            raise CharRNNError("top_k must be between 1 and the vocabulary size 40")
    run = client.get_run(run_id)
    assert (run.info.status, run.data.tags.get("failed_stage")) == ("FINISHED", "sample")
    monkeypatch.setenv("DVC_STAGE", "evaluate")
    with PipelineRun.reopen(run_id):  # another stage's success says nothing of the sample stage
        pass
    assert client.get_run(run_id).data.tags.get("failed_stage") == "sample"
    monkeypatch.setenv("DVC_STAGE", "sample")
    with PipelineRun.reopen(run_id):
        pass
    run = client.get_run(run_id)
    assert (run.info.status, run.data.tags.get("failed_stage")) == ("FINISHED", None)


def test_a_corpus_name_that_mlflow_refuses_in_model_names_is_logged_and_registered(tmp_path, monkeypatch):
    """An own corpus file such as books/my.book.txt: MLflow refuses '.' (and / : % quotes) in a logged
    model's name, so the names carry '-' there; training, logging and registering all complete."""
    from dataclasses import replace

    from charrnn.core.evaluate import evaluate_checkpoint
    from charrnn.tracking.live import TrainingTracker
    from charrnn.tracking.logged_models import log_checkpoints
    from charrnn.tracking.registry import model_name
    from charrnn.tracking.runs import comparability
    from charrnn.training.loop import train

    from helpers.configs import tiny_corpus, tiny_params

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    train_ids, val_ids, vocab = tiny_corpus()
    vocab = replace(vocab, corpus="my.book")
    p = tiny_params(epochs=1, keep_checkpoints=20)
    with TrainingTracker(p, vocab) as tracker:
        train(p, train_ids, val_ids, vocab, tmp_path / "models", tracker=tracker)
    with PipelineRun.reopen(tracker.run.id) as run:
        logged = log_checkpoints(run, tmp_path / "models")
        evaluation = evaluate_checkpoint(
            tmp_path / "models" / "best.pt", vocab, {"val": val_ids, "test": val_ids}, "cpu"
        )
        version = register(run, logged["best_model_id"], vocab.corpus, evaluation, comparability(p, vocab))
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    names = sorted(client.get_logged_model(model_id).name for model_id in logged["models"].values())
    assert names == ["my-book-1x32-lstm-step20", "my-book-1x32-lstm-step39-best"]
    assert model_name("my.book") == "charrnn-my-book" and version == "1"
    # the register stage rerun after a kill -9 that came after the version was made: the same version
    client.delete_model_version_tag("charrnn-my-book", "1", "val_loss")  # killed before its last tags
    with PipelineRun.reopen(tracker.run.id) as run:
        assert register(run, logged["best_model_id"], vocab.corpus, evaluation, comparability(p, vocab)) == "1"
    versions = client.search_model_versions("name='charrnn-my-book'")
    assert len(versions) == 1 and versions[0].tags["val_loss"] == repr(evaluation["val_loss"])
