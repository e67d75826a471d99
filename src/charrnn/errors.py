"""One error type for every problem a user can fix, and one way to report it."""

import errno
import functools
import os
import signal
import sys
import threading
from contextlib import contextmanager


class CharRNNError(Exception):
    """A problem with the user's input or files, reported as one line without a traceback."""


def exit_on_error(main):
    """Wrap a command's entry point: a CharRNNError becomes `error: ...` on stderr and exit 1.

    SIGTERM is handled like Ctrl-C, so `with` blocks close cleanly (an MLflow run is marked KILLED).
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            return main(*args, **kwargs)
        except CharRNNError as err:
            print(f"error: {err}{_under_dvc()}", file=sys.stderr)
            sys.exit(1)
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            print(f"error: {disk_full(err.filename)}{_under_dvc()}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper


def _under_dvc():
    """What a stage's error adds under `dvc repro`: DVC removes a stage's outputs (all but the
    `persist` ones) before it runs it, so a failed stage leaves the workspace without its last good
    outputs until they are checked out again."""
    stage = os.environ.get("DVC_STAGE")
    if not stage:
        return ""
    return (
        f" [DVC removed the outputs of stage {stage} before running it: `dvc checkout {stage}` restores "
        "them from the cache, `git checkout` the ones kept in git]"
    )


def disk_full(path=None):
    """The one line for a write that found no space (every output is written atomically, so the
    files written before stay whole)."""
    where = f" writing {path}" if path else ""
    return f"no space left on the device{where}: free some and run again (the outputs written before are intact)"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def deferred_interrupts(enabled=True):
    """Within the block Ctrl-C and SIGTERM only set a flag, which the caller polls at a safe point
    (the yielded list turns true); a second one interrupts at once."""
    requested = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def request(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
