"""Benchmarks of the database broker: enqueue rate, drain rate, round-trip latency, memory.

    python benchmarks/run.py                      # SQLite and PostgreSQL, full size
    python benchmarks/run.py --quick              # small numbers, a smoke run
    python benchmarks/run.py --backends postgres

Each backend runs in a fresh database (a temporary SQLite file, or a new PostgreSQL database
dropped afterwards). Prints a Markdown table and writes docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")

ENQUEUE = """
import time, django; django.setup()
from testproject.demo.tasks import noop
n = {n}
start = time.perf_counter()
for _ in range(n):
    noop.delay()
print(n / (time.perf_counter() - start))
"""
FILL = """
import django; django.setup()
from django.db import transaction
from testproject.demo.tasks import noop
for _ in range({n} // 1000):
    with transaction.atomic():
        for _ in range(1000):
            noop.delay()
"""
DRAINED = """
import django; django.setup()
from django.db.models import Max, Min
from django_tasks.models import TaskResult
done = TaskResult.objects.filter(state="SUCCESS")
print(done.count())
span = done.aggregate(a=Min("started_at"), b=Max("date_done"))
print((span["b"] - span["a"]).total_seconds() if span["a"] else 0)
"""
LATENCY = """
import time, django; django.setup()
from testproject.demo.tasks import add
for i in range({warm}):
    add.delay(i, i).get(timeout=30, interval=0.05)
samples = []
for i in range({n}):
    start = time.perf_counter()
    assert add.delay(i, i).get(timeout=30, interval=0.05) == 2 * i
    samples.append((time.perf_counter() - start) * 1000)
samples.sort()
pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
print(pick(0.50), pick(0.95), pick(0.99))
"""


def python(code: str, env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return proc.stdout


def start_worker(env: dict[str, str], concurrency: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "taskworker", "-c", str(concurrency), "-l", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def memory_mib(pid: int) -> tuple[float, float]:
    """RSS and USS of a process and its children, in MiB."""
    import psutil

    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    rss = sum(p.memory_info().rss for p in procs)
    uss = sum(p.memory_full_info().uss for p in procs)
    return rss / 2**20, uss / 2**20


class Database:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.tmp = tempfile.TemporaryDirectory()
        self.name = f"bench_{uuid.uuid4().hex[:8]}"
        if backend == "sqlite":
            self.url = f"sqlite:///{self.tmp.name}/bench.sqlite3"
        else:
            self._admin(f'CREATE DATABASE "{self.name}"')
            self.url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{self.name}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.url, "TASKS_LOGLEVEL": "WARNING",
                "DJANGO_SETTINGS_MODULE": "testproject.settings", "PYTHONPATH": str(ROOT)}

    def reset(self) -> None:
        python("import django; django.setup()\n"
               "from django_tasks.models import TaskResult, QueuedMessage\n"
               "TaskResult.objects.all().delete(); QueuedMessage.objects.all().delete()",
               self.env())

    def drop(self) -> None:
        if self.backend == "postgres":
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.tmp.cleanup()


def drain(db: Database, n: int, concurrency: int) -> tuple[float, subprocess.Popen[bytes]]:
    db.reset()
    python(FILL.format(n=n), db.env())
    worker = start_worker(db.env(), concurrency)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(0.5)
        count, span = python(DRAINED, db.env()).split()
        if int(count) >= n:
            return n / float(span), worker
    stop_worker(worker)
    raise RuntimeError(f"drain of {n} tasks did not finish in 600 s")


def measure(backend: str, quick: bool) -> dict[str, str]:
    sizes = {"enqueue": 500, "drain": 2000, "latency": 100} if quick else \
        {"enqueue": 5000, "drain": 20000, "latency": 500}
    db = Database(backend)
    row: dict[str, str] = {}
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT,
                       env=db.env(), check=True)
        rate = float(python(ENQUEUE.format(n=sizes["enqueue"]), db.env()))
        row["enqueue, delay() one by one (tasks/s)"] = f"{rate:,.0f}"
        for concurrency in (1, 2):
            rate, worker = drain(db, sizes["drain"], concurrency)
            row[f"drain {sizes['drain']:,} no-op tasks, -c {concurrency} (tasks/s)"] = \
                f"{rate:,.0f}"
            if concurrency == 2:
                time.sleep(1)
                rss, uss = memory_mib(worker.pid)
                row["worker memory after drain, -c 2: RSS / USS (MiB)"] = f"{rss:.0f} / {uss:.0f}"
                db.reset()
                p50, p95, p99 = python(LATENCY.format(warm=50, n=sizes["latency"]),
                                       db.env()).split()
                row["round trip delay().get(), p50 / p95 / p99 (ms)"] = \
                    f"{float(p50):.1f} / {float(p95):.1f} / {float(p99):.1f}"
            stop_worker(worker)
    finally:
        db.drop()
    return row


def machine() -> str:
    import django

    pg = "-"
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL) as conn:
            pg = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    except Exception:  # noqa: BLE001 - PostgreSQL is optional here
        pass
    return (f"{os.cpu_count()} CPUs, Python {platform.python_version()}, Django "
            f"{django.get_version()}, PostgreSQL {pg}, {dt.date.today().isoformat()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    options = parser.parse_args()
    backends = options.backends.split(",")
    results = {b: measure(b, options.quick) for b in backends}
    names = list(next(iter(results.values())))
    table = ["| measurement | " + " | ".join(backends) + " |",
             "|---|" + "---|" * len(backends)]
    table += [f"| {n} | " + " | ".join(results[b].get(n, "-") for b in backends) + " |"
              for n in names]
    text = "\n".join(table)
    print(text)
    print(machine())
    template = (ROOT / "benchmarks" / "README.md").read_text()
    Path(options.output).write_text(
        template.replace("{table}", text).replace("{machine}", machine())
        .replace("{mode}", "quick (small sizes)" if options.quick else "full"))


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    sys.path.insert(0, str(ROOT))
    main()
