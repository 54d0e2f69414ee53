"""The same two tasks django_tasks is measured with (testproject/demo/tasks.py)."""

from .app import app


@app.task
def noop() -> None:
    return None


@app.task
def add(x: int, y: int) -> int:
    return x + y
