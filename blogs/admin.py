from django.contrib import admin, messages
from django.db import models
from django.db.models import Count

from blogs.models import Blog, BlogChange, BlogSource, end_blog


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the app writes and the admin only shows (a blog's changes, the audit log)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class BlogSourceInline(admin.TabularInline):
    model = BlogSource
    extra = 1
    fields = ("feed", "hold", "added_seq", "created_at")
    readonly_fields = ("added_seq", "created_at")
    autocomplete_fields = ("feed",)


@admin.register(Blog)
class BlogAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("title", "slug", "state", "starts_at", "ends_at", "source_count", "created_at")
    list_filter = ("state",)
    search_fields = ("title", "slug")
    prepopulated_fields = {"slug": ("title",)}
    readonly_fields = ("seq", "ended_seq", "created_at", "updated_at")
    fields = (
        "title",
        "slug",
        "description",
        "image_url",
        "state",
        "starts_at",
        "ends_at",
        "seq",
        "ended_seq",
        "created_at",
        "updated_at",
    )
    inlines = [BlogSourceInline]
    actions = ["end_blogs"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(source_total=Count("blog_sources"))

    @admin.display(description="sources", ordering="source_total")
    def source_count(self, blog):
        return blog.source_total

    def get_readonly_fields(self, request, obj=None):
        # An ended blog stays ended: its archive is frozen at its end.
        if obj is not None and obj.ended:
            return (*self.readonly_fields, "state")
        return self.readonly_fields

    @admin.action(description="End the selected blogs (open pages are told)")
    def end_blogs(self, request, queryset):
        ended = sum(end_blog(blog) for blog in queryset)
        self.message_user(request, f"{ended} blog(s) ended.", messages.SUCCESS)


@admin.register(BlogChange)
class BlogChangeAdmin(ReadOnlyAdmin):
    """The blogs' own changes, for looking into a stream; written only by the app."""

    list_display = ("seq", "blog", "kind", "feed_id", "entry_id", "created_at")
    list_filter = ("kind",)
    list_select_related = ("blog",)
    search_fields = ("blog__slug",)
