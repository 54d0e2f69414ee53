"""The migrations match the models."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_no_model_change_lacks_a_migration() -> None:
    out = io.StringIO()
    # --check exits non-zero (SystemExit) when a migration is missing.
    call_command("makemigrations", "django_tasks", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
