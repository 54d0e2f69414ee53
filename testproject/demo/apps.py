from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "testproject.demo"
    label = "demo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import os

        if os.environ.get("DEMO_SIGNAL_JOURNAL"):  # only for the tests that read it
            from . import signal_journal

            signal_journal.connect()
