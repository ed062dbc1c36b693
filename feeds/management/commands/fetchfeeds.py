from django.core.management.base import BaseCommand, CommandError

from feeds.ingest import fetch_and_store
from feeds.models import Feed


class Command(BaseCommand):
    help = "Fetch feeds now, synchronously, through the worker's code; one line per feed."

    def add_arguments(self, parser):
        parser.add_argument("--feed", type=int, action="append", dest="feed_ids", metavar="ID")

    def handle(self, *args, feed_ids=None, **options):
        feeds = Feed.objects.order_by("id")
        feeds = feeds.filter(id__in=feed_ids) if feed_ids else feeds.filter(enabled=True)
        ids = list(feeds.values_list("id", "url"))
        if feed_ids and len(ids) != len(set(feed_ids)):
            raise CommandError(f"no such feed: {sorted(set(feed_ids) - {i for i, _ in ids})}")
        for feed_id, url in ids:
            self.stdout.write(f"{feed_id} {url}: {fetch_and_store(feed_id)}")
