"""A training that dies at a chosen point, as kill -9 would: for the resume tests and
bench/gpu_checks.py."""

from contextlib import contextmanager

from charrnn.training.run import Checkpointer


class Killed(BaseException):
    """Stands in for kill -9: raised right after a checkpoint, caught by nothing in charrnn."""


@contextmanager
def dying_after_checkpoint(count):
    """Training in this block dies (Killed) right after its `count`-th checkpoint."""
    real_checkpoint, calls = Checkpointer.checkpoint, []

    def checkpoint_then_die(self, *args):
        real_checkpoint(self, *args)
        calls.append(1)
        if len(calls) == count:
            raise Killed

    Checkpointer.checkpoint = checkpoint_then_die
    try:
        yield
    finally:
        Checkpointer.checkpoint = real_checkpoint
