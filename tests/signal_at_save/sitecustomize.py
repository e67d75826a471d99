"""Loaded by Python when a test puts this folder on PYTHONPATH (conftest.in_stages): the train stage
sends itself (or the process group CHARRNN_TEST_SIGNAL_PID leads, e.g. a tracking server's) the signal
CHARRNN_TEST_SIGNAL (KILL, TERM, ...) as it is about to rename the CHARRNN_TEST_SIGNAL_AT-th
models/last.pt into place. A deterministic point to interrupt training at,
instead of a race between a polling test and a running training."""

import os
import signal
import sys

_signal = getattr(signal, "SIG" + os.environ["CHARRNN_TEST_SIGNAL"])
_at = int(os.environ["CHARRNN_TEST_SIGNAL_AT"])
_group = int(os.environ.get("CHARRNN_TEST_SIGNAL_PID") or 0)
_saves = []


def _hook(event, args):
    if event == "os.rename" and os.fspath(args[1]).endswith(os.path.join("models", "last.pt")):
        _saves.append(args[1])
        if len(_saves) == _at:
            os.killpg(_group, _signal) if _group else os.kill(os.getpid(), _signal)


if sys.argv and sys.argv[0].endswith(os.path.join("stages", "train.py")):
    sys.addaudithook(_hook)
