"""``manage.py demo_tasks``: queue the example tasks and print their results as they arrive."""

from typing import Any

from django.core.management.base import BaseCommand

from testproject.demo import tasks


class Command(BaseCommand):
    help = "Queue the demo tasks and wait for their results (needs a running taskworker)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--timeout", type=float, default=30.0)

    def handle(self, *args: Any, **options: Any) -> None:
        queued = {
            "add(2, 3)": tasks.add.delay(2, 3),
            "send_welcome_email": tasks.send_welcome_email.delay("ada@example.com", "Ada"),
            "slow(2)": tasks.slow.delay(2),
            "fail()": tasks.fail.delay(),
        }
        for label, result in queued.items():
            self.stdout.write(f"queued {label}: {result.id}")
        for label, result in queued.items():
            value = result.get(timeout=options["timeout"], propagate=False)
            self.stdout.write(f"{label}: {result.state} -> {value!r}")
