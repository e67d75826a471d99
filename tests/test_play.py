"""charrnn play: the command's refusals; the page's server on the shared tiny build (a real `charrnn
play` on 127.0.0.1, over the build's own MLflow store and checkpoints); then the page itself in
headless Chromium."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from charrnn.core import checkpoint
from charrnn.generation.sample import generate

from helpers.running import assert_clean_error, charrnn
from helpers.servers import free_port, wait_for

CHARRNN = str(Path(sys.executable).parent / "charrnn")
PRIME = "the "
# headless, and no background connections (a closed network refuses them, slowly): docs/screenshots.py's
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_a_port_it_cannot_use_is_one_line():
    assert_clean_error(charrnn("play", "--port", "70000"), "--port must be a port number from 0 to 65535 (got '70000')")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_clean_error(charrnn("play", "--port", str(port)), f"cannot serve the page on 127.0.0.1:{port}")


@pytest.mark.slow  # a server
def test_another_host_than_loopback_is_served_with_a_warning_and_a_link_that_opens(tmp_path):
    server = subprocess.Popen(
        [CHARRNN, "play", "--host", "0.0.0.0", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    try:
        warning, link = server.stderr.readline(), server.stdout.readline()
        assert warning.startswith("WARNING: serving on 0.0.0.0, not on this machine alone: anyone who reaches port")
        url = link.split()[2]
        assert url.startswith("http://127.0.0.1:")
        wait_for(f"{url}api/settings", server)
        with urllib.request.urlopen(f"{url}api/models", timeout=30) as answer:  # an empty project: nothing yet
            assert json.loads(answer.read()) == {"registered": [], "checkpoints": [], "problem": None}
        assert not (tmp_path / "mlruns").exists()  # looking created no store
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def page(built):
    """`charrnn play` serving the shared build: its URL, with `server` (the process) and `built`."""
    port = free_port()
    server = subprocess.Popen(
        [CHARRNN, "play", "--port", str(port)],
        cwd=built.root,
        env=built.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/api/settings", server, seconds=120)
    page = type("Page", (), {"url": url, "port": port, "server": server, "built": built})
    yield page
    server.terminate()
    server.wait(timeout=30)


def post(page, body, headers=None):
    """(status, the JSON answer or the list of (event, data) of a stream) of POST /api/generate."""
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=120)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request("POST", "/api/generate", raw, {"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    if response.getheader("content-type", "").startswith("text/event-stream"):
        return response.status, events(response.read().decode())
    return response.status, json.loads(response.read())


def events(text):
    found = []
    for block in filter(None, text.split("\n\n")):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((lines["event"], json.loads(lines["data"])))
    return found


def written(stream):
    """The texts of a stream's events: the prime, then every text event's characters."""
    start = stream[0][1]
    texts = [start["prime"]] * len(start["texts"])
    for name, data in stream:
        if name == "text":
            texts = [text + chunk for text, chunk in zip(texts, data["texts"])]
    return texts


def get(page, path, host=None):
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=60)
    connection.request("GET", path, headers={"Host": host} if host else {})
    response = connection.getresponse()
    body = response.read()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, body.decode()


def test_the_page_offers_every_registered_version_the_champion_first_and_the_workspace_checkpoints(page):
    status, listing = get(page, "/api/models")
    assert status == 200
    registered = [entry["id"] for entry in listing["registered"]]
    versions = page.built.versions
    assert registered == [
        "models:/charrnn-hamlet@champion",
        *(f"models:/charrnn-hamlet/{n}" for n in sorted(versions.values(), key=int, reverse=True)),
    ]
    assert f"(version {versions['32']}, val " in listing["registered"][0]["label"]  # wider holds champion
    assert listing["registered"][0]["label"].endswith(" bpc)")
    local = [entry["id"] for entry in listing["checkpoints"]]
    kept = sorted((page.built.root / "models" / "checkpoints").glob("*.pt"), key=lambda p: checkpoint.load(p)["step"])
    assert local == ["models/best.pt", *(f"models/checkpoints/{path.name}" for path in kept)] and len(kept) == 3
    status, page_html = get(page, "/")
    assert status == 200 and "<title>charrnn play</title>" in page_html and "http" not in page_html  # no CDN


def test_a_text_streams_as_it_is_written_and_is_the_text_charrnn_sample_writes(page):
    status, stream = post(
        page,
        {
            "models": ["models/best.pt"],
            "prime": PRIME,
            "length": 3000,
            "seed": 7,
            "top_k": None,
            "top_p": 0.9,
            "temperature": 0.8,
            "precision": "fp32",
        },
    )
    assert status == 200
    names = [name for name, _ in stream]
    assert names[0] == "start" and names[-1] == "done" and names.count("text") > 1  # streamed, in pieces
    start = stream[0][1]["texts"][0]
    assert start["precision"] == "fp32" and start["corpus"] == "hamlet" and start["shape"] == "1x32 lstm"
    model, vocab = checkpoint.load_model(page.built.root / "models" / "best.pt")
    assert written(stream) == generate(model, vocab, PRIME, 3000, 0.8, None, 0.9, seeds=[7], precision="fp32")
    assert stream[-1][1]["characters"] == 3000


def test_two_models_write_together_each_its_own_text(page):
    versions = page.built.versions
    ids = ["models:/charrnn-hamlet@champion", f"models:/charrnn-hamlet/{versions['16']}"]
    status, stream = post(page, {"models": ids, "prime": PRIME, "length": 400, "seed": 3, "precision": "fp32"})
    assert status == 200 and stream[-1][0] == "done"
    heads = stream[0][1]["texts"]
    assert [head["shape"] for head in heads] == ["1x32 lstm", "1x16 lstm"]
    alone = [
        written(post(page, {"models": [model_id], "prime": PRIME, "length": 400, "seed": 3, "precision": "fp32"})[1])[0]
        for model_id in ids
    ]
    assert written(stream) == alone and alone[0] != alone[1]


def test_the_checkpoints_of_a_models_run_write_one_after_another_by_step(page):
    status, answer = get(page, "/api/learning?model=models:/charrnn-hamlet@champion")
    assert status == 200
    steps = [entry["step"] for entry in answer["checkpoints"]]
    assert steps == sorted(steps) and len(steps) == 4 and steps[-1] == 143  # kept at 40, 80, 120; best at 143
    ids = [entry["id"] for entry in answer["checkpoints"]]
    status, stream = post(page, {"models": ids, "prime": PRIME, "length": 200, "seed": 1})
    assert status == 200 and [head["step"] for head in stream[0][1]["texts"]] == steps
    losses = [head["val_loss"] for head in stream[0][1]["texts"]]
    assert losses[-1] == min(losses)  # best last
    local = get(page, "/api/learning?model=models/best.pt")[1]["checkpoints"]
    assert [entry["id"] for entry in local][-1] == "models/best.pt"


@pytest.mark.parametrize(
    "body, status, message",
    [
        (
            {"models": ["models/best.pt"], "prime": PRIME, "length": 1.5},
            400,
            "length must be an integer >= 0 (got 1.5)",
        ),
        (
            {"models": ["models/best.pt"], "prime": PRIME, "length": True},
            400,
            "length must be an integer >= 0 (got True)",
        ),
        ({"models": ["models/best.pt"], "prime": PRIME, "top_k": 0}, 400, "top_k must be an integer from 1 to the "),
        (
            {"models": ["models/best.pt"], "prime": PRIME, "top_k": 500},
            400,
            "top_k must be between 1 and the vocabulary",
        ),
        ({"models": ["models/best.pt"], "prime": PRIME, "top_p": 2}, 400, "top_p must be a number in (0, 1]"),
        ({"models": ["models/best.pt"], "prime": "Анна"}, 400, "characters not in the hamlet vocabulary"),
        (
            {"models": ["models/best.pt"], "prime": PRIME, "precision": "fp8"},
            400,
            "precision must be one of auto, fp32, bf16, int8 (got 'fp8')",
        ),
        ({"models": ["models/best.pt"], "prime": PRIME, "tokens": 5}, 400, "unknown option 'tokens'"),
        ({"models": ["models/best.pt"], "prime": PRIME, "length": 10_001}, 400, "over the limit of 10,000 characters"),
        (
            {"models": ["models/best.pt"] * 3, "prime": PRIME, "length": 9000},
            400,
            "27,000 characters in all, over the limit of 20,000 per request",
        ),
        ({"models": ["models/best.pt"] * 17, "prime": PRIME}, 400, "a request has 1 to 16 models (got 17)"),
        ({"models": [], "prime": PRIME}, 400, "a request has 1 to 16 models (got 0)"),
        ({"models": "models/best.pt", "prime": PRIME}, 400, "'models' must be a list"),
        ({"models": ["/etc/passwd"], "prime": PRIME}, 400, "unknown model '/etc/passwd'"),
        ({"models": ["models/../params.yaml"], "prime": PRIME}, 400, "unknown model"),
        (
            {"models": ["models:/charrnn-hamlet/99"], "prime": PRIME},
            400,
            "no registered model models:/charrnn-hamlet/99",
        ),
        ({"models": ["runs:/abc/model"], "prime": PRIME}, 400, "unknown model 'runs:/abc/model'"),
        (b"[" * 100_000, 400, "the request body is not JSON"),
        (b'{"prime": "' + b"a" * 300_000 + b'"}', 413, "the request body is over 262,144 bytes"),
        ([1, 2], 400, "the request body is a JSON object"),
    ],
)
def test_a_bad_request_is_one_line_naming_the_problem(page, body, status, message):
    answer = post(page, body)
    assert answer[0] == status, answer
    error = answer[1]["error"]
    assert message in error and "\n" not in error and "Traceback" not in error and str(page.built.root) not in error
    assert not error.startswith(("request:", "sample.")), error  # the page's names for its options, not params.yaml's


def test_another_sites_page_cannot_make_it_write(page):
    # a form or fetch from elsewhere without a CORS preflight can only send text/plain; a browser marks it
    assert post(page, {"models": ["models/best.pt"], "prime": PRIME}, {"Content-Type": "text/plain"})[0] == 415
    assert post(page, {"models": ["models/best.pt"], "prime": PRIME}, {"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert post(page, {"models": ["models/best.pt"], "prime": PRIME}, {"Sec-Fetch-Site": "same-origin"})[0] == 200


def test_large_requests_in_flight_are_bounded_and_closing_them_frees_their_places(page):
    from charrnn.serving.turns import MAX_LARGE

    assert post(page, {"models": ["models/best.pt"], "prime": PRIME, "length": 100})[1][-1][0] == "done"  # its speed
    long = json.dumps({"models": ["models/best.pt"] * 2, "prime": PRIME, "length": 10_000, "top_p": 0.5}).encode()
    opened = []
    try:
        for _ in range(MAX_LARGE):  # one computes, the others wait for their turn
            connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=60)
            connection.request("POST", "/api/generate", long, {"Content-Type": "application/json"})
            assert connection.getresponse().readline().startswith(b"event: start")
            opened.append(connection)
        time.sleep(0.3)
        refused = post(page, json.loads(long))[1]
        assert refused[-1] == (
            "error",
            {"message": f"the server is busy with {MAX_LARGE} large requests (over 1,000 characters); retry later"},
        )
    finally:
        for connection in opened:  # every tab closes: the one computing and those waiting
            connection.close()
    deadline = time.monotonic() + 10  # each close is seen at once (a request kept its turn 120 s once)
    while True:
        stream = post(page, {"models": ["models/best.pt"] * 2, "prime": PRIME, "length": 1000})[1]
        if stream[-1][0] == "done" or time.monotonic() > deadline:
            break
        assert "the server is busy" in stream[-1][1]["message"], stream
        time.sleep(0.2)
    assert stream[-1][0] == "done"  # a large request is admitted again
    assert_idle(page.server)


def test_a_request_stopped_between_two_events_gives_its_turn_back_at_once(built, monkeypatch):
    """The tab closes while an event is on its way: the request, paused at that event and holding its
    turn, is stopped there (nothing would ever resume it), and the next request computes at once."""
    from charrnn.play.app import Job
    from charrnn.play.catalogue import Catalogue
    from charrnn.serving.turns import Turns

    monkeypatch.chdir(built.root)  # its store, as `charrnn play` there finds it
    turns = Turns(timeout=10)
    job = Job(Catalogue(built.root), turns, {"models": ["models/best.pt"], "prime": PRIME, "length": 10_000}, "cpu")
    assert job.next_event().startswith("event: start")
    assert job.next_event().startswith("event: text")  # written in the request's turn
    job.stop()
    with turns.request(10) as other:  # waited for the turn until its timeout (TimedOut) before
        assert turns._computing is other
    assert job.next_event() is None


def test_the_page_answers_its_own_host_names_only(page):
    assert get(page, "/api/models", host="attacker.example")[0] == 400  # DNS rebinding: another site's name
    assert get(page, "/api/models", host=f"localhost:{page.port}")[0] == 200


def cpu_seconds(process):
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def assert_idle(server):
    """The server stops computing within 1.5 s (a request it still wrote for would keep a core busy for
    seconds more): a quarter of a second in which it used under 0.04 s of CPU."""
    deadline = time.monotonic() + 1.5
    while True:
        before = cpu_seconds(server)
        time.sleep(0.25)
        if cpu_seconds(server) - before < 0.04:
            return
        assert time.monotonic() < deadline, "the server still computes"


def test_a_closed_connection_stops_its_work_and_a_short_request_is_not_starved(page):
    # 20,000 characters, about 3 s on a Zen 4 (top_p's sort makes each step dearer)
    long = {"models": ["models/best.pt"] * 2, "prime": PRIME, "length": 10_000, "top_p": 0.5, "precision": "fp32"}
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=60)
    connection.request("POST", "/api/generate", json.dumps(long).encode(), {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.readline().startswith(b"event: start")
    # a short request while the long one writes: answered in full before the long one ends
    status, short = post(page, {"models": ["models/best.pt"], "prime": PRIME, "length": 50})
    assert status == 200 and short[-1][0] == "done"
    assert b"event: done" not in response.read1(1 << 20)
    busy = cpu_seconds(page.server)
    time.sleep(0.3)
    assert cpu_seconds(page.server) - busy > 0.15  # still writing
    connection.close()  # the tab closed
    assert_idle(page.server)
    assert post(page, {"models": ["models/best.pt"], "prime": PRIME, "length": 20})[1][-1][0] == "done"


# ---- the page in a real browser


def chromium():
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        pytest.skip("Playwright is not installed (pip install -e '.[dev]')")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium installed (apt-get install chromium): the browser tests need one")
    return path


@pytest.fixture(scope="module")
def browser(page):
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def tab(browser, page):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.goto(page.url)
    opened.locator("#model-a option").first.wait_for(state="attached")
    yield opened
    context.close()


def text_lengths(tab, seconds=20):
    """The lengths of the panes' texts each time they change, until the page says done (or stopped)."""
    seen, deadline = [], time.time() + seconds
    while time.time() < deadline:
        ended = tab.locator("#status").text_content().startswith(("done", "stopped"))  # before the lengths:
        lengths = tab.eval_on_selector_all(".pane-text", "panes => panes.map(p => p.textContent.length)")
        if not seen or lengths != seen[-1]:  # read after it, they are the final ones
            seen.append(lengths)
        if ended:
            return seen
        tab.wait_for_timeout(20)
    raise AssertionError(f"not done in {seconds} s: {tab.locator('#status').text_content()!r}, {seen[-3:]}")


