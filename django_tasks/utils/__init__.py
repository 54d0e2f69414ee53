"""Helpers for task code, under Celery's module names (``django_tasks.utils.log``)."""
