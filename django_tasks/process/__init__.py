"""What every long-running process of django_tasks shares (``taskworker``, ``taskbeat``).

- ``signals``: SIGTERM/SIGINT counted into a warm, then a cold, shutdown;
- ``connections``: database connections checked and replaced around units of work;
- ``logs``: log set-up, ``print`` routed to the log, flushing before an abrupt exit;
- ``stall``: the stall watchdog and the health file ``python -m django_tasks.probe`` reads;
- ``liveness``: the process's row in the liveness table (its name, its heartbeat), and
  waiting for a database that does not answer yet at start;
- ``children``: forked children that die with their parent; ``restart``: executing the
  same program again in place.

Nothing here knows about tasks, queues or schedules: the worker and the beat build on it.
"""
