"""The address a server of charrnn's binds (`charrnn ui`, `charrnn play`, `charrnn serve`): this machine
alone unless the user passes another --host, which is then served with a warning that says what it
opens, and a link that opens."""

import ipaddress
import socket
import sys

from charrnn.errors import CharRNNError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def link_host(host):
    """The host of a link that opens in a browser here: 127.0.0.1 for the all-addresses hosts, an IPv6
    address in brackets."""
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def warn_if_exposed(host, port, what, served):
    """On stderr, unless `host` is loopback: who can reach the server and `what` they can do there;
    `served` names the server (e.g. "the page")."""
    if not is_loopback(host):
        print(
            f"WARNING: serving on {host}, not on this machine alone: anyone who reaches port {port} here {what}. "
            f"Without --host {served} serves 127.0.0.1 only.",
            file=sys.stderr,
            flush=True,
        )


def listen(host, port, served):
    """A socket bound to host:port (port 0: any free one), or a one-line error naming `served` (e.g.
    "the page") when it cannot be."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except (OSError, OverflowError) as err:
        listener.close()
        raise CharRNNError(
            f"cannot serve {served} on {host}:{port} ({getattr(err, 'strerror', None) or err}): "
            "pass another --port or --host"
        ) from None
    return listener


def allowed_hosts(host):
    """The Host headers a server on `host` answers: on loopback the names a browser here sends (an IPv6
    address in brackets), so that another site's page cannot reach it through a name of its own (DNS
    rebinding); any, where the user opened it up."""
    return [*LOOPBACK_NAMES, "[::1]", host, f"[{host}]"] if is_loopback(host) else ["*"]
