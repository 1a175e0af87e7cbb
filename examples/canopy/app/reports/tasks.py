"""The report job, run by the Celery worker: the docserver renders the record to .docx, the
PDF converter turns that into a PDF, and the PDF is stored with the report."""
import json
import urllib.request

from celery import shared_task
from django.conf import settings

from .models import Record, Report


def _post(url, body, content_type, timeout=120):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


@shared_task
def make_report(report_id):
    report = Report.objects.get(pk=report_id)
    report.status = Report.RUNNING
    report.save(update_fields=["status"])
    try:
        record = Record.objects.get(pk=report.record_id)
        docx = _post(
            settings.DOCSERVER_URL.rstrip("/") + "/render",
            json.dumps({"id": record.pk, "title": record.title, "body": record.body}).encode(),
            "application/json",
        )
        pdf = _post(
            settings.PDF_CONVERTER_URL.rstrip("/") + "/convert",
            docx,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        )
        if not pdf.startswith(b"%PDF"):
            raise ValueError("the converter did not return a PDF")
        report.pdf = pdf
        report.status = Report.DONE
    except Exception as e:  # noqa: BLE001 - the job's failure is recorded on the report
        report.status = Report.FAILED
        report.error = str(e)
    report.save()
    return report.status
