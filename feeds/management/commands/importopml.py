from django.core.management.base import BaseCommand, CommandError

from feeds.opml import OPMLError, feed_urls
from feeds.subscribe import import_feeds


class Command(BaseCommand):
    help = "Add every feed of an OPML file (each URL checked by the fetch guard); prints new feed ids."

    def add_arguments(self, parser):
        parser.add_argument("path", help="The OPML file; - for standard input.")
        parser.add_argument("--interval", type=int, default=None, help="Seconds between fetches (min 5).")

    def handle(self, *args, path, interval=None, **options):
        if path == "-":
            import sys

            content = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as file:
                content = file.read()
        try:
            entries = feed_urls(content)
        except OPMLError as exc:
            raise CommandError(str(exc)) from exc
        added, existing, refused = import_feeds(entries, interval)
        for url, reason in refused:
            self.stderr.write(f"{url}: refused: {reason}")
        for feed in added:
            self.stdout.write(f"{feed.pk} {feed.url}")
        for feed in existing:
            self.stdout.write(f"{feed.pk} {feed.url} (already added)")
        self.stdout.write(f"{len(added)} new of {len(entries)} feeds in the file")
