"""``python -m tests.faults``: run the fault scenarios from scratch and report.

    python -m tests.faults [--scale full|ci] [--backends sqlite,postgres,mysql]
                           [--only NAME,...] [--no-docs] [--docs PATH] [--json PATH]

Creates (and drops afterwards) a database per backend, as the end-to-end tests do, migrates
it, runs each chosen scenario against real workers, prints a table of the figures and writes
docs/reliability.md (unless ``--no-docs``). Exits with status 1 if any verdict is FAIL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import MYSQL_URL, POSTGRES_URL, service_up
from tests.e2e.conftest import ROOT, Project, _mysql_database, _postgres_admin

from . import _django, report  # noqa: F401 - _django: Django set up before any scenario
from .harness import SCALES, Figures, machine, reset_tables, server_version
from .scenarios import SCENARIOS


class Unavailable(Exception):
    """A backend's server or driver is missing: its scenarios are skipped."""


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, empty database for ``backend``, dropped afterwards; yields its URL."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
            yield f"sqlite:///{tmp}/db.sqlite3"
        return
    server = urlsplit(MYSQL_URL if backend == "mysql" else POSTGRES_URL)
    if server.hostname not in ("127.0.0.1", "localhost"):
        raise Unavailable(f"{backend} is at {server.hostname}: the fault suite only talks to "
                          "127.0.0.1")
    port = server.port or (3306 if backend == "mysql" else 5432)
    if not service_up("127.0.0.1", port):
        raise Unavailable(f"{backend} is not reachable on 127.0.0.1:{port}")
    if backend == "mysql":
        try:
            context = _mysql_database()
            url = context.__enter__()
        except pytest.skip.Exception as exc:  # its helper skips when the driver is missing
            raise Unavailable(str(exc)) from None
        try:
            yield url
        finally:
            context.__exit__(None, None, None)
        return
    name = f"faults_{uuid.uuid4().hex[:12]}"
    with _postgres_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server._replace(path=f"/{name}").geturl()
    finally:
        with _postgres_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def code_version() -> str:
    """The checkout's commit, marked ``+changes`` when its working tree differs."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=30, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit.stdout.strip() + (" +changes" if dirty.stdout.strip() else "")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--backends", default="sqlite,postgres,mysql",
                        help="comma-separated: sqlite, postgres, mysql")
    parser.add_argument("--only", default="", help="comma-separated scenarios: "
                                                   + ", ".join(SCENARIOS))
    parser.add_argument("--no-docs", action="store_true", help="do not write "
                                                               "docs/reliability.md")
    parser.add_argument("--docs", type=Path, default=report.DOCS, metavar="PATH",
                        help="where to write the report (default: docs/reliability.md)")
    parser.add_argument("--json", type=Path, help="also write every row's figures here")
    parser.add_argument("--code", default="", metavar="LABEL",
                        help="what code is measured, for the report (default: the commit "
                             "of this checkout, from git)")
    args = parser.parse_args(argv)
    args.backend_list = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backend_list) - {"sqlite", "postgres", "mysql"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    args.names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = set(args.names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(SCENARIOS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    scale = SCALES[args.scale]
    command = "python -m tests.faults " + shlex.join(sys.argv[1:] if argv is None else argv)
    began = time.time()
    rows: list[Figures] = []
    versions: dict[str, str] = {}
    for backend in args.backend_list:
        names = [n for n in args.names if backend in SCENARIOS[n].backends]
        if not names:
            continue
        try:
            with database(backend) as url, tempfile.TemporaryDirectory(
                    prefix=f"faults-{backend}-") as tmp:
                project = Project(backend, url, Path(tmp))
                project.manage("migrate", "-v", "0")
                versions[{"postgres": "postgresql", "mysql": "mariadb"}.get(backend, backend)] \
                    = server_version(project)
                try:
                    for name in names:
                        print(f"--- {name} on {backend}", flush=True)
                        for row in SCENARIOS[name].run(project, scale):
                            rows.append(row)
                            print(f"    {row.summary()}", flush=True)
                            for problem in row.problems:
                                print(f"      - {problem}", flush=True)
                finally:
                    reset_tables(project)
        except Unavailable as exc:
            print(f"--- {backend} skipped: {exc}", flush=True)
    seconds = time.time() - began
    print()
    print(report.table(rows))
    print(f"\n{sum(r.passed for r in rows)} of {len(rows)} pass; {seconds / 60:.1f} minutes")
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in rows], indent=2, default=str))
    if not args.no_docs and rows:
        versions["code"] = args.code or code_version()
        text = report.document(rows, scale, machine(versions), command, seconds)
        print(f"wrote {report.write(text, args.docs)}")
        if args.docs == report.DOCS and scale.name == "full" and not args.only:
            print(f"wrote {report.write_summary(rows)}")
    return 0 if rows and all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
