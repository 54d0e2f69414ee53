"""The Celery application, configured from the Django settings (``CELERY_*`` names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.celery_app.settings")

app = Celery("bench", include=["benchmarks.celery_app.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
