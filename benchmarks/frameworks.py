"""The frameworks the benchmark compares, each one configuration:

- ``Ours``: django_tasks on the database broker (``django://``), on Redis or on RabbitMQ,
  results in the database or none, with or without the PENDING row at enqueue;
- ``Celery``: Celery on Redis or RabbitMQ, results with django-celery-results in the same
  database, or none (``task_ignore_result``). It runs from a separate virtualenv
  (``BENCH_VENV``).

A framework knows how to migrate, reset, fill its queue, start a worker and count what is
done; the code it runs in subprocesses is in ``snippets.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import rabbitmq, snippets
from benchmarks.common import ROOT, Database, log, run_code, run_command

BENCH_VENV = Path(os.environ.get("BENCH_VENV", ROOT / ".venv" / "bench-celery"))
CELERY_PACKAGES = ["celery", "django-celery-results", "redis", "django", "psycopg[binary]",
                   "packaging"]  # kombu's Redis transport imports packaging
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
REDIS_PREFIX = "bench"  # django_tasks' keys; Celery's are its own ("celery", "unacked", ...)
QUEUE = "default"  # django_tasks' default queue; Celery's is "celery"
POLL = 0.05  # seconds between counts of finished tasks during a drain (SQL COUNTs)
REDIS_POLL = 0.01  # the same counted in Redis or RabbitMQ (cheap): finer, for short drains


def redis_client() -> Any:
    import redis

    return redis.Redis.from_url(REDIS_URL, socket_timeout=10)


def flush_redis() -> None:
    client = redis_client()
    try:
        client.flushdb()
    finally:
        client.close()


class Framework:
    kind = ""  # "ours" or "celery"
    python = sys.executable
    success_sql = ""
    tables: list[str] = []

    def __init__(self, db: Database, *, broker: str = "redis", results: bool = True) -> None:
        self.db = db
        self.broker = broker
        self.results = results
        self.filled = 0  # tasks queued by the last fill(), for done() without results
        self._redis: Any = None
        self.logfile = db.tmp / f"{self.name}-worker.log"

    @property
    def name(self) -> str:
        raise NotImplementedError

    def env(self, **overrides: str) -> dict[str, str]:
        raise NotImplementedError

    def migrate(self) -> None:
        raise NotImplementedError

    def worker_cmd(self, concurrency: int) -> list[str]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def remaining(self) -> int:
        """Messages still queued or held by a worker (for runs without results)."""
        raise NotImplementedError

    @property
    def poll(self) -> float:
        return POLL if self.results else REDIS_POLL

    def done(self) -> int:
        """Tasks finished: SUCCESS rows, or without results the messages gone since fill()."""
        if self.results:
            return self.db.count(self.success_sql)
        return self.filled - self.remaining()

    def run(self, code: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
        return run_code(self.python, code, self.env(**(env or {})), timeout=timeout)

    def fill(self, n: int) -> None:
        self.run(self.fill_code.format(n=n), timeout=600)
        self.filled = n

    def fill_countdown(self, n: int) -> None:
        self.run(self.countdown_code.format(n=n), timeout=600)

    def redis(self) -> Any:
        if self._redis is None:
            self._redis = redis_client()
        return self._redis

    # the code each side runs (snippets.py), set by the subclasses
    enqueue_code = bulk_code = fill_code = countdown_code = latency_code = ""


class Ours(Framework):
    kind = "ours"
    success_sql = "SELECT COUNT(*) FROM django_tasks_taskresult WHERE state = 'SUCCESS'"
    tables = ["django_tasks_queuedmessage", "django_tasks_taskresult"]
    enqueue_code, bulk_code, fill_code = snippets.OURS_ENQUEUE, snippets.OURS_BULK, \
        snippets.OURS_FILL
    countdown_code, latency_code = snippets.OURS_COUNTDOWN, snippets.OURS_LATENCY

    def __init__(self, db: Database, *, broker: str = "database", results: bool = True
                 ) -> None:
        super().__init__(db, broker=broker, results=results)

    @property
    def name(self) -> str:
        return f"django_tasks-{self.broker}" + ("" if self.results else "-noresults")

    def broker_url(self) -> str:
        if self.broker == "redis":
            return f"{REDIS_URL}?prefix={REDIS_PREFIX}"
        if self.broker == "amqp":
            return rabbitmq.AMQP_URL
        return "django://"

    def env(self, **overrides: str) -> dict[str, str]:
        queue = rabbitmq.OURS_QUEUE if self.broker == "amqp" else QUEUE
        return {**os.environ, "DATABASE_URL": self.db.url, "TASKS_LOGLEVEL": "WARNING",
                "TASKS_BROKER_URL": self.broker_url(), "TASKS_DEFAULT_QUEUE": queue,
                "TASKS_RESULT_BACKEND": "django://" if self.results else "",
                "TASKS_STORE_PENDING": "True",
                "TASKS_ALWAYS_EAGER": "False", "DEBUG": "False",  # no query log
                "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **overrides}

    def migrate(self) -> None:
        run_command([self.python, "manage.py", "migrate", "-v0"], self.env())

    def worker_cmd(self, concurrency: int) -> list[str]:
        return [self.python, "manage.py", "taskworker", "-c", str(concurrency), "-P", "prefork",
                "-l", "warning"]

    def reset(self) -> None:
        if self.broker == "redis":
            flush_redis()
        elif self.broker == "amqp":
            rabbitmq.clean()
        self.db.execute("DELETE FROM django_tasks_queuedmessage",
                        "DELETE FROM django_tasks_outboxmessage",
                        "DELETE FROM django_tasks_taskresult",
                        "DELETE FROM django_tasks_workerstate")
        self.filled = 0

    def remaining(self) -> int:
        if self.broker == "redis":
            pipe = self.redis().pipeline()
            for state in ("ready", "leased", "delayed"):
                pipe.zcard(f"{REDIS_PREFIX}:{state}:{QUEUE}")
            return int(sum(pipe.execute()))
        if self.broker == "amqp":  # ready only: what a worker holds unacked is not seen
            return rabbitmq.ready(rabbitmq.OURS_QUEUE)
        return self.db.count("SELECT COUNT(*) FROM django_tasks_queuedmessage")


class Celery(Framework):
    kind = "celery"
    python = str(BENCH_VENV / "bin" / "python")
    success_sql = "SELECT COUNT(*) FROM django_celery_results_taskresult WHERE status = 'SUCCESS'"
    tables = ["django_celery_results_taskresult"]
    enqueue_code, bulk_code, fill_code = snippets.CELERY_ENQUEUE, snippets.CELERY_BULK, \
        snippets.CELERY_FILL
    countdown_code, latency_code = snippets.CELERY_COUNTDOWN, snippets.CELERY_LATENCY

    @property
    def name(self) -> str:
        return f"celery-{self.broker}" + ("" if self.results else "-noresults")

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV", "PYTHONHOME")}
        amqp = self.broker == "amqp"
        return {**env, "DJANGO_SETTINGS_MODULE": "benchmarks.celery_app.settings",
                "CELERY_BENCH_DATABASE": json.dumps(self.db.django_database()),
                "CELERY_BENCH_BROKER": rabbitmq.AMQP_URL if amqp else REDIS_URL,
                "CELERY_BENCH_QUEUE": rabbitmq.CELERY_QUEUE if amqp else "celery",
                "CELERY_BENCH_IGNORE_RESULT": "0" if self.results else "1",
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **overrides}

    def migrate(self) -> None:
        run_command([self.python, "-m", "django", "migrate", "-v0"], self.env())

    def worker_cmd(self, concurrency: int) -> list[str]:
        return [self.python, "-m", "celery", "-A", "benchmarks.celery_app", "worker",
                "-P", "prefork", "-c", str(concurrency), "--loglevel=warning"]

    def reset(self) -> None:
        if self.broker == "amqp":
            rabbitmq.clean()
        else:
            flush_redis()
        self.db.execute("DELETE FROM django_celery_results_taskresult")
        self.filled = 0

    def remaining(self) -> int:
        """On Redis, the queue's list plus kombu's unacked hash (messages a worker
        prefetched; with early ack a message leaves it when its task starts). On RabbitMQ,
        the messages ready in the queue only (prefetched ones are not seen)."""
        if self.broker == "amqp":
            return self.queued()
        pipe = self.redis().pipeline()
        pipe.llen("celery")
        pipe.hlen("unacked")
        return int(sum(pipe.execute()))

    def queued(self) -> int:
        """Messages no worker has fetched yet."""
        if self.broker == "amqp":
            return rabbitmq.ready(rabbitmq.CELERY_QUEUE)
        return int(self.redis().llen("celery"))


def celery_ready(install: bool = True) -> str | None:
    """None when ``BENCH_VENV`` runs Celery (creating it if missing), else why not. Whether
    its broker answers is each table's question (``redis_problem``, ``rabbitmq.problem``)."""
    python = BENCH_VENV / "bin" / "python"
    check = ("import celery, django_celery_results, redis, django, psycopg, "
             "kombu.transport.redis, kombu.transport.pyamqp")
    try:
        if not python.exists():
            if not install:
                return f"{BENCH_VENV} missing"
            log(f"creating {BENCH_VENV} for Celery")
            subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True,
                           timeout=300, capture_output=True)
        if subprocess.run([str(python), "-c", check], capture_output=True,
                          timeout=60).returncode:
            if not install:
                return "Celery packages missing"
            log(f"installing {' '.join(CELERY_PACKAGES)} into {BENCH_VENV}")
            subprocess.run([str(python), "-m", "pip", "install", "-q", *CELERY_PACKAGES],
                           check=True, timeout=900, capture_output=True)
            subprocess.run([str(python), "-c", check], check=True, timeout=60,
                           capture_output=True)
    except Exception as exc:  # noqa: BLE001 - no venv: no Celery column
        return f"could not set up {BENCH_VENV} ({type(exc).__name__})"
    return None


def redis_problem() -> str | None:
    """None when Redis answers at ``BENCH_REDIS_URL``, else why not."""
    try:
        flush_redis()
    except Exception as exc:  # noqa: BLE001 - no Redis: no Redis columns
        return f"Redis at {REDIS_URL} not reachable ({type(exc).__name__})"
    return None
