from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from blogs.models import Blog, add_source
from feeds.models import Feed


def _when(value: str):
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"not a date and time: {value!r} (use ISO 8601, e.g. 2026-12-24T18:00Z)")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, timezone.utc)


class Command(BaseCommand):
    help = (
        "Create a live blog following the given feeds (--hold: sources held for approval); prints its id. "
        "On an existing slug, adds the sources to it."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("title")
        parser.add_argument("--feed", type=int, action="append", default=[], metavar="ID")
        parser.add_argument("--hold", type=int, action="append", default=[], metavar="ID")
        parser.add_argument("--description", default="")
        parser.add_argument("--image", default="", help="An https image URL for sharing.")
        parser.add_argument("--starts", default=None, help="Start time (ISO 8601): scheduled until then.")
        parser.add_argument("--ends", default=None, help="End time (ISO 8601): it ends by itself then.")

    def handle(self, *args, slug, title, feed, hold, description, image, starts, ends, **options):
        try:
            validate_slug(slug)
        except ValidationError as exc:
            raise CommandError(f"{slug!r}: a slug is letters, digits, hyphens and underscores") from exc
        if image and not image.startswith("https://"):
            raise CommandError("--image must be an https URL")
        wanted = {**{pk: False for pk in feed}, **{pk: True for pk in hold}}
        feeds = Feed.objects.in_bulk(list(wanted))
        missing = sorted(set(wanted) - set(feeds))
        if missing:
            raise CommandError(f"no feed with id {', '.join(map(str, missing))} (see manage.py addfeed)")
        starts_at = _when(starts) if starts else None
        ends_at = _when(ends) if ends else None
        with transaction.atomic():
            blog = Blog.objects.filter(slug=slug).first()
            if blog is None:
                state = Blog.State.SCHEDULED if starts_at and starts_at > timezone.now() else Blog.State.LIVE
                blog = Blog.objects.create(
                    slug=slug,
                    title=title,
                    description=description,
                    image_url=image,
                    state=state,
                    starts_at=starts_at,
                    ends_at=ends_at,
                )
            else:
                self.stderr.write(f"{slug}: already exists; adding the sources to it")
            for pk, held in wanted.items():
                add_source(blog, feeds[pk], hold=held)
        self.stdout.write(str(blog.pk))
