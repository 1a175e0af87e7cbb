from django.urls import path

from chat import views

urlpatterns = [
    path("healthz", views.healthz),
    path("api/messages", views.messages),
    path("api/status", views.status),
    # The seed routes GET /documentation on ports 80/443 to the back end's docs/ui/; the
    # edge cannot rewrite paths, so the docs answer at both.
    path("docs/ui/", views.docs),
    path("documentation/", views.docs),
    path("documentation", views.docs),
]
