from django.apps import AppConfig


class EditorsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "editors"
    verbose_name = "Editors"

    def ready(self):
        from editors import actions  # noqa: F401  (connects the moderation queue's hold)
