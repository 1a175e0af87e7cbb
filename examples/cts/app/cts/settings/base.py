"""Settings shared by every CTS instance; everything instance-specific comes from the
environment grove gives each unit (DATABASE_URL, CACHE_LOCATION, URL_PREFIX, CURRENCY, ...)."""
import os
import urllib.parse
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "collectstatic-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "localhost").split(",")

INSTALLED_APPS = ["django.contrib.staticfiles", "country"]
MIDDLEWARE = []
ROOT_URLCONF = "cts.urls"
WSGI_APPLICATION = "cts.wsgi.application"
TEMPLATES = []

INSTANCE = os.environ.get("INSTANCE", "local")
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", INSTANCE)
CURRENCY = os.environ.get("CURRENCY", "USD")
LANGUAGE_CODE = os.environ.get("LANGUAGE_CODE", "en")
USE_TZ = True

# The edge strips the instance's prefix (/TR); Django puts it back in the URLs it builds.
_prefix = os.environ.get("URL_PREFIX", "/")
FORCE_SCRIPT_NAME = None if _prefix in ("", "/") else _prefix

_db = os.environ.get("DATABASE_URL")
if _db:
    u = urllib.parse.urlsplit(_db)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": u.path.lstrip("/") or u.username,
            "USER": urllib.parse.unquote(u.username or ""),
            "PASSWORD": urllib.parse.unquote(u.password or ""),
            "HOST": u.hostname,
            "PORT": u.port,
        }
    }
else:
    DATABASES = {}

_cache = os.environ.get("CACHE_LOCATION")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": _cache,
        "KEY_PREFIX": os.environ.get("CACHE_PREFIX", ""),
    }
    if _cache
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "collected-static"
STATICFILES_DIRS = [BASE_DIR / "static"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
