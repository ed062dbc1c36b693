from django.core.management.base import BaseCommand, CommandError

from feeds.fetching import FetchError
from feeds.parsing import ParseError
from feeds.subscribe import add_feed


class Command(BaseCommand):
    help = (
        "Add feeds by URL (each checked by the fetch guard; a web page gives the feed it links to); "
        "prints each new feed's id."
    )

    def add_arguments(self, parser):
        parser.add_argument("urls", nargs="+", metavar="URL")
        parser.add_argument("--interval", type=int, default=None, help="Seconds between fetches (min 5).")

    def handle(self, *args, urls, interval=None, **options):
        if interval is not None and interval < 5:
            raise CommandError("--interval must be at least 5 seconds")
        failed = 0
        for url in urls:
            try:
                feed, created, page = add_feed(url, interval)
            except (FetchError, ParseError) as exc:
                failed += 1
                self.stderr.write(f"{url}: refused: {exc}")
                continue
            line = f"{feed.pk} {feed.url}"
            if page:
                line += f" (discovered on the web page {page})"
            if not created:
                line += " (already added)"
            self.stdout.write(line)
        if failed:
            raise CommandError(f"{failed} URL(s) refused")