def test_in_the_browser_the_champion_writes_and_the_text_grows_as_it_streams(tab, page):
    assert tab.locator("#model-a").input_value() == "models:/charrnn-hamlet@champion"
    tab.fill("#prime", PRIME)
    tab.fill("#length", "5000")
    tab.click("#write")
    seen = text_lengths(tab)
    assert len(seen) > 3 and seen[-1] == [len(PRIME) + 5000]  # grew in several steps to the whole text
    assert "val " in tab.locator(".pane-head").text_content() and tab.locator("#error").is_hidden()


def test_in_the_browser_two_versions_write_side_by_side(tab, page):
    tab.click("#mode-compare")
    tab.select_option("#model-b", f"models:/charrnn-hamlet/{page.built.versions['16']}")
    tab.fill("#length", "2000")
    tab.click("#write")
    seen = text_lengths(tab)
    assert seen[-1] == [len("Far") + 2000] * 2 and len(seen) > 3
    assert all(len(set(lengths)) == 1 for lengths in seen if lengths), seen  # the two grow together
    heads = tab.locator(".pane-head").all_text_contents()
    assert "1x32 lstm" in heads[0] and "1x16 lstm" in heads[1]
    boxes = [pane.bounding_box() for pane in tab.locator(".pane").all()]
    assert boxes[0]["y"] == boxes[1]["y"] and boxes[0]["x"] < boxes[1]["x"]  # side by side


