from django.conf import settings
from django.urls import path, re_path
from django.views.static import serve

from reports import views

urlpatterns = [
    path("", views.index),
    path("healthz", views.healthz),
    path("records", views.records),
    path("records/<int:pk>/report", views.report_for),
    path("reports/<int:pk>", views.report),
    path("reports/<int:pk>/pdf", views.pdf),
]

if settings.SERVE_STATIC:  # an app server without an edge in front (env appserver)
    urlpatterns.append(re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT}))
