import os
import signal

from celery import Celery, bootsteps
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("livelog")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Seconds between a worker's heartbeats (read by /readyz).
HEARTBEAT = 10


class Heartbeat(bootsteps.StartStopStep):
    """The worker says it is alive in Redis every few seconds, for /readyz.

    Instead of remote control (`celery inspect ping`), which costs the worker a subscription and
    every web process asking broker connections of its own: Heroku Redis Mini has 20 in all.
    """

    requires = {"celery.worker.components:Timer"}

    def start(self, worker):
        from feeds.stats import record_worker_alive

        record_worker_alive(worker.hostname)
        self.timer = worker.timer.call_repeatedly(HEARTBEAT, record_worker_alive, (worker.hostname,))

    def stop(self, worker):
        if getattr(self, "timer", None) is not None:
            self.timer.cancel()


app.steps["worker"].add(Heartbeat)


@worker_process_init.connect
def ignore_sigterm(**kwargs):
    """Heroku stops a dyno with SIGTERM to every process in it (SIGKILL 30 s later). The main
    process's warm shutdown lets running tasks finish and hands prefetched messages back to the
    queue; the pool's processes must not die of the same signal in the middle of a fetch."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
