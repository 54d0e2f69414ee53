"""A minimal Celery app for the side-by-side benchmark (``benchmarks/run.py``).

It runs under a separate virtualenv (``.venv/bench-celery``: celery, django-celery-results,
redis, django, psycopg) and imports nothing from ``django_tasks``: Redis is the broker and
django-celery-results stores results in the same database django_tasks is measured on.

    DJANGO_SETTINGS_MODULE=benchmarks.celery_app.settings \\
        python -m celery -A benchmarks.celery_app worker -P prefork -c 2 --loglevel=warning
"""

from .app import app

__all__ = ["app"]
