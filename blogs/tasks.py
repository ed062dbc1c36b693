from celery import shared_task

from blogs.models import update_due_blogs


@shared_task(ignore_result=True, soft_time_limit=20, time_limit=30)
def update_blog_states() -> str:
    """Start scheduled blogs whose time has come and end those past their end time. Safe to run twice."""
    started, ended = update_due_blogs()
    return f"{started} started, {ended} ended"
