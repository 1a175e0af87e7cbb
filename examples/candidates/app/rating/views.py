from pathlib import Path

from django.conf import settings
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.csrf import csrf_exempt

from .models import Candidate, Rating


def _details():
    """The optional staging-details.html (release notes) shown on the staging home page."""
    if not settings.STAGING_DETAILS:
        return ""
    p = (settings.BASE_DIR / settings.STAGING_DETAILS).resolve()
    try:
        return p.read_text()
    except OSError:
        return ""


def index(request):
    banner = escape(settings.SITE_BANNER)
    rows = "".join(
        f"<li>{escape(c.name)} score {c.score() or '-'}"
        f' <a href="{settings.MEDIA_URL}{escape(c.image)}">FITS</a>'
        f' <iframe src="{settings.FIREFLY_URL}?file={escape(c.image)}" title="viewer"></iframe>'
        f' <form method="post" action="{reverse("rate", args=[c.pk])}"><input name="score"></form></li>'
        for c in Candidate.objects.order_by("name")
    )
    return HttpResponse(
        "<!doctype html><title>Candidates</title>"
        f'<link rel="stylesheet" href="{settings.STATIC_URL}rating/site.css">'
        f"<header>{banner} Candidates <small>environment {escape(settings.ENVIRONMENT)}</small></header>"
        f"{_details()}<ul>{rows}</ul>"
    )


@csrf_exempt
def rate(request, pk):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    candidate = get_object_or_404(Candidate, pk=pk)
    try:
        score = int(request.POST.get("score", ""))
    except ValueError:
        return HttpResponseBadRequest("score is a number from 1 to 5")
    if not 1 <= score <= 5:
        return HttpResponseBadRequest("score is a number from 1 to 5")
    Rating.objects.create(candidate=candidate, score=score)
    return redirect("index")


def candidates(request):
    return JsonResponse(
        {
            "environment": settings.ENVIRONMENT,
            "banner": settings.SITE_BANNER,
            "candidates": [
                {"name": c.name, "image": settings.MEDIA_URL + c.image, "score": c.score()}
                for c in Candidate.objects.order_by("name")
            ],
        }
    )


def healthz(request):
    return HttpResponse("ok")
