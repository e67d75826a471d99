"""What a person sees of long work: a bar on a terminal; elsewhere a line at a steady interval.

DVC runs every stage with its output piped (`dvc repro` and `dvc exp run` even in a terminal, the
queue, CI), where a bar is not drawn: there a line every INTERVAL seconds says how far the work is,
how fast it goes and how long is left. Torch-free: training, evaluation and generation use it alike.
"""

import math
import sys
import time
from datetime import datetime, timedelta

from tqdm import tqdm

INTERVAL = 30.0  # seconds between two progress lines where no bar is drawn


def duration(seconds):
    """'1 h 05 min', '4 min 10 s' or '35 s'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def ends_at(seconds_left):
    """'4 min 10 s, ends about 14:32' (local time)."""
    if not math.isfinite(seconds_left):
        return "time left unknown yet"
    end = datetime.now() + timedelta(seconds=seconds_left)
    return f"{duration(seconds_left)} left, ends about {end:%H:%M}"


def say(text):
    """A line of output that leaves a bar intact, flushed at once: DVC pipes stdout."""
    tqdm.write(text)
    sys.stdout.flush()


class Heartbeat:
    """Counts `total` units of work (steps, windows, characters) from `done`. On a terminal a bar;
    elsewhere a line every INTERVAL seconds: `what` done/total (%), the rate, the time left.

    The rate (in `rate_as`'s unit where given) counts working time only: time between pause() and
    resume() (a training's validations) is left out, and `extra_seconds` (a callable: the seconds the
    remaining paused work will take) is added to the time left."""

    def __init__(self, what, total, unit, done=0, show=True, extra_seconds=lambda: 0.0, rate_as=None):
        self.what, self.total, self.unit, self.done = what, total, unit, done
        self.rate_name, self.rate_scale = rate_as or (unit, 1)  # e.g. ("char", characters per step)
        self.show, self.interval, self.extra_seconds = show, INTERVAL, extra_seconds
        self.terminal = sys.stderr.isatty()
        self.bar = tqdm(
            total=total, initial=done, unit=unit, desc=what, disable=not (show and self.terminal), leave=False
        )
        self.counted, self.worked, self.paused_at = 0, 0.0, None
        self.started = self.last_line = time.perf_counter()

    def update(self, count=1, detail=lambda: ""):
        """`count` more units done; where no bar is drawn and INTERVAL has passed, a line with
        `detail()` (called only then: it may wait for a device)."""
        self.done += count
        self.counted += count
        self.bar.update(count)
        now = time.perf_counter()
        if self.show and not self.terminal and now - self.last_line >= self.interval:
            self.last_line = now
            extra = detail()
            say(
                f"{self.what}: {self.done:,}/{self.total:,} {self.unit}s ({100 * self.done / max(self.total, 1):.0f} %)"
                f"{', ' + extra if extra else ''}, {self.rate() * self.rate_scale:,.0f} {self.rate_name}s/s, "
                f"{ends_at(self.seconds_left())}"
            )

    def working_seconds(self):
        return self.worked + (0.0 if self.paused_at is not None else time.perf_counter() - self.started)

    def rate(self):
        """Units per working second since this heartbeat started."""
        return self.counted / max(self.working_seconds(), 1e-9)

    def seconds_left(self):
        rate = self.rate()
        if self.counted == 0 or rate <= 0:
            return math.inf
        return (self.total - self.done) / rate + self.extra_seconds()

    def pause(self):
        self.worked = self.working_seconds()
        self.paused_at = time.perf_counter()

    def resume(self):
        """Working again; the next line INTERVAL seconds from now (a pause says what it did itself)."""
        self.started = self.last_line = time.perf_counter()
        self.paused_at = None

    def postfix(self, **values):
        self.bar.set_postfix(**values)

    def close(self):
        self.bar.close()
