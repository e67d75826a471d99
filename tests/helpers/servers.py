"""Servers on 127.0.0.1: a free port, a charrnn or MLflow command serving there, waiting for one to answer,
a JSON request."""

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


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
        except (OSError, http.client.HTTPException):  # not yet listening (or, rarely, connected to itself)
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def post_json(url, payload):
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def serving(command, *args, cwd, env, group=False):
    """The venv's `command` (charrnn, mlflow) with `args` started in `cwd`, its output and errors in one
    pipe: stop it with terminate(). With `group`, it leads a process group of its own, which a signal to
    its pid's group reaches whole (`mlflow server` serves from a child process)."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / command), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=group,
    )


def champion_served(port, cwd, env):
    """`mlflow models serve` of the champion on 127.0.0.1:`port`, as README's Serving runs it."""
    return serving(
        "mlflow",
        "models",
        "serve",
        "-m",
        "models:/charrnn-hamlet@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        cwd=cwd,
        env=env,
    )
