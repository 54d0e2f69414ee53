"""Purging queues (``manage.py taskpurge``): the broker deletes the messages, and the result
rows of the tasks it names are marked REVOKED, so that nobody waits on a task that will
never run (``AsyncResult.get()`` raises ``TaskRevokedError`` at once) and ``taskprune``
deletes those rows in time, as it deletes every finished one."""

from __future__ import annotations

from collections.abc import Sequence

from .conf import get_broker, get_result_store


def purge(queues: Sequence[str]) -> dict[str, int]:
    """Delete every message of each queue; how many went from each."""
    broker, store = get_broker(), get_result_store()
    purged = {}
    for queue in queues:
        result = broker.purge(queue)
        if store is not None and result.task_ids:
            store.revoke_unfinished([task_id for task_id in result.task_ids if task_id])
        purged[queue] = result.count
    return purged
