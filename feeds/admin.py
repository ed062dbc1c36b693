from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import Count, Q
from django.utils import timezone

from feeds.fetching import FetchError, check_url
from feeds.ingest import find_feed
from feeds.models import Entry, Feed
from feeds.parsing import ParseError

URL_FIELD = {models.URLField: {"assume_scheme": "https"}}


class FeedForm(forms.ModelForm):
    url = forms.URLField(max_length=2048, assume_scheme="https")

    class Meta:
        model = Feed
        fields = ("url", "title", "enabled", "interval")

    found_on = ""  # the web page a new URL turned out to be, whose feed was taken instead

    def clean_url(self):
        # The same guard as every fetch: an admin cannot point us at our own network either.
        url = self.cleaned_data["url"]
        try:
            if "url" not in self.changed_data:
                return check_url(url)
            url, self.found_on = find_feed(url)
        except (FetchError, ParseError) as exc:
            raise forms.ValidationError(str(exc)) from exc
        return url

    def clean_interval(self):
        interval = self.cleaned_data["interval"]
        if interval < 5:
            raise forms.ValidationError("The beat ticks every 5 seconds; use 5 or more.")
        return interval


@admin.register(Feed)
class FeedAdmin(admin.ModelAdmin):
    form = FeedForm
    formfield_overrides = URL_FIELD
    list_display = (
        "__str__",
        "enabled",
        "last_fetched_at",
        "next_fetch_at",
        "next_fetch_reason",
        "error_count",
        "short_error",
        "entry_count",
    )
    list_filter = ("enabled", "next_fetch_reason")
    search_fields = ("url", "title", "last_error")
    readonly_fields = (
        "site_url",
        "last_fetched_at",
        "next_fetch_at",
        "next_fetch_reason",
        "error_count",
        "last_error",
        "last_error_at",
        "etag",
        "last_modified",
        "redirect_url",
        "redirect_count",
        "fetch_count",
        "not_modified_count",
        "created_at",
    )
    actions = ("fetch_now", "enable", "disable")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if form.found_on:
            message = f"{form.found_on} is a web page: following the feed it links to, {obj.url}."
            self.message_user(request, message, messages.INFO)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_entry_count=Count("entries", filter=Q(entries__removed_at__isnull=True)))
        )

    @admin.display(description="entries", ordering="_entry_count")
    def entry_count(self, feed):
        return feed._entry_count

    @admin.display(description="last error")
    def short_error(self, feed):
        return feed.last_error[:80]

    @admin.action(description="Fetch now")
    def fetch_now(self, request, queryset):
        from feeds.tasks import fetch_feed

        for feed_id in queryset.values_list("id", flat=True):
            fetch_feed.delay(feed_id)
        self.message_user(request, f"Queued {queryset.count()} feed(s) for fetching.", messages.SUCCESS)

    @admin.action(description="Enable (and resume paused feeds)")
    def enable(self, request, queryset):
        count = queryset.update(
            enabled=True, error_count=0, next_fetch_at=timezone.now(), next_fetch_reason=Feed.Why.INTERVAL
        )
        self.message_user(request, f"Enabled {count} feed(s).", messages.SUCCESS)

    @admin.action(description="Disable")
    def disable(self, request, queryset):
        count = queryset.update(enabled=False, next_fetch_reason=Feed.Why.DISABLED)
        self.message_user(request, f"Disabled {count} feed(s).", messages.SUCCESS)


@admin.register(Entry)
class EntryAdmin(admin.ModelAdmin):
    list_display = ("__str__", "feed", "published", "first_seen", "removed_at")
    list_filter = ("feed", ("removed_at", admin.EmptyFieldListFilter))
    list_select_related = ("feed",)
    formfield_overrides = URL_FIELD
    search_fields = ("title", "link", "guid")
    readonly_fields = (
        "feed",
        "key",
        "guid",
        "first_seen",
        "seq",
        "created_seq",
        "update_count",
        "removed_at",
    )
    fields = ("feed", "title", "link", "author", "summary_html", "published", "updated") + readonly_fields[1:]
    actions = ("remove", "restore")
    date_hierarchy = "first_seen"

    # Deleting would let the next fetch bring the entry back: removal keeps a tombstone.
    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Remove from the live blog")
    def remove(self, request, queryset):
        count = 0
        for entry in queryset.filter(removed_at__isnull=True).select_related("feed"):
            entry.removed_at = timezone.now()
            entry.save(update_fields=["removed_at"])  # pushes entry.deleted to open pages
            count += 1
        self.message_user(request, f"Removed {count} entr{'y' if count == 1 else 'ies'}.", messages.SUCCESS)

    @admin.action(description="Restore")
    def restore(self, request, queryset):
        for entry in queryset.filter(removed_at__isnull=False).select_related("feed"):
            entry.removed_at = None
            entry.save(update_fields=["removed_at"])
