"""The README's pictures of the MLflow UI and of `dvc plots show`, as PNGs in docs/img/.

Run on demand (not in CI) from the project root, after at least two training runs:

    dvc repro && dvc exp run -S lstm_size=256
    python docs/screenshots.py

Needs the `docs` extra (`pip install -e '.[docs]'`: Playwright), which drives the OS's chromium
(`apt-get install chromium`), and npm. Starts `mlflow server` on a free port of 127.0.0.1 against the
project's store (or uses the server that MLFLOW_TRACKING_URI names), takes the experiment of
params.yaml and its two latest finished runs, and writes

    mlflow-charts.png   the experiment's runs in the chart view, filtered to val_: val_loss, val_bpc per step
    mlflow-models.png   its Models tab: every logged checkpoint with its val_loss and val_bpc (the open-source
                        UI sorts this list by creation time only: its sorting by metrics is switched off)
    mlflow-compare.png  the two runs compared: val_loss against the params that differ
    mlflow-registry.png the champion's page in the model registry: its metrics, tags and history
    dvc-plots.png       `dvc plots show`: the workspace's train and val loss curves

dvc's plot page loads vega from a CDN; the page gets the same files from the npm registry's packages
instead (`npm pack`), so no CDN needs to be reachable.
"""

import json
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from mlflow import MlflowClient
from playwright.sync_api import Error as BrowserError, sync_playwright

from charrnn import params
from charrnn.tracking import registry, runs, store
from charrnn.errors import CharRNNError, exit_on_error

IMG = Path("docs/img")
VIEWPORT = {"width": 1500, "height": 1000}
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ML_VIEW = "workflowType=machine_learning"  # the sidebar of model training, not of GenAI


@contextmanager
def mlflow_server(store):
    """The URL of an MLflow server on the store: `store` itself if it is one, else a new one on 127.0.0.1."""
    if store.startswith(("http://", "https://")):
        yield store.rstrip("/")
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(120):
            if server.poll() is not None:
                lines = server.stdout.read().strip().splitlines() or ["no output"]
                raise CharRNNError(f"mlflow server exited with status {server.returncode}: {lines[-1]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise CharRNNError(f"mlflow server on {url} did not answer within a minute")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def settle(page, selector):
    """Wait until `selector` shows, then a moment for the charts to finish drawing."""
    page.locator(selector).first.wait_for(timeout=60_000)
    page.wait_for_timeout(2000)


def charts(page, url, experiment_id):
    page.goto(f"{url}/#/experiments/{experiment_id}/runs?{ML_VIEW}&compareRunsMode=CHART")
    page.get_by_placeholder("Search metric charts").fill("val_")
    settle(page, ".js-plotly-plot")
    close_assistant = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close_assistant.is_visible():  # MLflow opens its chat panel on a first visit
        close_assistant.click()
        page.wait_for_timeout(1000)
    page.screenshot(path=IMG / "mlflow-charts.png")


def models(page, url, experiment_id):
    page.goto(f"{url}/#/experiments/{experiment_id}/models?{ML_VIEW}")
    settle(page, "[role=columnheader] >> text=val_loss")
    page.get_by_role("button", name="Columns").click()
    for column in ("Status", "Logged from", "Dataset"):  # room for the metrics
        page.get_by_title(column, exact=True).click()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Columns").blur()
    page.wait_for_timeout(1000)
    page.screenshot(path=IMG / "mlflow-models.png")


def compare(page, url, experiment_id, runs):
    ids = quote(json.dumps([run.info.run_id for run in runs]))
    page.goto(f"{url}/#/compare-runs?runs={ids}&experiments={quote(json.dumps([experiment_id]))}&{ML_VIEW}")
    settle(page, ".js-plotly-plot")
    first, second = (run.data.params for run in runs)
    differing = [key for key in sorted(first) if first[key] != second.get(key)]
    page.get_by_role("button", name="Clear All").click()
    params_box, metrics_box = page.get_by_role("combobox").all()[:2]
    for box, names in ((params_box, differing), (metrics_box, ["val_loss"])):
        for name in names:
            box.click()
            page.keyboard.type(name)
            page.keyboard.press("Enter")
        page.keyboard.press("Escape")
    page.get_by_role("switch", name="Parameters - Show diff only").click()
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 1250})  # the plot, run details, params
    page.get_by_text("Comparing ").scroll_into_view_if_needed()
    settle(page, ".js-plotly-plot")
    page.screenshot(path=IMG / "mlflow-compare.png")


