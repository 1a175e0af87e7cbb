"""Back-end settings. The secrets come from the stack's .env (the seed's required keys)
through grove: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, DJANGO_SECRET_KEY,
SECRET_EMAIL_USER / SECRET_EMAIL_USER_PSWD, ENVIRONMENT; the servers' addresses from the
recipes (DB_HOST / DB_PORT, REDIS_URL)."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "collectstatic-only-not-a-secret")
ENVIRONMENT = os.environ.get("ENVIRONMENT", "development")
DEBUG = ENVIRONMENT == "development"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "localhost").split(",")

INSTALLED_APPS = ["channels", "django.contrib.staticfiles", "chat"]
MIDDLEWARE = []
ROOT_URLCONF = "backend.urls"
ASGI_APPLICATION = "backend.asgi.application"
TEMPLATES = []
USE_TZ = True

if os.environ.get("POSTGRES_DB"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["POSTGRES_DB"],
            "USER": os.environ["POSTGRES_USER"],
            "PASSWORD": os.environ["POSTGRES_PASSWORD"],
            "HOST": os.environ.get("DB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DB_PORT", "5432"),
        }
    }
else:
    DATABASES = {}

# Redis publish/subscribe as the channel layer behind the WebSockets (the seed's choice).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")]},
    }
}

# The password-reset mails of the seed go through this account.
EMAIL_HOST_USER = os.environ.get("SECRET_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("SECRET_EMAIL_USER_PSWD", "")

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "collected-static"
STATICFILES_DIRS = [BASE_DIR / "static"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
