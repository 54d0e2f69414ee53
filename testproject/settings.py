"""Settings of the demo and test project, read from the environment (see .env.example)."""

from pathlib import Path

import django
import environ

from django_tasks.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("SECRET_KEY", default="insecure-demo-key-change-me")
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks",
    "testproject.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "testproject.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several worker processes share the file: wait for the lock instead of failing, take
    # the write lock at BEGIN (no deadlocked upgrades), and let readers run beside a writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE",
         "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
    DATABASES["default"]["TEST"] = {
        "NAME": env("TEST_SQLITE_NAME", default=str(BASE_DIR / "test_db.sqlite3"))
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
_email_backend = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
if django.VERSION >= (6, 1):  # Django 6.1 replaced EMAIL_BACKEND with MAILERS
    MAILERS = {"default": {"BACKEND": _email_backend}}
else:
    EMAIL_BACKEND = _email_backend
DEFAULT_FROM_EMAIL = "demo@example.com"

TASKS_BROKER_URL = env("TASKS_BROKER_URL", default="django://")
# kombu's transport options, for a kombu transport (``filesystem://``, ``sqs://``): JSON.
TASKS_BROKER_TRANSPORT_OPTIONS = env.json("TASKS_BROKER_TRANSPORT_OPTIONS", default={})
TASKS_RESULT_BACKEND = env("TASKS_RESULT_BACKEND", default="django://")
TASKS_ALWAYS_EAGER = env.bool("TASKS_ALWAYS_EAGER", default=False)
TASKS_LEASE_SECONDS = env.float("TASKS_LEASE_SECONDS", default=30.0)
TASKS_HEARTBEAT_SECONDS = env.float("TASKS_HEARTBEAT_SECONDS", default=5.0)
TASKS_WORKER_SHUTDOWN_TIMEOUT = env.float("TASKS_WORKER_SHUTDOWN_TIMEOUT", default=25.0)
TASKS_MAX_DELIVERIES = env.int("TASKS_MAX_DELIVERIES", default=3)

# Periodic tasks, synced into the database when `manage.py taskbeat` starts (the demo's; the
# test suite turns them off with DEMO_BEAT_SCHEDULE=False).
TASKS_BEAT_SCHEDULE = {
    "add-every-30-seconds": {
        "task": "testproject.demo.tasks.add", "args": (16, 16),
        "schedule": env.float("DEMO_BEAT_EVERY", default=30.0),
    },
    "monday-morning": {
        "task": "testproject.demo.tasks.add",
        "schedule": crontab(hour=7, minute=30, day_of_week=1), "args": (2, 3),
    },
} if env.bool("DEMO_BEAT_SCHEDULE", default=True) else {}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # Celery's formats: records of task loggers also show the task's name and id.
        "plain": {"()": "django_tasks.utils.log.WorkerFormatter"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_tasks": {
            "handlers": ["console"],
            "level": env("TASKS_LOGLEVEL", default="INFO"),
            "propagate": False,
        }
    },
}
