from django.core.management.base import BaseCommand, CommandError

from feeds.fetching import FetchError, check_url
from feeds.models import Feed
from feeds.opml import OPMLError, feed_urls


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
        added = 0
        for url, title in entries:
            try:
                url = check_url(url)
            except FetchError as exc:
                self.stderr.write(f"{url}: refused: {exc}")
                continue
            defaults = {"title": title[:500]}
            if interval:
                defaults["interval"] = max(interval, 5)
            feed, created = Feed.objects.get_or_create(url=url, defaults=defaults)
            added += created
            self.stdout.write(f"{feed.pk} {feed.url}" + ("" if created else " (already added)"))
        self.stdout.write(f"{added} new of {len(entries)} feeds in the file")
