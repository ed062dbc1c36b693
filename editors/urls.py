from django.urls import path, re_path

from editors import api

urlpatterns = [
    path("api/blogs/<slug:slug>/posts/", api.posts, name="api-posts"),
    path("api/blogs/<slug:slug>/posts/<int:pk>/", api.post, name="api-post"),
    path("api/blogs/<slug:slug>/preview", api.preview, name="api-preview"),
    re_path(
        r"^api/blogs/(?P<slug>[-\w]+)/entries/(?P<pk>[0-9]+)/(?P<action>pin|unpin|key-event|unkey-event)/?$",
        api.mark,
        name="api-mark",
    ),
    path("api/blogs/<slug:slug>/queue/", api.queue, name="api-queue"),
    re_path(
        r"^api/blogs/(?P<slug>[-\w]+)/queue/(?P<pk>[0-9]+)/(?P<decision>approve|reject)/?$",
        api.review,
        name="api-review",
    ),
]
