"""Deadlines that work which can run long (downloading, decoding, parsing) checks as it goes.

A check is a clock read, so it is made often: before every network wait, for every decoded piece,
every few kilobytes handed to the XML parser and every few elements it reports. Work that has been
given up (the task ran out of time, or the caller moved on) is cancelled and stops at its next check,
so no thread keeps burning CPU for a result nobody will read.
"""

import time
from collections.abc import Callable


class Expired(BaseException):
    """The deadline passed, or the work was cancelled; the caller turns it into its own error.

    A BaseException, as cancellation is in asyncio: no `except Exception` on the way swallows it.
    """


class Deadline:
    """`seconds` from now on `clock`: time.monotonic (wall time) or time.thread_time (this thread's CPU).

    Checked from the thread doing the work, cancelled from any other (a plain flag: setting it is
    atomic, and checking stays a clock read and a comparison, cheap enough for every element).
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self.at = clock() + seconds
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def remaining(self) -> float:
        """Seconds left (0 once cancelled)."""
        return 0.0 if self.cancelled else max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        return self.cancelled or self.clock() >= self.at

    def check(self) -> None:
        if self.cancelled or self.clock() >= self.at:
            raise Expired("cancelled" if self.cancelled else f"ran past its {self.seconds:g} s")


def cpu_deadline(seconds: float) -> Deadline:
    """A budget of CPU seconds of the calling thread: waiting for the GIL or the disk does not count."""
    return Deadline(seconds, time.thread_time)
