from django.db import models


class Record(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)


class Report(models.Model):
    QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
    record = models.ForeignKey(Record, on_delete=models.CASCADE)
    status = models.CharField(max_length=10, default=QUEUED)
    error = models.TextField(blank=True)
    pdf = models.BinaryField(null=True)
    created = models.DateTimeField(auto_now_add=True)
