from django.urls import path

from country import views

urlpatterns = [
    path("", views.index, name="index"),
    path("visits", views.visits, name="visits"),
    path("healthz", views.healthz, name="healthz"),
]
