from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.html import escape

from .models import Visit


def _count():
    Visit.objects.create()
    key = "hits"
    if cache.add(key, 1) is False:
        cache.incr(key)
    return Visit.objects.count(), cache.get(key)


def index(request):
    visits, hits = _count()
    return HttpResponse(
        f"<!doctype html><title>CTS {escape(settings.INSTANCE_NAME)}</title>"
        f"<h1>CTS {escape(settings.INSTANCE_NAME)}</h1>"
        f"<p>currency {escape(settings.CURRENCY)}, language {escape(settings.LANGUAGE_CODE)}</p>"
        f"<p>visits {visits}, cached hits {hits}</p>"
        f'<p><a href="{reverse("visits")}">visits as JSON</a>'
        f' <img src="{settings.STATIC_URL}cts/logo.svg" alt=""></p>'
    )


def visits(request):
    visits, hits = _count()
    return JsonResponse(
        {
            "instance": settings.INSTANCE,
            "name": settings.INSTANCE_NAME,
            "currency": settings.CURRENCY,
            "database": connection.settings_dict["NAME"],
            "user": connection.settings_dict["USER"],
            "visits": visits,
            "cached_hits": hits,
            "link": reverse("visits"),
        }
    )


def healthz(request):
    return HttpResponse("ok")
