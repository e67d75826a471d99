"""The play page's server: a Starlette app (MLflow's own server stack, so nothing new to install)
with the page, the models on offer, and generation streamed as server-sent events.

One request writes one text per model from the same prime and seed, the models stepping together, so
that side-by-side texts grow together. A request is checked by the served model's rules and bounds
(serving/request_rules.py) before any work, and computes through the served model's turns
(serving/turns.py): one request at a time, the one with the fewest characters left first, a large
one refused while the server is busy. A closed tab or the page's Stop ends the request: the stream is
cancelled when the connection closes, and the request stops at its next character (or leaves the
queue, if it was waiting for its turn; or at once, between two events).

Each request waits for its turn and computes in a thread of a pool of its own (GENERATION_THREADS;
more requests in flight are refused as busy), so that requests waiting never take the thread the one
computing needs, and listing models never waits for generation.
"""

import json
import threading
import time
import traceback
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from charrnn.errors import CharRNNError
from charrnn.generation.sample import writing
from charrnn.params import GENERATION_PRECISIONS, SCHEMA
from charrnn.play.catalogue import Catalogue
from charrnn.servers import TooLarge, bounded_body
from charrnn.serving.request_rules import (
    MAX_LENGTH,
    MAX_PRIME,
    MAX_TOTAL_LENGTH,
    OPTIONS,
    check_bounds,
    checked_option,
    default_top_k,
)
from charrnn.serving.turns import Stopped, Turns

PAGE = Path(__file__).parent / "page"
MAX_BODY = 256 * 1024  # bytes of a request's JSON: a prime of MAX_PRIME characters, escaped, fits
MAX_MODELS = 16  # models writing in one request (watch it learn: the page spreads its choice over the run)
TIMEOUT = 120  # seconds a request may compute, waiting included
FLUSH = 0.05  # seconds between the text events of a request
GENERATION_THREADS = 8  # requests in flight (waiting or computing), each in a thread of its own
FAILED = "the model failed to write (the server's log has the details)"


def create_app(root, device="cpu", allowed_hosts=("127.0.0.1", "localhost")):
    """The app serving the project in `root` (its models/ and its MLflow store), generating on `device`."""
    catalogue, turns = Catalogue(root), Turns(timeout=TIMEOUT, max_in_flight=GENERATION_THREADS)
    threads = []  # the generation threads' limiter, made in the server's event loop (anyio needs one)

    async def models(request):
        return await _answer(catalogue.listing)

    async def learning(request):
        return await _answer(lambda: {"checkpoints": catalogue.learning(request.query_params.get("model", ""))})

    async def generate(request):
        if request.headers.get("sec-fetch-site") == "cross-site":  # another site's page posting here
            return JSONResponse({"error": "requests from other sites are refused"}, status_code=403)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # a page elsewhere can send text/plain without asking; application/json needs the browser's
            # CORS preflight, which this server never grants
            return JSONResponse(
                {"error": "the request body must be JSON (Content-Type: application/json)"}, status_code=415
            )
        try:
            asked = await _json_body(request)
            job = await run_in_threadpool(Job, catalogue, turns, asked, device)
        except CharRNNError as err:
            return JSONResponse({"error": str(err)}, status_code=413 if isinstance(err, TooLarge) else 400)
        except Exception:
            traceback.print_exc()
            return JSONResponse({"error": FAILED}, status_code=500)
        if not threads:
            threads.append(anyio.CapacityLimiter(GENERATION_THREADS))
        return StreamingResponse(
            _in_thread(job, threads[0]),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
            background=BackgroundTask(job.stop),  # however the stream ended: Starlette runs it after a disconnect too
        )

    async def settings(request):
        return JSONResponse(
            {
                "defaults": {
                    "prime": SCHEMA["sample.prime"].default,
                    **OPTIONS,
                    "precision": SCHEMA["sample.precision"].default,
                },
                "precisions": list(GENERATION_PRECISIONS),
                "max_models": MAX_MODELS,
                "limits": {"prime": MAX_PRIME, "length": MAX_LENGTH, "total_length": MAX_TOTAL_LENGTH},
            }
        )

    routes = [
        Route("/", lambda request: FileResponse(PAGE / "index.html")),
        Route("/play.js", lambda request: FileResponse(PAGE / "play.js", media_type="text/javascript")),
        Route("/play.css", lambda request: FileResponse(PAGE / "play.css", media_type="text/css")),
        Route("/api/settings", settings),
        Route("/api/models", models),
        Route("/api/learning", learning),
        Route("/api/generate", generate, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))])


async def _answer(work):
    """`work()`'s result as JSON (in a thread: MLflow's calls block), or its CharRNNError as a 400."""
    try:
        return JSONResponse(await run_in_threadpool(work))
    except CharRNNError as err:
        return JSONResponse({"error": str(err)}, status_code=400)


