import logging

from django.conf import settings
from django.db import OperationalError
from django.http import HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

# No inline script or style anywhere: feed text can never become code, even if it slipped past
# the sanitizer. Trusted Types make every HTML-parsing sink in the page (innerHTML, DOMParser, ...)
# throw unless its string went through the one named policy, which live.js uses only to parse the
# server-sanitized summary into an inert document. Images may come from anywhere over https
# (feeds embed them).
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'; "
    "require-trusted-types-for 'script'; trusted-types livelog-summary"
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # The admin ships inline scripts of its own; it is staff-only and shows no feed HTML raw.
        if not request.path.startswith("/admin/"):
            response.headers.setdefault("Content-Security-Policy", POLICY)
        if not settings.DEBUG:
            response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A database that cannot be reached (down, restarting, or this process out of descriptors) is
    a temporary condition, not a bug: answer 503 with Retry-After so that clients and load
    balancers come back, instead of a 500 and an error report per request."""

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError):
            return None
        logger.warning("database unavailable for %s: %s", request.path, str(exception).strip()[:200])
        message = "The database is unavailable for a moment; try again shortly."
        if request.path.startswith("/api/"):
            response = JsonResponse({"error": message}, status=503)
        else:
            response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        response["Cache-Control"] = "no-store"
        return response
