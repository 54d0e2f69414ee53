"""The code each framework runs in a subprocess, after ``django.setup()`` with its own
environment (``str.format`` templates: ``{n}`` calls, ``{warm}`` warm-up calls, ``{kw}``
keyword arguments of ``get()``). A timed snippet prints its figure as JSON on its last line.
"""

OURS_ENQUEUE = """
import json, time, django; django.setup()
from testproject.demo.tasks import noop
n = {n}
for _ in range({warm}):  # not timed: the first call imports the broker's client, connects
    noop.delay()
start = time.perf_counter()
for _ in range(n):
    noop.delay()
print(json.dumps(n / (time.perf_counter() - start)))
"""
OURS_BULK = """
import json, time, django; django.setup()
from testproject.demo.tasks import noop
n = {n}
noop.delay_many([()] * {warm})  # not timed, as in OURS_ENQUEUE
start = time.perf_counter()
noop.delay_many([()] * n)
print(json.dumps(n / (time.perf_counter() - start)))
"""
# Setup, not timed: the queue filled in bulk.
OURS_FILL = """
import django; django.setup()
from testproject.demo.tasks import noop
n = {n}
for start in range(0, n, 5000):
    noop.delay_many([()] * min(5000, n - start))
"""
OURS_COUNTDOWN = """
import django; django.setup()
from testproject.demo.tasks import noop
noop.apply_many([((), {{}})] * {n}, countdown=3600)
"""
OURS_LATENCY = """
import json, time, django; django.setup()
from testproject.demo.tasks import add
kw = {kw}
for i in range({warm}):
    add.delay(i, i).get(timeout=30, **kw)
samples = []
for i in range({n}):
    start = time.perf_counter()
    assert add.delay(i, i).get(timeout=30, **kw) == 2 * i
    samples.append((time.perf_counter() - start) * 1000)
print(json.dumps(samples))
"""

CELERY_ENQUEUE = OURS_ENQUEUE.replace("testproject.demo.tasks", "benchmarks.celery_app.tasks")
# Celery has no bulk publish; its nearest is a group, which publishes one message per task
# over one producer (a round trip each, no batching).
CELERY_BULK = """
import json, time, django; django.setup()
from celery import group
from benchmarks.celery_app.tasks import noop
n = {n}
group(noop.s() for _ in range({warm})).apply_async()  # not timed, as in OURS_ENQUEUE
start = time.perf_counter()
group(noop.s() for _ in range(n)).apply_async()
print(json.dumps(n / (time.perf_counter() - start)))
"""
CELERY_FILL = """
import django; django.setup()
from benchmarks.celery_app.tasks import noop
with noop.app.producer_or_acquire() as producer:
    for _ in range({n}):
        noop.apply_async(producer=producer)
"""
CELERY_COUNTDOWN = """
import django; django.setup()
from benchmarks.celery_app.tasks import noop
with noop.app.producer_or_acquire() as producer:
    for _ in range({n}):
        noop.apply_async(countdown=3600, producer=producer)
"""
CELERY_LATENCY = OURS_LATENCY.replace("testproject.demo.tasks", "benchmarks.celery_app.tasks")

CELERY_VERSIONS = ("import celery, django, json; print(json.dumps("
                   "{'celery': celery.__version__, 'django': django.get_version()}))")
