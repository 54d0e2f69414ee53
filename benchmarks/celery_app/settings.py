"""Django settings for the Celery side of the benchmark.

The database comes from ``CELERY_BENCH_DATABASE`` (the JSON of one ``DATABASES`` entry,
written by ``benchmarks/run.py``) so Celery's results land in the very database django_tasks
is measured on; the broker is Redis database 15 unless ``CELERY_BENCH_BROKER`` says otherwise
(RabbitMQ for the RabbitMQ table, with the queue ``CELERY_BENCH_QUEUE``);
``CELERY_BENCH_IGNORE_RESULT=1`` turns results off.
"""

import json
import os

SECRET_KEY = "benchmark-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django_celery_results"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_default = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/tmp/celery-bench.sqlite3"}
DATABASES = {"default": json.loads(os.environ.get("CELERY_BENCH_DATABASE") or "null")
             or _default}
# Celery's Django fix-up closes every database connection before and after every task, so
# by default each result costs a new connection. CELERY_DB_REUSE_MAX makes it close them only
# every N tasks instead; with persistent connections (as django_tasks' worker keeps its own)
# the comparison measures the task machinery, not connection set-up.
DATABASES["default"].setdefault("CONN_MAX_AGE", None)
CELERY_DB_REUSE_MAX = 1000

CELERY_BROKER_URL = os.environ.get("CELERY_BENCH_BROKER", "redis://127.0.0.1:6379/15")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's default queue (and, on RabbitMQ, the direct exchange of the same name).
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_BENCH_QUEUE", "celery")
CELERY_RESULT_BACKEND = "django-db"
# The "no results" columns: no task stores its result (Celery's task_ignore_result).
CELERY_TASK_IGNORE_RESULT = os.environ.get("CELERY_BENCH_IGNORE_RESULT") == "1"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = True
