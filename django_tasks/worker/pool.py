"""Running a worker's pool: ``prefork`` (processes), ``threads`` or ``solo``.

Each pool runs :class:`~django_tasks.worker.consumer.Consumer` loops and is supervised by
the one loop in ``supervisor.py``; ``prefork.py`` and ``threads.py`` hold what differs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..process import connections
from . import heartbeat
from .prefork import PreforkPool
from .recycle import Recycler
from .supervisor import Signals, supervise
from .threads import run_solo, run_threads

if TYPE_CHECKING:
    from .main import Worker

logger = logging.getLogger("django_tasks.worker")


def run_pool(worker: Worker) -> int:
    """Consume until shutdown; return the exit code (0). A threads or solo worker that
    drained to be replaced (``--max-*-per-child``) says why in ``worker.recycled``."""
    recycler = Recycler(worker.max_tasks_per_child, worker.max_memory_per_child)
    try:
        if worker.pool == "prefork":
            run_prefork(worker)
        elif worker.pool == "threads":
            run_threads(worker, recycler)
        else:
            run_solo(worker, recycler)
    finally:
        heartbeat.goodbye(worker)
        connections.close_all()
    if recycler.triggered.is_set():
        logger.warning("Worker %s restarts itself: %s", worker.hostname, recycler.reason)
        worker.recycled = recycler.reason
    return 0


def run_prefork(worker: Worker) -> None:
    sigs = Signals()
    sigs.install()
    pool = PreforkPool(worker, sigs)
    watch = pool.watch().start_process()  # forked before anything else: see stall.py
    pool.start()
    try:
        supervise(pool, watch)
    finally:
        watch.stop()
