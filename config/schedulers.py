"""The beat's scheduler: django-celery-beat's, holding no broker connection between ticks.

Celery's beat keeps a producer, two Redis connections, for its whole life; without it each due task
is published through the app's broker pool, which is off (CELERY_BROKER_POOL_LIMIT = 0), so the
connection is opened for the send and closed after it. Heroku Redis Mini accepts 20 clients.
"""

from django_celery_beat.schedulers import DatabaseScheduler


class Scheduler(DatabaseScheduler):
    producer = None  # celery.beat passes it to apply_async; None means a pooled (here: fresh) one
