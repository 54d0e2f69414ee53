"""The scheduler behind ``manage.py taskbeat``: periodic tasks from the database, queued on
time, exactly once per (task, due time) however many beats run."""
