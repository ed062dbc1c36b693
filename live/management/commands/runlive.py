import asyncio
import logging
import os

import uvicorn
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import Resolver404, resolve

from config.celery import app as celery_app
from live.server import Protocol

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the whole pipeline in one process: web server, the beat schedule and the tasks."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args, host, port, **options):
        if not celery_app.conf.task_always_eager:
            raise CommandError("runlive runs the tasks in this process: unset REDIS_URL, or use the Procfile")
        local = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        base = f"http://{local}:{port}"
        start = f"{base}/"
        if settings.LIVELOG_DEMO:
            from editors import demo

            # The demo sources follow this run's host and port (an earlier run's move here).
            blog = demo.setup(base)
            try:
                resolve(f"/blogs/{blog.slug}/")
                start = f"{base}/blogs/{blog.slug}/"
            except Resolver404:
                pass  # no blog pages in this version
        self.stdout.write(
            f"\nLivelog is running at {base}/\n"
            + (f"The demo live blog: {start}\n" if start != f"{base}/" else "")
            + f"Admin: {base}/admin/  (create a login with: make superuser)\n"
            "Become an editor: make superuser, sign in at /admin/, and a blog page has a compose box.\n"
            "Press Ctrl+C to stop.\n"
        )
        asyncio.run(self.serve(host, port))

    async def serve(self, host: str, port: int):
        config = uvicorn.Config(
            "config.asgi:application",
            host=host,
            port=port,
            lifespan="off",
            http=Protocol,  # the connection limit and the header deadline (live/server.py)
            backlog=128,  # as the Procfile: the connection limit leaves this many descriptors free
            log_config=None,  # uvicorn's lines through the project's handler (repeats are counted)
            log_level="warning",
            ws="websockets-sansio",
            ws_per_message_deflate=False,  # live/frames.py negotiates it, without per-socket state
        )
        server = uvicorn.Server(config)
        beat = asyncio.create_task(self.beat(server))
        try:
            await server.serve()
        finally:
            beat.cancel()

    async def beat(self, server: uvicorn.Server):
        """The same schedule as celery beat, running the same tasks in a thread of this process."""
        celery_app.loader.import_default_modules()  # registers the tasks, as a worker does at start
        schedule = [
            (celery_app.tasks[item["task"]], float(item["schedule"]))
            for item in settings.CELERY_BEAT_SCHEDULE.values()
        ]
        while not server.started:
            await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        next_run = {task.name: loop.time() for task, _ in schedule}
        while True:
            for task, period in schedule:
                if loop.time() >= next_run[task.name]:
                    next_run[task.name] = loop.time() + period
                    try:
                        # Eager mode: apply_async runs in this worker thread, fetches included.
                        await sync_to_async(task.apply, thread_sensitive=False)()
                    except Exception:
                        log.exception("embedded task %s failed", task.name)
            await asyncio.sleep(0.2)
