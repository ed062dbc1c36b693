from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, Q
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.timesince import timesince

from feeds import health, opml, websub
from feeds.fetching import FetchError, check_url
from feeds.models import Entry, Feed, Subscription
from feeds.parsing import ParseError, sanitize_html
from feeds.subscribe import find_feed, import_feeds

URL_FIELD = {models.URLField: {"assume_scheme": "https"}}
# An import's messages name at most this many URLs of each kind (messages live in a cookie).
LISTED = 10


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def _listed(items) -> str:
    items = list(items)
    if not items:
        return "."
    more = f", and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return ": " + ", ".join(items[:LISTED]) + more + "."


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


class OPMLImportForm(forms.Form):
    file = forms.FileField(
        label="OPML file",
        help_text=f"At most {opml.MAX_OPML_BYTES // (1024 * 1024)} MB. Every URL is checked.",
    )
    interval = forms.IntegerField(
        min_value=5,
        required=False,
        help_text="Seconds between fetches of the new feeds (default: FEEDS_DEFAULT_INTERVAL).",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        # Refused before it is read: the size is known from the upload itself.
        if upload.size > opml.MAX_OPML_BYTES:
            raise forms.ValidationError(f"The file is larger than {opml.MAX_OPML_BYTES:,} bytes.")
        try:
            self.entries = opml.feed_urls(upload.read(opml.MAX_OPML_BYTES + 1))
        except opml.OPMLError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return upload


@admin.register(Feed)
class FeedAdmin(admin.ModelAdmin):
    form = FeedForm
    formfield_overrides = URL_FIELD
    list_display = (
        "__str__",
        "state",
        "enabled",
        "last_fetched_at",
        "next_fetch_at",
        "next_fetch_reason",
        "error_count",
        "short_error",
        "not_modified_share",
        "entries_per_day",
        "entry_count",
    )
    list_filter = ("enabled", "next_fetch_reason")
    search_fields = ("url", "title", "last_error")
    readonly_fields = (
        "state",
        "error_count",
        "last_error",
        "last_error_at",
        "next_fetch_at",
        "next_fetch_reason",
        "not_modified_share",
        "fetch_count",
        "not_modified_count",
        "entries_per_day",
        "last_entry_at",
        "site_url",
        "last_fetched_at",
        "etag",
        "last_modified",
        "redirect_url",
        "redirect_count",
        "created_at",
        "push",
        "hubs",
        "topic",
        "pushed_until",
    )
    fieldsets = (
        (None, {"fields": ("url", "title", "enabled", "interval")}),
        ("Health", {"fields": readonly_fields[:11]}),
        ("Fetching", {"fields": readonly_fields[11:19]}),
        ("Push (WebSub)", {"fields": readonly_fields[19:]}),
    )
    actions = ("fetch_now", "enable", "disable")

    def get_fieldsets(self, request, obj=None):
        # A feed being added has no health yet.
        return self.fieldsets if obj else self.fieldsets[:1]

    def get_urls(self):
        own = [
            path("health/", self.admin_site.admin_view(self.health_view), name="feeds_feed_health"),
            path("opml/export/", self.admin_site.admin_view(self.export_view), name="feeds_feed_opml_export"),
            path("opml/import/", self.admin_site.admin_view(self.import_view), name="feeds_feed_opml_import"),
        ]
        return own + super().get_urls()  # before the catch-all <object_id>/

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if form.found_on:
            message = f"{form.found_on} is a web page: following the feed it links to, {obj.url}."
            self.message_user(request, message, messages.INFO)

    def get_queryset(self, request):
        return health.annotate(
            super()
            .get_queryset(request)
            .annotate(_entry_count=Count("entries", filter=Q(entries__removed_at__isnull=True)))
        )

    @admin.display(description="entries", ordering="_entry_count")
    def entry_count(self, feed):
        return feed._entry_count

    @admin.display(description="health")
    def state(self, feed):
        found = health.health(feed)
        return f"{found.state}: {found.detail}" if found.detail else found.state

    @admin.display(description="last error")
    def short_error(self, feed):
        if not feed.last_error:
            return ""
        when = f" ({timesince(feed.last_error_at)} ago)" if feed.last_error_at else ""
        return feed.last_error[:80] + when

    @admin.display(description="304 share")
    def not_modified_share(self, feed):
        return _percent(health.not_modified_share(feed))

    @admin.display(description="entries/day (7 d)", ordering="entries_week")
    def entries_per_day(self, feed):
        per_day = health.entries_per_day(feed)
        return "-" if per_day is None else f"{per_day:.1f}"

    @admin.display(description="newest entry first seen")
    def last_entry_at(self, feed):
        return getattr(feed, "last_entry_at", None)

    @admin.display(description="push state")
    def push(self, feed):
        sub = websub.current([feed.pk]).get(feed.pk)
        return websub.push_state(feed, sub, websub.why_not_pushed() if feed.hubs else "")

    def health_view(self, request):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        rows = health.attention()
        # WebSub: each feed's subscription (one query) and, if a hub cannot reach us, why.
        subs = websub.current(row.feed.pk for row in rows)
        reason = websub.why_not_pushed() if any(row.feed.hubs for row in rows) else ""
        for row in rows:
            row.subscription = subs.get(row.feed.pk)
            row.push = websub.push_state(row.feed, row.subscription, reason)
        counts = Counter(row.state for row in rows)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Feed health",
            "rows": rows,
            "counts": [(state, counts[state]) for state in health.ORDER],
        }
        return TemplateResponse(request, "admin/feeds/feed/health.html", context)

    def export_view(self, request):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        response = HttpResponse(opml.export(), content_type="text/x-opml; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="livelog-feeds.opml"'
        return response

    def import_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = OPMLImportForm(request.POST, request.FILES) if request.method == "POST" else OPMLImportForm()
        if form.is_bound and form.is_valid():
            added, existing, refused = import_feeds(form.entries, form.cleaned_data["interval"])
            self._report_import(request, added, existing, refused)
            return HttpResponseRedirect(reverse("admin:feeds_feed_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import OPML",
            "form": form,
        }
        return TemplateResponse(request, "admin/feeds/feed/import_opml.html", context)

    def _report_import(self, request, added, existing, refused):
        self.message_user(
            request, f"Added {len(added)} feed(s){_listed(f.url for f in added)}", messages.SUCCESS
        )
        if existing:
            self.message_user(
                request, f"{len(existing)} already present{_listed(f.url for f in existing)}", messages.INFO
            )
        if refused:
            listed = _listed(f"{url} ({reason})" for url, reason in refused)
            self.message_user(request, f"Refused {len(refused)}{listed}", messages.WARNING)

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

    def save_model(self, request, obj, form, change):
        # Pages and the API send summary_html as it is stored: hand-edited HTML is cleaned like a feed's.
        obj.summary_html = sanitize_html(obj.summary_html, obj.link)
        super().save_model(request, obj, form, change)

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


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """WebSub subscriptions, read-only: the beat's task makes and ends them."""

    list_display = ("topic", "hub", "state", "pending", "lease_expires_at", "last_push_at", "push_count",
                    "refused_count", "missed_count", "error_count", "short_error")  # fmt: skip
    list_filter = ("state", "hub")
    list_select_related = ("feed",)
    formfield_overrides = URL_FIELD
    search_fields = ("topic", "hub", "last_error")
    exclude = ("token", "secret")  # the callback's secret part and the HMAC key are never shown

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="last error")
    def short_error(self, sub):
        return sub.last_error[:80]
