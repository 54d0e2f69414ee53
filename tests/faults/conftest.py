"""Fixtures of the fault suite: those of the end-to-end tests (a fresh database per module
and backend, a ``Project`` to queue tasks, start workers and read tables, every worker killed
at the end of a test) and their hook that attaches each worker's output to a failed test's
report."""

from __future__ import annotations

from tests.e2e.conftest import backend, migrated, project, pytest_runtest_makereport

__all__ = ["backend", "migrated", "project", "pytest_runtest_makereport"]
