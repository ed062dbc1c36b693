"""Log lines that cannot flood.

Under attack the same failure repeats thousands of times a second (asyncio logged each refused
accept with its traceback: 31 MB in 13 s). Each kind of line (logger, level and message template)
is written at most BURST times per WINDOW seconds; the rest are counted, and the first line of that
kind written after the window says how many were left out.
"""

import logging
import threading
import time

BURST = 5
WINDOW = 10.0
# Kinds remembered at once; past this the memory is cleared (a few lines more may pass).
KINDS = 1000


class RepeatFilter(logging.Filter):
    def __init__(self, burst: int = BURST, window: float = WINDOW):
        super().__init__()
        self.burst, self.window = burst, window
        self.kinds: dict[tuple, list] = {}  # kind -> [window start, lines in window, left out]
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        # The template, not the formatted text: "Internal Server Error: %s" is one kind whatever the path.
        kind = (record.name, record.levelno, record.msg if isinstance(record.msg, str) else repr(record.msg))
        now = time.monotonic()
        with self.lock:
            state = self.kinds.get(kind)
            if state is None or now - state[0] >= self.window:
                left_out = state[2] if state is not None else 0
                if state is None and len(self.kinds) >= KINDS:
                    self.kinds.clear()
                self.kinds[kind] = [now, 1, 0]
                if left_out:
                    record.msg = f"{record.msg} [{left_out} more like this were not logged]"
                return True
            state[1] += 1
            if state[1] <= self.burst:
                return True
            state[2] += 1
            return False
