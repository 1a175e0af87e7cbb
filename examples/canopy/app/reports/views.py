import json

from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt

from .models import Record, Report
from .tasks import make_report


def index(request):
    return HttpResponse(
        "<!doctype html><title>Canopy</title>"
        '<link rel="stylesheet" href="/static/canopy/site.css">'
        f"<h1>Canopy</h1><p>{Record.objects.count()} records, {Report.objects.count()} reports</p>"
    )


def healthz(request):
    return HttpResponse("ok")


@csrf_exempt
def records(request):
    if request.method == "POST":
        try:
            data = json.loads(request.body)
            title = str(data["title"])[:200]
        except (ValueError, KeyError, TypeError):
            return JsonResponse({"error": "a record is a JSON object with a title"}, status=400)
        r = Record.objects.create(title=title, body=str(data.get("body", "")))
        return JsonResponse({"id": r.pk}, status=201)
    return JsonResponse({"records": [{"id": r.pk, "title": r.title} for r in Record.objects.order_by("id")]})


@csrf_exempt
def report_for(request, pk):
    if request.method != "POST":
        return JsonResponse({"error": "POST to queue a report"}, status=405)
    record = get_object_or_404(Record, pk=pk)
    report = Report.objects.create(record=record)
    make_report.delay(report.pk)
    return JsonResponse({"report": report.pk, "status": report.status}, status=202)


def report(request, pk):
    r = get_object_or_404(Report, pk=pk)
    return JsonResponse({"report": r.pk, "record": r.record_id, "status": r.status, "error": r.error})


def pdf(request, pk):
    r = get_object_or_404(Report, pk=pk)
    if r.status != Report.DONE:
        return JsonResponse({"status": r.status, "error": r.error}, status=409)
    resp = HttpResponse(bytes(r.pdf), content_type="application/pdf")
    resp["Content-Disposition"] = f'attachment; filename="report-{r.pk}.pdf"'
    return resp
