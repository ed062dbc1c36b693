import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Build Django's app first: it sets up the app registry the routing imports need.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from feeds.views import PushBodyLimit  # noqa: E402
from live.routing import websocket_urlpatterns  # noqa: E402
from live.server import ClientLimit  # noqa: E402

# Outermost: a client over its share of connections costs nothing further.
application = ClientLimit(
    ProtocolTypeRouter(
        {
            "http": PushBodyLimit(django_asgi_app),
            "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
        }
    )
)
