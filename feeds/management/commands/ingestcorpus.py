"""Ingest a folder of real-world feed files through the real pipeline, and check what was stored."""

import time
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.corpus import CorpusFile, CorpusServer, Result, corpus_files
from feeds.ingest import fetch_and_store_many
from feeds.models import Entry, Feed


class Command(BaseCommand):
    help = (
        "Serve a folder of feed files on 127.0.0.1, ingest each one through the real pipeline "
        "(Feed rows + fetch_and_store), print what was stored, and fail if an acceptance check fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)
        parser.add_argument("--keep", action="store_true", help="Keep the feeds and entries it created.")

    def handle(self, *args, folder: Path, keep=False, **options):
        folder = folder.resolve()
        if not folder.is_dir():
            raise CommandError(f"no such folder: {folder}")
        if not settings.FEEDS_ALLOW_PRIVATE_NETWORKS:
            raise CommandError("the files are served from 127.0.0.1: set FEEDS_ALLOW_PRIVATE_NETWORKS=true")
        files = corpus_files(folder)
        if not files:
            raise CommandError(f"no feed files in {folder}")
        server = CorpusServer(folder, [f.name for f in files])
        started = time.monotonic()
        try:
            results = self.ingest(server, files, keep)
        finally:
            server.stop()
        self.report(results, time.monotonic() - started)

    def ingest(self, server: CorpusServer, files: list[CorpusFile], keep: bool) -> list[Result]:
        # Disabled: a beat running on this database never fetches them; fetch_and_store does.
        feeds = [Feed.objects.create(url=server.url(f.name), enabled=False) for f in files]
        try:
            outcomes = {}
            batch = getattr(settings, "FEEDS_BATCH_SIZE", 20)
            for start in range(0, len(feeds), batch):
                outcomes.update(fetch_and_store_many([feed.pk for feed in feeds[start : start + batch]]))
            results = []
            for corpus_file, feed in zip(files, feeds, strict=True):
                feed.refresh_from_db()
                summaries = list(Entry.objects.filter(feed=feed).values_list("summary_html", flat=True))
                result = Result(corpus_file, str(outcomes[feed.pk]), feed.last_error, len(summaries))
                result.check(summaries)
                results.append(result)
            return results
        finally:
            if not keep:
                Feed.objects.filter(pk__in=[feed.pk for feed in feeds]).delete()

    def report(self, results: list[Result], seconds: float) -> None:
        width = max(len(r.file.name) for r in results)
        for r in results:
            status = "FAIL" if r.failures else "ok"
            line = f"{status:4} {r.file.name:{width}} {r.entries:4d} entries"
            if r.error:
                line += f"  error: {r.error[:160]}"
            self.stdout.write(line)
            for failure in r.failures:
                self.stdout.write(f"     ! {failure}")
        failed = [r for r in results if r.failures]
        errors = Counter(r.error.split(":")[0].split(" (")[0] for r in results if r.error)
        json_feeds = [r for r in results if r.file.is_json_feed]
        html_pages = [r for r in results if r.file.is_html_page]
        self.stdout.write("")
        self.stdout.write(
            f"{len(results)} files in {seconds:.1f} s: {sum(r.entries for r in results)} entries stored from "
            f"{sum(1 for r in results if r.entries)} files; {sum(errors.values())} files with an error"
        )
        self.stdout.write(f"  errors by kind: {dict(errors.most_common())}")
        self.stdout.write(
            f"  JSON Feeds: {sum(1 for r in json_feeds if r.entries)} of {len(json_feeds)} ingested; "
            f"HTML pages: {sum(1 for r in html_pages if r.error.startswith('not a feed'))} of "
            f"{len(html_pages)} rejected; files below feedparser's distinct identities: "
            f"{sum(1 for r in results if r.entries < r.file.expected_identities)}"
        )
        if failed:
            raise CommandError(f"{len(failed)} file(s) failed an acceptance check")
        self.stdout.write("all acceptance checks passed")
