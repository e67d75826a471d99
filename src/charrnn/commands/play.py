"""`charrnn play`: the play page (charrnn.play) served on this machine until Ctrl-C."""

import socket

import uvicorn

from charrnn import project_root
from charrnn.commands.hosts import LOOPBACK_NAMES, is_loopback, link_host, warn_if_exposed
from charrnn.errors import CharRNNError
from charrnn.play.app import create_app


def play(host, port, device):
    """Serve the page on host:port; another host than loopback only with a warning that says what it opens."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except (OSError, OverflowError) as err:
        listener.close()
        raise CharRNNError(
            f"cannot serve the page on {host}:{port} ({getattr(err, 'strerror', None) or err}): "
            "pass another --port or --host"
        ) from None
    port = listener.getsockname()[1]
    local = is_loopback(host)
    # the names a browser sends as Host (an IPv6 address in brackets); any, where the user opened it up
    allowed = [*LOOPBACK_NAMES, "[::1]", host, f"[{host}]"] if local else ["*"]
    what = "can list this project's models and make this machine's CPU write text with them"
    warn_if_exposed(host, port, what, "the page")
    print(f"charrnn play: http://{link_host(host)}:{port}/ (models of {project_root()}; Ctrl-C stops it)", flush=True)
    app = create_app(project_root(), device, allowed)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2))
    server.run(sockets=[listener])
