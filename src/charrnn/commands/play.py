"""`charrnn play`: the play page (charrnn.play) served on this machine until Ctrl-C."""

import uvicorn

from charrnn import project_root
from charrnn.commands.hosts import allowed_hosts, link_host, listen, warn_if_exposed
from charrnn.play.app import create_app


def play(host, port, device):
    """Serve the page on host:port; another host than loopback only with a warning that says what it opens."""
    listener = listen(host, port, "the page")
    port = listener.getsockname()[1]
    what = "can list this project's models and make this machine's CPU write text with them"
    warn_if_exposed(host, port, what, "the page")
    print(f"charrnn play: http://{link_host(host)}:{port}/ (models of {project_root()}; Ctrl-C stops it)", flush=True)
    app = create_app(project_root(), device, allowed_hosts(host))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2))
    server.run(sockets=[listener])
