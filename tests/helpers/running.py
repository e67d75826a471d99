"""Running stages and the `charrnn` command, as DVC and a user do or in this process, and what a refusal looks like."""

import io
import os
import runpy
import signal
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

from helpers import ROOT
from helpers.configs import write_params


def with_python_path(env, folder):
    """`env` with `folder` put first on PYTHONPATH."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))}


def interrupting(env, signal_name, at, pid=None):
    """`env` for a train stage that sends itself (or the process group `pid` leads) SIG`signal_name`
    (KILL, TERM) as it is about to write models/last.pt for the `at`-th time: a deterministic point to
    interrupt at."""
    return {
        **with_python_path(env, ROOT / "tests" / "signal_at_save"),
        "CHARRNN_TEST_SIGNAL": signal_name,
        "CHARRNN_TEST_SIGNAL_AT": str(at),
        "CHARRNN_TEST_SIGNAL_PID": str(pid or ""),
    }


def run_stage(name, cwd, env=None):
    """Run stages/<name>.py with `cwd` as the project root, as `dvc repro` would."""
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{name}.py")],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def prepare(folder, mirror=None, **overrides):
    """A project folder with params.yaml (defaults + overrides) and the fetch, prepare and split stages
    run, as a later stage finds it; returns the folder."""
    write_params(folder, **overrides)
    for stage in ("fetch", "prepare", "split"):
        result = run_stage(stage, folder, env={"CHARRNN_DATA_MIRROR": str(mirror)} if mirror else None)
        assert result.returncode == 0, result.stderr
    return folder


def in_process(entry_point, args, cwd=None):
    """Run `entry_point()` (a command's or a stage's main) in this process, in `cwd` (default: the current
    folder), as the program `args`: for the tests of what it prints and refuses, where a subprocess
    would cost seconds of imports. Returns a CompletedProcess."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    here, on_sigterm = os.getcwd(), signal.getsignal(signal.SIGTERM)  # exit_on_error sets a SIGTERM handler
    try:
        os.chdir(cwd or here)
        with redirect_stdout(out), redirect_stderr(err):
            entry_point()
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
    finally:
        os.chdir(here)
        signal.signal(signal.SIGTERM, on_sigterm)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def charrnn(*args, cwd=None):
    """`charrnn ARGS` in this process (its entry point is run as a program by test_stages.py's fetch test)."""
    from charrnn.commands import cli

    return in_process(lambda: cli.main(list(args)), ["charrnn", *args], cwd)


def stage_in_process(name, cwd):
    """stages/<name>.py in this process, with `cwd` as the project root (run_stage runs it as DVC does)."""
    script = ROOT / "stages" / f"{name}.py"
    return in_process(lambda: runpy.run_path(str(script), run_name="__main__"), [str(script)], cwd)


def assert_clean_error(result, *fragments):
    """A user error: exit 1, one `error:` line on stderr naming the problem, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
