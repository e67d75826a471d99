"""The address a server of charrnn's binds (`charrnn ui`, `charrnn play`): this machine alone unless the
user passes another --host, which is then served with a warning that says what it opens, and a link
that opens."""

import ipaddress
import sys

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
