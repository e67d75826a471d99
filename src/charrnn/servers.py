"""What charrnn's HTTP servers (`charrnn play`, `charrnn serve`) share at the door: a request body read
up to a bound (more is refused, not read), and `Guarded`, the ASGI wrapper `charrnn serve` puts around
MLflow's scoring server."""

import json

from charrnn.errors import CharRNNError

MAX_SCORING_BODY = 8 * 1024 * 1024  # bytes: 64 rows of a 10,000-character prime, each character JSON-escaped


class TooLarge(CharRNNError):
    """A request body over its bound: HTTP 413."""


class Disconnected(Exception):
    """The client closed the connection before its body was read: nobody to answer."""


async def bounded_body(declared_length, chunks, limit):
    """The body of a request whose Content-Length header says `declared_length` ('' if none), read from
    the async iterable `chunks` up to `limit` bytes: TooLarge past that, before reading more."""
    if declared_length.isdigit() and int(declared_length) > limit:
        raise TooLarge(f"the request body is over {limit:,} bytes")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"the request body is over {limit:,} bytes")
    return bytes(body)


def too_deep(body):
    """True when a JSON body nests deeper than Python's parser goes (it would fail inside the server,
    a 500, rather than be refused)."""
    try:
        json.loads(body)
    except RecursionError:
        return True
    except ValueError:  # not JSON: the server's own parser says so
        return False
    return False


class Guarded:
    """MLflow's scoring server (`app`) behind three rules of charrnn's: a request body of at most
    `max_body` bytes (413; MLflow reads any size: a 400 MB body took 2.65 GB), JSON nested too deep for
    the parser refused as 400 (MLflow answered 500), and error bodies without MLflow's `stack_trace`
    (a CSV or parquet it cannot parse was answered with the server's file paths) and with the model's
    one-line message alone."""

    def __init__(self, app, max_body=MAX_SCORING_BODY):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        try:
            body = await bounded_body(headers.get("content-length", ""), _chunks(receive), self.max_body)
        except TooLarge as err:
            return await _respond(send, 413, "RESOURCE_EXHAUSTED", str(err))
        except Disconnected:
            return None
        if headers.get("content-type", "").split(";")[0].strip() == "application/json" and too_deep(body):
            return await _respond(send, 400, "BAD_REQUEST", "the request's JSON is nested too deeply")
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # the client's disconnect, if it comes

        await self.app(scope, replay, _without_stack_traces(send))


async def _chunks(receive):
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        yield message.get("body", b"")
        if not message.get("more_body"):
            return


def _without_stack_traces(send):
    """`send` that drops the `stack_trace` field of a JSON error body (status >= 400)."""
    held = {}

    async def sending(message):
        if message["type"] == "http.response.start" and message["status"] >= 400:
            held["start"], held["body"] = message, b""
            return None
        if message["type"] == "http.response.body" and "start" in held:
            held["body"] += message.get("body", b"")
            if message.get("more_body"):
                return None
            start, body = held.pop("start"), _scrubbed(held.pop("body"))
            headers = [(key, value) for key, value in start["headers"] if key.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        return await send(message)

    return sending


def _scrubbed(body):
    """An error body without `stack_trace`, its message without the copy of the request's table that
    MLflow puts before the model's own words ("Failed to predict data '<the table>'. \nError: ...")."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    if not isinstance(answer, dict):
        return body
    answer.pop("stack_trace", None)
    message = answer.get("message")
    if isinstance(message, str) and message.startswith("Failed to predict data '") and "\nError: " in message:
        answer["message"] = message.rpartition("\nError: ")[2]
    return json.dumps(answer).encode()


async def _respond(send, status, code, message):
    body = json.dumps({"error_code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
