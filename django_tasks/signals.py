"""Signals sent by workers around each task (Celery's names, Django's ``Signal``)."""

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("django_tasks.worker")

# Task signals, sent in the process (or thread) that runs the task, with Celery's arguments.
# Every receiver also gets Django's ``signal``; take ``**kwargs`` for what may be added.

#: A message was taken and is about to run: ``sender`` is the consumer; ``request``.
task_received = Signal()
#: Before a task runs: ``sender`` is the task; ``task_id``, ``task``, ``args``, ``kwargs``.
task_prerun = Signal()
#: After a task ran, whatever the outcome: ``task_id``, ``task``, ``args``, ``kwargs``,
#: ``retval``, ``state``.
task_postrun = Signal()
#: A task succeeded: ``result``.
task_success = Signal()
#: A task failed: ``task_id``, ``exception``, ``args``, ``kwargs``, ``traceback`` (text),
#: ``einfo``.
task_failure = Signal()
#: A task asked to be retried: ``request``, ``reason`` (the exception), ``einfo``; also
#: ``task_id`` and ``countdown``.
task_retry = Signal()
#: A message was settled without running because it was revoked or expired: ``request``,
#: ``terminated``, ``signum``, ``expired``.
task_revoked = Signal()
#: A message was rejected without running: ``task_id`` (may be None), ``reason``,
#: ``message`` (the delivery), ``exc``.
task_rejected = Signal()
#: A worker started (``sender`` is the ``Worker``) or is shutting down.
worker_ready = Signal()
worker_shutdown = Signal()
#: A prefork pool process started, before it takes work (``sender`` is None).
worker_process_init = Signal()


def send(signal: Signal, sender: Any, **named: Any) -> None:
    """Send ``signal`` to every receiver; one that raises is logged and never breaks the
    task or the worker (the other receivers still get it)."""
    if not signal.receivers:  # the common case, four times a task: nothing to do
        return
    try:
        answers = signal.send_robust(sender, **named)
    except Exception:  # a sender Django cannot look up (unhashable): a bug of ours
        logger.exception("Cannot send a django_tasks signal from %r", sender)
        return
    for receiver, result in answers:
        if isinstance(result, Exception):
            logger.error("Receiver %s of a django_tasks signal raised %s: %s",
                         getattr(receiver, "__qualname__", receiver), type(result).__name__,
                         result, exc_info=result)
