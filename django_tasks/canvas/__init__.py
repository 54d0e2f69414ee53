"""Workflows, as in Celery: signatures, ``chain``, ``group`` and ``chord``.

A :class:`Signature` is a task call written down: the task's name, its arguments, its call
options. It is a ``dict`` in Celery's shape (``task``, ``args``, ``kwargs``, ``options``,
``subtask_type``, ``immutable``, ``chord_size``), so it travels in a message as JSON and
comes back as itself (:func:`signature`).

Nothing here waits or polls. A workflow is applied as messages: the first tasks' messages
carry the rest in Celery's protocol v2 ``embed`` (``callbacks``, ``errbacks``, ``chain``,
``chord``), and the worker turns them into follow-up messages when it settles each task, in
the transaction that stores its outcome (``followups.py``). A chord's members are counted in
one database row (``results/workflows.py``); the member that completes the count publishes
the callback.
"""

from .flows import chain, chord, group
from .signatures import Signature, embedded, maybe_signature, signature, subtask

__all__ = ["Signature", "chain", "chord", "embedded", "group", "maybe_signature", "signature",
           "subtask"]
