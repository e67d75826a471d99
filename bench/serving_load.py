"""The served model under load: small requests among large ones, on 127.0.0.1; stops by itself.

    python bench/serving_load.py [--checkpoint models/best.pt] [--seconds 60] [--large 7] [--small 2] [--pause 0.5]

Saves the checkpoint as charrnn's MLflow model (the one the log_models stage logs) in a scratch
folder, serves it with `mlflow models serve` exactly as the docs say, and for --seconds keeps
--large clients sending the largest request the served model admits (two rows of 10,000
characters) and --small clients sending a small one (20 characters) and pausing --pause seconds,
each client one request at a time; then prints the latencies of each kind (median, 95th percentile, max)
and the answers by HTTP status (429: a large request refused while MAX_LARGE were in flight; 504: the server's timeout).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import at_least, machine

from charrnn.errors import CharRNNError, exit_on_error

LARGE = {
    "dataframe_records": [{"prime": "Far", "length": 10_000, "seed": 1}, {"prime": "Far", "length": 10_000, "seed": 2}]
}
SMALL = {"dataframe_records": [{"prime": "Far", "length": 20, "seed": 1}]}


def post(url, payload, timeout=300):
    """(HTTP status, seconds, body) of one request."""
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    return status, time.perf_counter() - start, body


def save_model(checkpoint, folder):
    import mlflow

    from charrnn.tracking.logged_models import served_model

    mlflow.pyfunc.save_model(folder / "model", **served_model(checkpoint, folder))
    return folder / "model"


@exit_on_error
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="models/best.pt", help="default: %(default)s (after dvc repro)")
    parser.add_argument("--seconds", type=at_least(float, 1), default=60)
    parser.add_argument("--large", type=at_least(int, 0), default=7, help="clients sending large requests")
    parser.add_argument("--small", type=at_least(int, 1), default=2, help="clients sending small requests")
    parser.add_argument(
        "--pause", type=at_least(float, 0), default=0.5, help="seconds between a small client's requests"
    )
    parser.add_argument("--port", type=at_least(int, 1), default=5099)
    args = parser.parse_args()
    if not Path(args.checkpoint).is_file():
        raise CharRNNError(f"{args.checkpoint} not found (run dvc repro, or dvc pull, first)")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="charrnn-serve-") as scratch:
        model = save_model(Path(args.checkpoint).resolve(), Path(scratch))
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "models",
                "serve",
                "-m",
                str(model),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(args.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
        )
        try:
            url = f"http://127.0.0.1:{args.port}"
            for _ in range(120):
                try:
                    urllib.request.urlopen(f"{url}/ping", timeout=2)
                    break
                except OSError:
                    time.sleep(1)
            else:
                raise CharRNNError("the model server did not start in 120 s")
            results = {"large": [], "small": []}
            stop_at = time.monotonic() + args.seconds

            def client(kind, payload):
                while time.monotonic() < stop_at:
                    status, seconds, body = post(f"{url}/invocations", payload)
                    results[kind].append((status, seconds, b"Traceback" in body or b"site-packages" in body))
                    if status == 429 or kind == "small":
                        time.sleep(args.pause)  # as a polite client would after a 429; the small ones' pace

            threads = [threading.Thread(target=client, args=("large", LARGE)) for _ in range(args.large)]
            threads += [threading.Thread(target=client, args=("small", SMALL)) for _ in range(args.small)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(
        f"{args.checkpoint} served by `mlflow models serve`; {args.large} clients of large requests (2 rows x "
        f"10,000 characters) and {args.small} of small ones (20 characters, {args.pause:g} s apart) for "
        f"{args.seconds:.0f} s:"
    )
    for kind, answers in results.items():
        answered = sorted(seconds for status, seconds, _ in answers if status == 200)
        statuses = {
            status: sum(1 for s, _, _ in answers if s == status) for status in sorted({s for s, _, _ in answers})
        }
        line = f"  {kind:<5} {len(answers)} requests, by status {statuses}"
        if answered:
            p95 = answered[min(len(answered) - 1, int(0.95 * len(answered)))]
            line += (
                f"; answered in median {statistics.median(answered):.2f} s, 95 % within {p95:.2f} s, "
                f"max {answered[-1]:.2f} s"
            )
        print(line)
    if any(leak for answers in results.values() for *_, leak in answers):
        print("  a response body carried a stack trace or a server path")


if __name__ == "__main__":
    main()
