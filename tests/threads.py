"""Writers racing each other, as worker processes do."""

import threading

from django.db import connection


def at_once(function, times: int, timeout: float = 30) -> list:
    """Call `function()` in `times` threads released together; returns their results.

    Each thread closes its own database connection: the test database must drop cleanly.
    """
    barrier = threading.Barrier(times)
    results = []

    def run():
        barrier.wait()
        try:
            results.append(function())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results
