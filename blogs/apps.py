from django.apps import AppConfig


class BlogsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "blogs"
    verbose_name = "live blogs"

    def ready(self):
        from blogs.models import kept_by_blogs
        from feeds import retention

        retention.keep(kept_by_blogs)
