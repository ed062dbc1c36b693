"""Who is calling the write API: a Bearer token (newsroom tools) or the editor's session (the page).

Token requests carry no cookie, so CSRF does not apply to them; session requests are checked for
CSRF like any form. Answers: 401 without valid credentials, 403 without the permission.
"""

import functools
from datetime import timedelta

from django.http import JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from editors.models import ApiToken, token_digest

# last_used_at is written at most this often: a busy tool must not cost a write per request.
TOUCH_EVERY = timedelta(minutes=1)


def error(status: int, message: str, **extra) -> JsonResponse:
    response = JsonResponse({"error": message, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="livelog"'
    return response


def token_user(header: str):
    """The active user of a `Bearer <token>` header, or None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    row = ApiToken.objects.select_related("user").filter(digest=token_digest(token.strip())).first()
    if row is None or not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or row.last_used_at < now - TOUCH_EVERY:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user


def _csrf_failure(request):
    check = CsrfViewMiddleware(lambda r: None)
    return check.process_view(request, None, (), {})


def api_view(*permissions: str):
    """Authenticate (token or session), check `permissions`, then call view(request, user, via, ...)."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            header = request.headers.get("Authorization")
            if header is not None:
                user, via = token_user(header), "api"
                if user is None:
                    return error(401, "invalid or revoked token")
            elif request.user.is_authenticated:
                user, via = request.user, "page"
                if request.method not in ("GET", "HEAD") and _csrf_failure(request) is not None:
                    return error(403, "CSRF check failed: reload the page")
            else:
                return error(401, "authentication required: send Authorization: Bearer <token>")
            missing = [p for p in permissions if not user.has_perm(p)]
            if missing:
                return error(403, "you do not have permission to do this", missing=missing)
            return view(request, user, via, *args, **kwargs)

        return wrapper

    return decorate
