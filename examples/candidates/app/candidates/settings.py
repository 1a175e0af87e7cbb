"""Candidates settings: everything that differs between dev, staging and prod comes from the
environment grove gives the unit (the seed's compose files set the same variables)."""
import os
import urllib.parse
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "collectstatic-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "localhost").split(",")

INSTALLED_APPS = ["django.contrib.staticfiles", "rating"]
MIDDLEWARE = []
ROOT_URLCONF = "candidates.urls"
WSGI_APPLICATION = "candidates.wsgi.application"
TEMPLATES = []
USE_TZ = True

SITE_BANNER = os.environ.get("SITE_BANNER", "")
ENVIRONMENT = os.environ.get("GROVE_ENV", "base")
STAGING_DETAILS = os.environ.get("STAGING_DETAILS", "")
FIREFLY_URL = os.environ.get("FIREFLY_URL", "/firefly/")

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
        }
    }
else:
    DATABASES = {}

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = (BASE_DIR / os.environ.get("MEDIA_ROOT", "../media")).resolve()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