async def _json_body(request):
    """The request's JSON object, read up to MAX_BODY bytes (more is refused, not read)."""
    body = await bounded_body(request.headers.get("content-length", ""), request.stream(), MAX_BODY)
    try:
        asked = json.loads(body)
    except (ValueError, RecursionError):
        raise CharRNNError("the request body is not JSON") from None
    if not isinstance(asked, dict):
        raise CharRNNError("the request body is a JSON object of the options and models")
    return asked


async def _in_thread(job, threads):
    """The job's events, each computed in a thread of `threads`. When the connection closes, Starlette
    cancels the stream (a thread computing is left to end on its own) and runs the response's
    background task, job.stop()."""
    while (
        event := await anyio.to_thread.run_sync(job.next_event, abandon_on_cancel=True, limiter=threads)
    ) is not None:
        yield event


def sse(name, data):
    return f"event: {name}\ndata: {json.dumps(data, allow_nan=False)}\n\n"


class Job:
    """One request: its models loaded and its options checked (a CharRNNError otherwise), ready to write."""

    def __init__(self, catalogue, turns, asked, device):
        ids = asked.get("models")
        if not isinstance(ids, list):
            raise CharRNNError("'models' must be a list of the models to write with")
        if not 1 <= len(ids) <= MAX_MODELS:
            raise CharRNNError(f"a request has 1 to {MAX_MODELS} models (got {len(ids)})")
        unknown = sorted(set(asked) - {"models", "prime", "precision", *OPTIONS})
        if unknown:
            raise CharRNNError(
                f"unknown option {unknown[0][:40]!r}: the options are prime, {', '.join(OPTIONS)} and precision"
            )
        options = {name: checked_option(name, asked.get(name, OPTIONS.get(name))) for name in ("prime", *OPTIONS)}
        precision = checked_option("precision", asked.get("precision", SCHEMA["sample.precision"].default))
        check_bounds([options] * len(ids))
        loaded = [catalogue.load(model_id) for model_id in ids]
        for model_id, (_, vocab, _facts) in zip(ids, loaded):
            if not vocab.same_text(loaded[0][1]):
                raise CharRNNError(
                    f"{ids[0]} learned '{loaded[0][1].corpus}' and {model_id} '{vocab.corpus}': "
                    "models of different corpora are not compared"
                )
        if "top_k" not in asked:
            options["top_k"] = default_top_k(len(loaded[0][1]))
        self.streams = []
        for _model_id, (model, vocab, facts) in zip(ids, loaded):
            prime, used, steps = writing(
                model,
                vocab,
                options["prime"],
                options["length"],
                options["temperature"],
                options["top_k"],
                options["top_p"],
                [options["seed"]],
                device,
                precision=precision,
            )
            self.streams.append((vocab, steps, {**facts, "precision": used}))
        self.turns, self.prime, self.length = turns, prime, options["length"]
        self.stopped = threading.Event()
        self._events, self._computing, self._lock = self._event_stream(), False, threading.Lock()

    def next_event(self):
        """The next event, computed here (a thread), or None once the events end or the job is stopped.
        A stopped job's events are closed here or by stop(), whichever comes last: between two events
        they hold the request's turn, and nothing else would ever resume them to let it go."""
        with self._lock:
            if self.stopped.is_set():
                return None
            self._computing = True
        event = next(self._events, None)
        with self._lock:
            self._computing = False
            if self.stopped.is_set():
                self._events.close()
                return None
        return event

    def stop(self):
        """Whoever asked is gone: stop at the next character, or leave the queue; between two events,
        at once."""
        with self._lock:
            self.stopped.set()
            if not self._computing:
                self._events.close()
        self.turns.wake()

    def _event_stream(self):
        """The request's events: `start` (each text's model and prime), `text` (the characters written
        since the last, per text), then `done` (or `error`, whose message names no code or path)."""
        yield sse("start", {"prime": self.prime, "texts": [facts for _, _, facts in self.streams]})
        started, written = time.monotonic(), 0
        pending = [[] for _ in self.streams]
        try:
            cost = len(self.streams) * (len(self.prime) + self.length)
            with self.turns.request(cost, self.stopped) as request:
                flushed = time.monotonic()
                for _ in range(self.length):
                    for stream, (vocab, steps, _) in zip(pending, self.streams):
                        stream.append(vocab.chars[next(steps)[0].item()])
                        request.step()
                    written += len(self.streams)
                    if time.monotonic() - flushed >= FLUSH:
                        yield sse("text", {"texts": ["".join(stream) for stream in pending]})
                        pending, flushed = [[] for _ in self.streams], time.monotonic()
            if any(pending):
                yield sse("text", {"texts": ["".join(stream) for stream in pending]})
            yield sse("done", {"characters": written, "seconds": round(time.monotonic() - started, 3)})
        except Stopped:
            return  # nobody to tell
        except CharRNNError as err:
            yield sse("error", {"message": str(err)})
        except Exception:
            traceback.print_exc()
            yield sse("error", {"message": FAILED})
