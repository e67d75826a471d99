"""Loaded by a stage's Python when tests put this folder on PYTHONPATH: records, through Python's audit
hooks, every file the stage opens and every file it renames into place (os.replace), and at exit the
charrnn modules it loaded, for test_dvc_yaml.py."""

import atexit
import json
import os
import sys

_log = os.environ["CHARRNN_AUDIT_DIR"]
_reads, _writes, _renamed = set(), set(), set()


def _hook(event, args):
    # builtin open() (mode is a str); os.open() calls relative to a directory fd (shutil.rmtree) are skipped
    if event == "open" and isinstance(args[0], (str, os.PathLike)) and isinstance(args[1], str):
        (_writes if any(flag in args[1] for flag in "wax+") else _reads).add(os.path.abspath(args[0]))
    elif event == "os.rename" and args[3] in (None, -1):
        _writes.add(os.path.abspath(args[1]))
        _renamed.add(os.path.abspath(args[1]))


def _save():
    if os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0]))) != "stages":
        return  # dvc itself, or another tool
    stage = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    with open(os.path.join(_log, f"{stage}.json"), "w") as f:
        modules = sorted(os.path.abspath(module.__file__) for name, module in list(sys.modules.items())
                         if name.split(".")[0] == "charrnn" and getattr(module, "__file__", None))
        json.dump({"reads": sorted(_reads), "writes": sorted(_writes), "renamed": sorted(_renamed),
                   "modules": modules}, f)


sys.addaudithook(_hook)
atexit.register(_save)
