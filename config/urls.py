from django.contrib import admin
from django.urls import include, path

from live import demo, health, metrics, stream, views

admin.site.site_header = "Livelog administration"

urlpatterns = [
    path("", views.index, name="index"),
    path("entries/<int:pk>/", views.entry_detail, name="entry"),
    path("blogs/", views.blog_list, name="blogs"),
    path("blogs/<slug:slug>/", views.blog_page, name="blog"),
    path("blogs/<slug:slug>/entries/<int:pk>/", views.entry_detail, name="blog-entry"),
    path("api/blogs/", views.api_blogs, name="api-blogs"),
    path("api/blogs/<slug:slug>/", views.api_blog, name="api-blog"),
    path("api/entries/", views.api_entries, name="api-entries"),
    path("api/feeds/", views.api_feeds, name="api-feeds"),
    path("api/stream/", stream.stream, name="api-stream"),
    path("", include("editors.urls")),
    path("demo/feed.xml", demo.demo_feed, name="demo-feed"),
    path("demo/agency.xml", demo.demo_agency, name="demo-agency"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("", include("feeds.urls")),  # the WebSub callbacks
    path("admin/", admin.site.urls),
]
