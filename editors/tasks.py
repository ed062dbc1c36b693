from celery import shared_task
from django.conf import settings

from editors import demo


@shared_task(ignore_result=True, soft_time_limit=20, time_limit=30)
def post_demo_update() -> str:
    """The demo desk's next post in `make run`'s demo blog (LIVELOG_DEMO only)."""
    if not settings.LIVELOG_DEMO:
        return "not a demo"
    return "posted" if demo.post_update() else "no live demo blog"
