"""Loaded by Python when a test puts this folder on PYTHONPATH: the stage copies the file
CHARRNN_TEST_REPLACE_WITH over CHARRNN_TEST_REPLACE as it renames its first output into place, as a
user editing params.yaml or replacing the corpus while the stage runs would. A deterministic point
to change an input at, instead of a race between a polling test and a running stage."""

import os
import shutil
import sys

_done = []


def _hook(event, args):
    if event == "os.rename" and not _done:
        _done.append(args[1])
        shutil.copyfile(os.environ["CHARRNN_TEST_REPLACE_WITH"], os.environ["CHARRNN_TEST_REPLACE"])


if sys.argv and os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0]))) == "stages":
    sys.addaudithook(_hook)
