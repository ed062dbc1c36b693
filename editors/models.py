import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

# Recognisable in logs and by secret scanners; the rest is 256 bits from the OS.
TOKEN_PREFIX = "llg_"  # noqa: S105 - a prefix, not a secret


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class Editorial(models.Model):
    """No table: the holder of the editors' permissions (Django permissions need a model)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("post", "Can write, edit and delete posts"),
            ("mark", "Can pin entries and mark key events"),
            ("moderate", "Can approve and reject held entries"),
        ]

    def __str__(self):
        return "editorial permissions"


def editors_group():
    """The "Editors" group with its permissions (a migration makes it; a flushed test database lacks it)."""
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    group, _ = Group.objects.get_or_create(name="Editors")
    content_type = ContentType.objects.get_for_model(Editorial, for_concrete_model=False)
    for codename, name in Editorial._meta.permissions:
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
        group.permissions.add(permission)
    return group


class ApiToken(models.Model):
    """A personal token for the write API. Only its SHA-256 is stored; revoking deletes the row."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What it is for, e.g. the CMS.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters, to tell tokens apart in the admin without storing the secret.
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"

    def __str__(self):
        return f"{self.prefix}… ({self.name or self.user})"

    @classmethod
    def issue(cls, user, name: str = "") -> tuple["ApiToken", str]:
        """A new token for `user`: the row, and the token itself, which is never stored."""
        row = cls(user=user, name=name)
        token = row.set_token()
        row.save()
        return row, token

    def set_token(self) -> str:
        """Give this row a new secret; returns the token, which only the caller ever sees."""
        token = new_token()
        self.digest, self.prefix = token_digest(token), token[:12]
        return token


class AuditLog(models.Model):
    """One editorial action: who did what to which object, and when."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    # Kept as text too, so the line still says who it was after the user is deleted.
    username = models.CharField(max_length=150)
    via = models.CharField(max_length=10, help_text="page, api or admin")
    action = models.CharField(max_length=30)
    blog = models.CharField(max_length=100, blank=True)
    object_type = models.CharField(max_length=30)
    object_id = models.CharField(max_length=40)
    object_repr = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"

    def __str__(self):
        return (
            f"{self.at:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.object_type} {self.object_id}"
        )


def record(user, action: str, obj, via: str, blog: str = "") -> AuditLog:
    """Write one audit line; call inside the action's transaction so both commit or neither."""
    return AuditLog.objects.create(
        user=user,
        username=user.get_username(),
        via=via,
        action=action,
        blog=blog,
        object_type=obj._meta.model_name,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
    )