def test_in_the_browser_the_runs_checkpoints_show_it_learning(tab):
    tab.click("#mode-learn")
    tab.wait_for_function("document.querySelector('#learn-list').textContent.includes('steps')")
    assert "steps 40, 80, 120, 143" in tab.locator("#learn-list").text_content()
    tab.click("#write")
    text_lengths(tab)
    heads = tab.locator(".pane-head").all_text_contents()
    assert [head.split("step ")[1].split(" ")[0] for head in heads] == ["40", "80", "120", "143"]


def test_in_the_browser_a_bad_value_is_a_message_and_the_page_still_works(tab):
    tab.fill("#length", "abc")
    tab.click("#write")
    tab.locator("#error").wait_for()
    assert tab.locator("#error").text_content() == "length must be an integer >= 0 (got 'abc')"
    tab.fill("#length", "30")
    tab.click("#write")
    text_lengths(tab)
    assert tab.locator("#error").is_hidden()


def test_in_the_browser_stop_ends_the_writing_and_the_servers_work(tab, page):
    tab.fill("#length", "10000")
    tab.fill("#top-p", "0.5")  # each step dearer: the whole text would take seconds
    tab.click("#write")
    tab.wait_for_function(
        "document.querySelector('.pane-text') && document.querySelector('.pane-text').textContent.length > 100"
    )
    tab.click("#stop")
    seen = text_lengths(tab)
    assert tab.locator("#status").text_content() == "stopped" and seen[-1][0] < len("Far") + 10000
    assert_idle(page.server)
