"""Loaded by a stage's Python when tests put this folder on PYTHONPATH: records, through Python's audit
hooks, every file the stage opens and every file it renames into place (os.replace); through the
typed params that charrnn.params.load() returns, every param the stage reads; and at exit the charrnn
modules it loaded, for test_dvc_yaml.py."""

import atexit
import functools
import importlib.abc
import json
import os
import sys

_log = os.environ["CHARRNN_AUDIT_DIR"]
_reads, _writes, _renamed, _params = set(), set(), set(), set()


class _Recorded:
    """The typed params (or a section of them) as the stage sees them, noting each param it reads by its
    dotted name. Their methods run on this view too, so that p.flat() reads what it returns."""

    def __init__(self, view, prefix=""):
        object.__setattr__(self, "_view", view)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name):
        value = getattr(self._view, name)
        field = self._view.__dataclass_fields__.get(name)
        if field is None:  # a method: run it on this view
            method = getattr(type(self._view), name, None)
            return functools.partial(method, self) if callable(method) else value
        if "param" in field.metadata:
            _params.add(self._prefix + name)
            return value
        return _Recorded(value, f"{self._prefix}{name}.")  # a section


class _RecordParams(importlib.abc.MetaPathFinder):
    """Wraps charrnn.params.load, once the module is loaded, to return the recorded view."""

    def find_spec(self, name, path, target=None):
        if name != "charrnn.params":
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            load = module.load
            module.load = functools.wraps(load)(lambda *args, **kwargs: _Recorded(load(*args, **kwargs)))

        spec.loader.exec_module = exec_module
        return spec


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
        modules = sorted(
            os.path.abspath(module.__file__)
            for name, module in list(sys.modules.items())
            if name.split(".")[0] == "charrnn" and getattr(module, "__file__", None)
        )
        json.dump(
            {
                "reads": sorted(_reads),
                "writes": sorted(_writes),
                "renamed": sorted(_renamed),
                "modules": modules,
                "params": sorted(_params),
            },
            f,
        )


sys.addaudithook(_hook)
sys.meta_path.insert(0, _RecordParams())
atexit.register(_save)
