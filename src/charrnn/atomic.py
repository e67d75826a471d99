"""Write outputs so that a crash never leaves a half-written file where a good one was."""

import csv
import errno
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from charrnn.errors import CharRNNError, disk_full


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is flushed to disk and renamed onto `path`.

    If the block raises, the temporary file is removed and `path` keeps its old content.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(path)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):  # a short write names no file: name the output
            raise CharRNNError(disk_full(path)) from None
        if err.filename is None or Path(err.filename) in (path, tmp, path.parent) or path.is_relative_to(err.filename):
            # where it goes refuses it (a system folder, a read-only disk, a file where a folder should be)
            raise CharRNNError(f"cannot write {path} ({err.strerror or err})") from None
        raise  # the block's own error, e.g. a source it reads
    finally:
        tmp.unlink(missing_ok=True)


def _remove_leftovers(path):
    """Remove the temp files of `path` that a killed process left (kill -9 runs no cleanup): those
    whose process no longer exists. A running writer's temp file stays."""
    for leftover in path.parent.glob(f".{path.name}.tmp-*"):
        pid = leftover.name.rpartition("-")[2]
        if pid.isdigit() and not _running(int(pid)):
            leftover.unlink(missing_ok=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_json(path, obj):
    """Write `obj` as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_array(path, array):
    """Write a numpy array as .npy, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def write_csv(path, rows):
    """Write a list of dicts (same keys, in order) as CSV with a header, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
