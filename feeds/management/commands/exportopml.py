from django.core.management.base import BaseCommand

from feeds.opml import export


class Command(BaseCommand):
    help = "Write every feed as OPML to standard output (or --output FILE)."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", default="-", help="File to write; - for standard output.")

    def handle(self, *args, output, **options):
        content = export()
        if output == "-":
            self.stdout.write(content.decode(), ending="")
        else:
            with open(output, "wb") as file:
                file.write(content)
