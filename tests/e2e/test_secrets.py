"""The broker's and the database's passwords never appear in any output: the worker's banner
and logs (an outage of the broker included), the commands, the admin's pages and the metrics.

The database is a PostgreSQL database reached with a password in its URL (the server trusts
local connections, so any password works) and the broker a redis-server of the test's own
that requires one."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import POSTGRES_URL, require_service

from . import broker_checks as check
from .conftest import Project, _postgres_admin

pytestmark = pytest.mark.e2e
DB_PASSWORD = "Pg-e2e-s3cret-9f41"
REDIS_PASSWORD = "Redis-e2e-s3cret-7c2a"

# Every admin page of the app, read by a superuser; links found on them are followed once.
CRAWL = """
import json, re
from django.contrib.auth import get_user_model
from django.test import Client
User = get_user_model()
user = User.objects.filter(username="e2e-admin").first() or User.objects.create_superuser(
    "e2e-admin", "admin@example.com", "pw")
client = Client()
client.force_login(user)
seen, pages, todo = set(), {}, ["/admin/django_tasks/", "/admin/", "/metrics", "/"]
while todo and len(pages) < 80:
    url = todo.pop(0)
    if url in seen:
        continue
    seen.add(url)
    response = client.get(url)
    body = response.content.decode(errors="replace")
    pages[url] = [response.status_code, body]
    for link in re.findall(r'href="(/admin/django_tasks/[^"#?]*)"', body):
        if not re.search(r"/(delete|add|history)/", link) and link not in seen:
            todo.append(link)
print(json.dumps(pages))
"""


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[str, str]]:
    """A PostgreSQL database, reached with a password in its URL."""
    server = urlsplit(POSTGRES_URL)
    require_service("PostgreSQL", server.hostname or "127.0.0.1", server.port or 5432)
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    with _postgres_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    user, host = server.username or "postgres", server.hostname or "127.0.0.1"
    netloc = f"{user}:{DB_PASSWORD}@{host}:{server.port or 5432}"
    try:
        yield "postgres", server._replace(netloc=netloc, path=f"/{name}").geturl()
    finally:
        with _postgres_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_no_password_in_any_output(project: Project, tmp_path: Path) -> None:
    port = check.free_port()
    redis = check.redis_server(port, tmp_path, "--requirepass", REDIS_PASSWORD)
    try:
        project.env["TASKS_BROKER_URL"] = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
        outputs = _every_output(project, redis)
    finally:
        redis.kill()
    everything = "\n".join(outputs.values())
    assert "redis://" in everything and "Cannot reach the Redis broker" in everything
    for where, text in outputs.items():
        for secret in (DB_PASSWORD, REDIS_PASSWORD):
            assert secret not in text, f"a password is shown in {where}"


def _every_output(project: Project, redis: object) -> dict[str, str]:
    worker = project.worker("-c", "2", "-l", "debug")
    project.wait_ready(worker)
    ok, failed = project.delay("add", 2, 3), project.delay("fail", "on purpose")
    project.wait_state(ok, "SUCCESS")
    project.wait_state(failed, "FAILURE")
    outputs = {f"manage.py {' '.join(args)}": project.manage(*args) for args in (
        ("taskconfig", "--all"), ("taskconfig", "--all", "--json"), ("taskstatus",),
        ("taskstatus", "--json"), ("taskinspect", "stats", "--json"),
        ("taskinspect", "queues"), ("taskresult", ok), ("taskresult", failed), ("check",),
    )}
    pages = json.loads(project.shell(CRAWL))
    assert len(pages) > 10 and all(status == 200 for status, _ in pages.values()), {
        url: status for url, (status, _) in pages.items() if status != 200}
    outputs.update({f"the page {url}": body for url, (_, body) in pages.items()})
    redis.kill()  # type: ignore[attr-defined]  # an outage: the worker logs it, once
    project.wait("the worker to log the outage",
                 lambda: "Cannot reach the Redis broker" in worker.output(), timeout=30)
    outputs["the worker's log"] = worker.output()
    assert re.search(r"redis://", outputs["the worker's log"])  # the banner names the broker
    return outputs
