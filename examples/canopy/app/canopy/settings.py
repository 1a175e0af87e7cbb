"""Canopy settings: what canopy.ini held (database, broker, report server) comes from the
environment grove gives the unit."""
import os
import urllib.parse
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "collectstatic-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "localhost").split(",")

INSTALLED_APPS = ["django.contrib.staticfiles", "reports"]
MIDDLEWARE = []
ROOT_URLCONF = "canopy.urls"
WSGI_APPLICATION = "canopy.wsgi.application"
TEMPLATES = []
USE_TZ = True

_db = os.environ.get("DATABASE_URL")
if _db:
    u = urllib.parse.urlsplit(_db)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": u.path.lstrip("/"),
            "USER": urllib.parse.unquote(u.username or ""),
            "PASSWORD": urllib.parse.unquote(u.password or ""),
            "HOST": u.hostname,
            "PORT": u.port,
            # ?sslmode=verify-full&sslrootcert=... (a PostgreSQL recipe with tls = true)
            "OPTIONS": dict(urllib.parse.parse_qsl(u.query)),
        }
    }
else:
    DATABASES = {}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
DOCSERVER_URL = os.environ.get("DOCSERVER_URL", "")
PDF_CONVERTER_URL = os.environ.get("PDF_CONVERTER_URL", "")
SERVE_STATIC = os.environ.get("SERVE_STATIC", "0") == "1"

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "collected-static"
STATICFILES_DIRS = [BASE_DIR / "static"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
