"""README's pictures, taken as a new user following README sees them, as PNGs in docs/img/.

Run on demand (never in CI or the tests) from the project root, after `dvc repro`:

    python docs/screenshots.py

It runs `charrnn ui` as README says (on a free port) and opens the links it prints in headless
Chromium with a new, empty profile and a 1500 x 1000 window, clicking nothing; it waits until the
page has drawn (as a user would), then takes it:

    mlflow-charts.png    the experiment's training runs as charts (the first link)
    mlflow-registry.png  the champion's page in the model registry (the last link)

and `dvc plots show`'s page as dvc-plots.png; then it runs `charrnn play` as README says and, in
"Watch it learn", lets the kept checkpoints of the champion's run write 300 characters each:

    play.png             the play page once they have written That page loads vega from a CDN, which machines here
cannot reach: a copy of the page gets the same files from the npm registry's packages (`npm pack`).
Needs the `docs` extra (`pip install -e '.[docs]'`: Playwright, which drives the OS's chromium:
`apt-get install chromium`) and npm.
"""

import json
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Error as BrowserError
from playwright.sync_api import sync_playwright

from charrnn.errors import CharRNNError, exit_on_error

IMG = Path("docs/img")
WINDOW = {"width": 1500, "height": 1000}
# no background connections (this machine's closed network refuses them, slowly)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PICTURES = {"training runs": "mlflow-charts.png", "the champion": "mlflow-registry.png"}
PLAY_LENGTH = "300"
DRAWN = {
    "mlflow-charts.png": ".js-plotly-plot",
    "mlflow-registry.png": "text=champion",
    "dvc-plots.png": ".vega-embed .marks",
}


@contextmanager
def fresh_page(playwright, window=WINDOW):
    """A page of headless Chromium in a new, empty profile, as a new user's browser."""
    with tempfile.TemporaryDirectory() as profile:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_FLAGS, viewport=window
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


def screenshot(playwright, url, path, window=WINDOW):
    """`url` in a new, empty profile, once what it draws is there (and a moment more), as `path`."""
    with fresh_page(playwright, window) as page:
        try:
            page.goto(url)
            page.locator(DRAWN[path.name]).first.wait_for(timeout=120_000)
            page.wait_for_timeout(5000)
            page.screenshot(path=path)
        except BrowserError as err:  # say a newer MLflow changed a view: waiting for what
            raise CharRNNError(f"{url}: {str(err).strip().splitlines()[0]}") from None


def play_page(playwright, port):
    """`charrnn play` on `port`: the champion's run learning, as play.png."""
    play = subprocess.Popen(
        [str(Path(sys.executable).parent / "charrnn"), "play", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = play.stdout.readline()
        if not line.startswith("charrnn play: http"):
            raise CharRNNError(f"charrnn play: {line.strip() or 'exited'}")
        with fresh_page(playwright) as page:
            page.goto(line.split()[2])
            page.click("#mode-learn")
            page.wait_for_function("document.querySelector('#learn-list').textContent.includes('steps')")
            page.fill("#length", PLAY_LENGTH)
            page.click("#write")
            page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')", timeout=120_000)
            page.screenshot(path=IMG / "play.png")
    finally:
        play.terminate()
        play.wait(timeout=30)


def ui_links(port):
    """Start `charrnn ui` on `port`; return (the process, {what: link}) once it has printed its links."""
    ui = subprocess.Popen(
        [str(Path(sys.executable).parent / "charrnn"), "ui", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed = {}
    for line in ui.stdout:
        if line.startswith("Ctrl-C") or line.startswith("error:"):
            if line.startswith("error:"):
                raise CharRNNError(f"charrnn ui: {line.strip()}")
            return ui, printed
        what, _, link = line.strip().partition(": http")
        if link and line.startswith("  "):
            printed[what] = "http" + link
    raise CharRNNError("charrnn ui printed no links: run `dvc repro` first")


def npm_file(spec, folder):
    """The file that a CDN serves for an npm package spec such as vega-lite@5.2.0."""
    packed = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", folder], capture_output=True, text=True
    )
    if packed.returncode != 0:
        raise CharRNNError(f"npm pack {spec} failed: {packed.stderr.strip().splitlines()[-1:]}")
    with tarfile.open(Path(folder) / json.loads(packed.stdout)[0]["filename"]) as tar:
        package = json.load(tar.extractfile("package/package.json"))
        main = package.get("jsdelivr") or package.get("unpkg") or package["main"]
        return tar.extractfile(f"package/{main.removeprefix('./')}").read()


def dvc_plots(playwright):
    shown = subprocess.run([sys.executable, "-m", "dvc", "plots", "show"], capture_output=True, text=True)
    if shown.returncode != 0:
        raise CharRNNError(f"dvc plots show failed: {(shown.stderr.strip().splitlines() or ['no output'])[-1]}")
    html = Path("dvc_plots/index.html").read_text()
    with tempfile.TemporaryDirectory() as folder:
        for number, (url, spec) in enumerate(re.findall(r'src="(https://cdn\.jsdelivr\.net/npm/([^"]+))"', html)):
            (Path(folder) / f"{number}.js").write_bytes(npm_file(spec, folder))
            html = html.replace(f'src="{url}"', f'src="{number}.js"')
        page = Path(folder) / "index.html"
        page.write_text(html)
        screenshot(playwright, page.as_uri(), IMG / "dvc-plots.png", window={"width": 490, "height": 410})


@exit_on_error
def main():
    for tool in ("chromium", "npm", "dvc"):
        if shutil.which(tool) is None and not (Path(sys.executable).parent / tool).exists():
            raise CharRNNError(f"no {tool} on PATH (see this file's docstring)")
    IMG.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ui, links = ui_links(port)
    with sync_playwright() as playwright:
        try:
            for what, link in links.items():
                name = next((file for prefix, file in PICTURES.items() if what.startswith(prefix)), None)
                if name:
                    screenshot(playwright, link, IMG / name)
                    print(IMG / name, "from", link)
        finally:
            ui.terminate()
            ui.wait(timeout=30)
        dvc_plots(playwright)
        print(IMG / "dvc-plots.png")
        play_page(playwright, port)
        print(IMG / "play.png")


if __name__ == "__main__":
    main()
