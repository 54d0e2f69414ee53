from typing import Any

from django.apps import AppConfig


class DjangoTasksConfig(AppConfig):
    name = "django_tasks"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from . import checks  # noqa: F401 - registers the system checks
        from .registry import autodiscover

        setting_changed.connect(_reset_on_setting_change, dispatch_uid="django_tasks_reset")
        autodiscover()


def _reset_on_setting_change(setting: str, **kwargs: Any) -> None:
    if setting.startswith("TASKS_"):
        from .conf import reset_cache

        reset_cache()
