from django.conf import settings

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