def champion(page, url, name):
    version = MlflowClient(url).get_model_version_by_alias(name, registry.CHAMPION)
    page.goto(f"{url}/#/models/{name}/versions/{version.version}?{ML_VIEW}")
    settle(page, f"text={registry.CHAMPION}")
    page.screenshot(path=IMG / "mlflow-registry.png", full_page=True)


def npm_file(spec, folder):
    """The file that a CDN serves for an npm package spec such as vega-lite@5.2.0."""
    packed = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", folder],
                            capture_output=True, text=True)
    if packed.returncode != 0:
        raise CharRNNError(f"npm pack {spec} failed: {packed.stderr.strip().splitlines()[-1:]}")
    with tarfile.open(Path(folder) / json.loads(packed.stdout)[0]["filename"]) as tar:
        package = json.load(tar.extractfile("package/package.json"))
        main = package.get("jsdelivr") or package.get("unpkg") or package["main"]
        return tar.extractfile(f"package/{main.removeprefix('./')}").read()


def dvc_plots(page):
    shown = subprocess.run([sys.executable, "-m", "dvc", "plots", "show"], capture_output=True, text=True)
    if shown.returncode != 0:
        raise CharRNNError(f"dvc plots show failed: {(shown.stderr.strip().splitlines() or ['no output'])[-1]}")
    html = Path("dvc_plots/index.html")
    with tempfile.TemporaryDirectory() as folder:
        scripts = {url: npm_file(spec, folder)
                   for url, spec in re.findall(r'src="(https://cdn\.jsdelivr\.net/npm/([^"]+))"', html.read_text())}
    page.route("https://cdn.jsdelivr.net/**",
               lambda route: route.fulfill(body=scripts[route.request.url], content_type="text/javascript"))
    page.goto(html.resolve().as_uri())
    settle(page, ".vega-embed .marks")
    page.locator(".vega-embed").first.screenshot(path=IMG / "dvc-plots.png")


@exit_on_error
def main():
    chromium = shutil.which("chromium")
    if chromium is None:
        raise CharRNNError("no chromium on PATH: apt-get install chromium")
    if shutil.which("npm") is None:
        raise CharRNNError("no npm on PATH (dvc's plot page needs vega from it): apt-get install npm")
    vocab = Path("data/prepared/vocab.json")
    if not vocab.exists():
        raise CharRNNError("no data/prepared/vocab.json: run this from the project root after `dvc repro`")
    corpus = json.loads(vocab.read_text())["corpus"]
    name = runs.experiment_name(params.load(), corpus)
    IMG.mkdir(parents=True, exist_ok=True)
    with mlflow_server(store.tracking_uri()) as url, sync_playwright() as playwright:
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name(name)
        runs = experiment and client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'",
                                                 order_by=["attributes.start_time DESC"], max_results=2)
        if not runs or len(runs) < 2:
            raise CharRNNError(f"experiment {name} needs two finished runs: dvc repro, then dvc exp run -S ...")
        try:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport=VIEWPORT)
            charts(page, url, experiment.experiment_id)
            models(page, url, experiment.experiment_id)
            compare(page, url, experiment.experiment_id, runs)
            champion(page, url, registry.model_name(corpus))
            dvc_plots(browser.new_page(device_scale_factor=2))  # a small plot: twice the pixels
            browser.close()
        except BrowserError as err:  # say a newer MLflow changed a view: which step, waiting for what
            lines = str(err).strip().splitlines()
            raise CharRNNError(f"{lines[0]} ({lines[-1].strip()})") from None
    for path in sorted(IMG.glob("*.png")):
        print(path)


if __name__ == "__main__":
    main()
