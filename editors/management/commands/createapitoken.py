from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from editors.models import ApiToken


class Command(BaseCommand):
    help = "Create a personal API token for an existing user and print it (it is shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for.")

    def handle(self, *args, username, name="", **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        _, token = ApiToken.issue(user, name or "created with createapitoken")
        self.stdout.write(token)
