from django.urls import path

from rating import views

urlpatterns = [
    path("", views.index, name="index"),
    path("candidates/<int:pk>/rate", views.rate, name="rate"),
    path("candidates.json", views.candidates, name="candidates"),
    path("healthz", views.healthz),
]
