from django.core.management.base import BaseCommand, CommandError

from blogs.models import Blog, end_blog


class Command(BaseCommand):
    help = "End a live blog now: open pages are told, and its page becomes a cacheable archive."

    def add_arguments(self, parser):
        parser.add_argument("slug")

    def handle(self, *args, slug, **options):
        blog = Blog.objects.filter(slug=slug).first()
        if blog is None:
            raise CommandError(f"no blog {slug!r}")
        if end_blog(blog):
            self.stdout.write(f"{slug}: ended")
        else:
            self.stdout.write(f"{slug}: had already ended")
