from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse

from .models import Message


def healthz(request):
    return HttpResponse("ok")


def messages(request):
    room = "echo." + request.GET.get("room", "")
    rows = Message.objects.filter(room=room).order_by("id")[:200]
    return JsonResponse({"room": room, "messages": [m.text for m in rows]})


def status(request):
    return JsonResponse(
        {
            "environment": settings.ENVIRONMENT,
            "database": connection.settings_dict["NAME"],
            "user": connection.settings_dict["USER"],
            "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
        }
    )


def docs(request):
    return HttpResponse(
        "<!doctype html><title>API documentation</title>"
        f'<link rel="stylesheet" href="{settings.STATIC_URL}docs/docs.css">'
        "<h1>Back-end API documentation</h1><ul>"
        "<li><code>GET /api/status</code>: environment, database and channel layer</li>"
        "<li><code>GET /api/messages?room=NAME</code>: the messages sent in a room</li>"
        "<li><code>WS /ws/echo/NAME/</code>: every text frame is echoed to the room</li>"
        "</ul>"
    )
