"""Commits that do not wait for the disk on PostgreSQL, and the flush that puts them there.

A statement run on its own (autocommit) is its own transaction; evaluating ``LAZY`` in it
turns ``synchronous_commit`` off for that transaction alone (the session keeps its setting),
so its commit returns, and its notifications go out, before the log reaches the disk. Four
writes do this: a PENDING row beside a message that Redis or RabbitMQ holds, the PENDING rows
a worker writes for messages enqueued without them, the database broker's claim, and the
statement that stores a batch's outcomes. After that last one the
worker commits a transaction that waits for the disk, which then holds everything committed
before it, and only then acks: the batch's counters' upsert, or where it counted nothing
``FLUSH``, a statement whose transaction writes to the log (an empty logical message,
touching no table). A transaction that writes nothing to the log would not wait.
explanation/delivery.md says what each can cost in a crash.
"""

#: An expression that makes the commit of the statement evaluating it lazy.
LAZY = "set_config('synchronous_commit', 'off', true)"

#: A statement whose commit waits until the log on disk reaches it.
FLUSH = "SELECT pg_logical_emit_message(true, 'django_tasks.flush', '')"
