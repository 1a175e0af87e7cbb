"""The Celery application: jobs go over RabbitMQ (CELERY_BROKER_URL, the stack's `mq`)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "canopy.settings")

app = Celery("canopy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
