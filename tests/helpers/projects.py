"""Projects in scratch folders: a git + DVC copy of this checkout's pipeline (charrnn.commands.scratch, as
repro-check and the benchmarks make theirs), a teammate's clone, and a runner for the tools there."""

import subprocess
import sys
from pathlib import Path

from charrnn.commands.scratch import PIPELINE_FILES, copy_project, environment

from helpers import ROOT


def make_project(folder, mirror, **env):
    """A fresh git + DVC copy of this checkout's pipeline in `folder` (its files as they are in the work
    tree); returns its runner. The stages import the package from the copy's src/, as in a real
    checkout, so an edit there takes effect."""
    copy_project(ROOT, folder, PIPELINE_FILES)
    return project_runner(folder, mirror, **env)


def clone_project(source, folder, mirror, **env):
    """A teammate's `git clone` of the project runner `source` into `folder`; returns its runner."""
    subprocess.run(["git", "clone", "-q", str(source.root), str(folder)], check=True, capture_output=True)
    return project_runner(folder, mirror, **env)


def project_runner(folder, mirror, **env):
    """`run(*args, tool="dvc")`: the venv's tool run in the project `folder` in its environment
    (charrnn.commands.scratch.environment: the corpus mirror `mirror`, the package of the folder's src/,
    the project's own MLflow store unless `env` names another); `run.root`, `run.env`."""
    bin_dir = Path(sys.executable).parent
    env = environment(folder, mirror, **env)

    def run(*args, check=True, tool="dvc"):
        result = subprocess.run(
            [str(bin_dir / tool), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=900
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    run.root, run.env = folder, env
    return run


def git(runner, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=runner.root,
        check=True,
        capture_output=True,
        env=runner.env,
    )
