from django.contrib import admin, messages

from blogs.admin import ReadOnlyAdmin
from editors.models import ApiToken, AuditLog


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix_shown", "user", "name", "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "name", "prefix")
    fields = ("user", "name")
    autocomplete_fields = ("user",)
    actions = ["revoke"]

    @admin.display(description="token")
    def prefix_shown(self, token):
        return f"{token.prefix}…"

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)  # tokens are not edited

    def save_model(self, request, obj, form, change):
        token = obj.set_token()
        super().save_model(request, obj, form, change)
        # Shown this once: only its hash is stored.
        messages.warning(request, f"The new token, shown only this once: {token}")

    @admin.action(description="Revoke the selected tokens", permissions=["delete"])
    def revoke(self, request, queryset):
        count, _ = queryset.delete()
        messages.success(request, f"{count} token(s) revoked.")


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("at", "username", "via", "action", "blog", "object_type", "object_id", "object_repr")
    list_filter = ("action", "via", "blog")
    search_fields = ("username", "object_repr", "object_id")
    date_hierarchy = "at"
