from django.urls import path

from feeds import views

urlpatterns = [
    path("websub/<str:token>/", views.callback, name="websub-callback"),
]
