"""A scratch copy of the project to run the pipeline in, apart from the checkout: repro-check's two runs,
the benchmarks' projects and the tests' projects are made by these two functions."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from charrnn.data.corpus import MIRROR_ENV
from charrnn.params import nested

# What the pipeline needs of a checkout (dvc.yaml's stages run stages/ on src/)
PIPELINE_FILES = ("dvc.yaml", "params.yaml", "stages", "src", ".dvc/config", ".dvcignore", ".gitignore")
_GIT = ["git", "-c", "user.name=charrnn", "-c", "user.email=charrnn@localhost"]


def copy_project(root, folder, paths=None, params=None):
    """Copy into `folder` the files of the checkout `root` that git would commit (tracked, or new and not
    ignored, as they are in the work tree), or only those under `paths`; set `params` ({dotted key:
    value}) in its params.yaml; and commit the copy in a new git repository. Returns `folder`."""
    root, folder = Path(root), Path(folder)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", *(paths or ())],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in filter(None, listed.stdout.split("\0")):
        if (root / name).is_file() and "__pycache__" not in name:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, folder / name)
    if params:
        set_params(folder, params)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "scratch copy"]):
        subprocess.run(_GIT + command, cwd=folder, check=True, capture_output=True)
    return folder


def set_params(folder, params):
    """Set `params` ({dotted key: value}) in the params.yaml of the project `folder`."""
    path = Path(folder) / "params.yaml"
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    _update(values, nested(params))
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")


def environment(folder, mirror=None, **extra):
    """The environment to run the venv's tools in the copy `folder`: the venv on PATH, the package imported
    from the copy's src/ (an edit there takes effect), the corpus mirror `mirror` (default: the caller's)
    as an absolute path, its own MLflow store (no MLFLOW_TRACKING_URI or MLFLOW_REGISTRY_URI), no DVC_ROOT
    of another project; then `extra`."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(Path(folder) / "src")
    mirror = mirror or env.get(MIRROR_ENV)
    if mirror:
        env[MIRROR_ENV] = str(Path(mirror).resolve())
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DVC_ROOT"):
        env.pop(name, None)
    env.update(extra)
    return env


def _update(target, changes):
    """`target` (nested params) with each value of `changes` (nested too) set in it."""
    for key, value in changes.items():
        if isinstance(value, dict):
            _update(target.setdefault(key, {}), value)
        else:
            target[key] = value
