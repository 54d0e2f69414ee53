"""The fault suite's report: a Jepsen-style table, and docs/reliability.md."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from .harness import HEARTBEAT, LEASE, MAX_DELIVERIES, Figures, Scale

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"

#: What each scenario does and what must hold, one paragraph each (in the report's order).
PARAGRAPHS: dict[str, str] = {
    "kill-loop": (
        "**Kill loop.** Two prefork workers (`-c {kill_concurrency}`) drain {kill_tasks:,} "
        "short tasks while, every {kill_every:g} s, "
        "one of them (in turn) has its whole process group killed with SIGKILL and is "
        "started again at once under the same `--hostname`, until the queue is empty. "
        "Must hold: every task ends SUCCESS, the queue ends empty, and every second "
        "execution of a task follows one that ran in a process the harness killed "
        "(explained duplicates); no task runs twice at once outside a killed worker. "
        "Recovery is counted from the last kill."),
    "kill-loop-brokers": (
        "**Kill loop on Redis and RabbitMQ.** The kill loop again, with the messages on the "
        "local Redis (leases renewed by the heartbeat) and on the local RabbitMQ (quorum "
        "queue: a killed process's channel closes and its deliveries come back at once); "
        "results stay in the database. Must hold: the same as the kill loop."),
    "poison": (
        "**Poison among innocents.** One poison task among {poison_innocents} innocent ones, "
        "in each pool (`prefork -c 2`, `threads -c 2`, `solo`), with "
        "`TASKS_MAX_DELIVERIES=3`. The poison calls `os._exit(1)`, raises `SystemExit` "
        "(`sys.exit(1)`) or raises `KeyboardInterrupt`. Must hold: all innocents end SUCCESS "
        "and each ran exactly once, except that an innocent an `os._exit` cut short in "
        "another thread, or one that finished in the dying process less than a second "
        "before (its outcome waiting in the batch that died with it), may run once more; a "
        "`SystemExit` or `KeyboardInterrupt` poison ends FAILURE with that exception type, "
        "recorded on its first and only run; an `os._exit` poison ends FAILURE with "
        "`WorkerLostError` after exactly 3 runs in `prefork` (its supervisor sees each "
        "death) and 4 in `threads` and `solo` (the whole worker dies with it, so its first "
        "run is known to no one); the worker keeps running (when `os._exit` ends a whole "
        "`threads` or `solo` worker the harness restarts it, as a process supervisor would, "
        "and counts it)."),
    "freeze": (
        "**Frozen worker.** Worker A starts a task that sleeps 4 s and fails on its first "
        "delivery (and succeeds on later ones). A's process group is stopped (SIGSTOP) for "
        "longer than the lease (at least {freeze_stop:g} s, and until worker B has taken the "
        "task over and recorded SUCCESS); then A is continued (SIGCONT) and watched for "
        "{freeze_watch:g} s. Must hold: the result stays "
        "SUCCESS by B (A's late FAILURE is refused, and A's log says so, mentioning the "
        "lease), the queue is empty, no two executions of the task overlap outside the "
        "frozen worker, and A goes on working (a task queued to A alone after SIGCONT "
        "succeeds). Recovery is counted from SIGCONT to A's next success."),
    "outage": (
        "**Database outage.** The worker reaches its database through a TCP proxy run by "
        "the harness on 127.0.0.1. In the middle of a drain of {outage_tasks:,} tasks (after "
        "30 % of them), the "
        "proxy either refuses (closes its listening socket and resets every relayed "
        "connection: new connects get ECONNREFUSED) or black-holes (keeps connections open "
        "and accepts new ones but relays nothing until the end, then everything held) for "
        "the given time. Must hold: nothing lost, nothing unexpected, duplicates only when "
        "the outage was longer than the lease (then explained), the worker still running "
        "afterwards or, if it exited with the documented stall status 4, restarted by the "
        "harness (reported). PostgreSQL and MariaDB only. Recovery is counted from the end "
        "of the outage."),
    "terminate": (
        "**Dropped connections.** {terminate_times} times during a drain of "
        "{terminate_tasks:,} tasks, the server ends every "
        "connection of the worker (`pg_terminate_backend` on PostgreSQL, `KILL CONNECTION` "
        "on MariaDB). No lease lapses, so no duplicate is explained. Must hold: nothing "
        "lost, nothing unexpected, no duplicate, the worker still running. Recovery is "
        "counted from the last drop."),
    "bad-rows": (
        "**Bad rows.** Eleven rows written straight into the queue table among "
        "{bad_innocents:,} innocent tasks: a body that is not JSON, an unknown task name, "
        "wrong arguments, `NaN` in the arguments, a NUL in the task name, a lone surrogate "
        "as the id, a 100,000-deep nested list, a 5,000-digit integer as an argument and "
        "as `retries`, an id and a task name longer than 255 characters. Must hold: every "
        "innocent runs exactly once and succeeds, no bad row runs, every bad row ends as "
        "FAILURE (under the id in its headers, or the id the queue row keeps when the "
        "headers give none that can be stored), the queue empties, the worker keeps "
        "running."),
    "enqueue": (
        "**Enqueue under concurrency.** {enqueue_processes} producer processes, each with "
        "{enqueue_threads} threads and a database connection per thread, call `delay()` "
        "inside `transaction.atomic()` while a worker drains: some transactions commit, "
        "some roll back, some roll back only a savepoint holding a `delay()` while the "
        "outer transaction commits, some release a savepoint and then roll back. Must "
        "hold: every committed task runs exactly once and succeeds; no rolled-back task "
        "runs or has a result row; no enqueue transaction fails (a deadlock, say)."),
}

COLUMNS = ("scenario", "variant", "backend", "tasks", "lost", "unexpected",
           "duplicates expl. / unexpl.", "overlaps", "recovery s", "throughput / ratio",
           "restarts", "verdict")


def paragraph(name: str, scale: Scale) -> str:
    """What scenario ``name`` does at ``scale`` and what must hold."""
    text = PARAGRAPHS.get(name, f"**{name}.**").format(**scale.__dict__)
    if name == "poison" and not scale.poison_one_at_a_time:
        text += (" At this scale `os._exit` runs alone and the two poisons that raise share "
                 "one run, per pool.")
    if name == "bad-rows" and scale.bad_baseline:
        text += (" The same innocents (each sleeping "
                 f"{scale.bad_task_seconds * 1000:g} ms) are also drained alone, and the run "
                 f"with bad rows needs at least {scale.bad_min_ratio:.0%} of that throughput; "
                 "below it, both are measured once more and the best of each compared (a busy "
                 "moment of the machine is not a slowdown).")
    if name == "outage":
        text += " Outages: " + ", ".join(f"{mode} {seconds:g} s"
                                         for mode, seconds in scale.outages) + "."
    return text


def cells(row: Figures) -> list[str]:
    rate = "-" if row.throughput is None else f"{row.throughput:,.0f}/s"
    if row.ratio is not None:
        rate += f" / {row.ratio:.0%}"
    return [row.scenario, row.variant or "-", row.backend, f"{row.tasks:,}", str(row.lost),
            str(row.unexpected), f"{row.dup_explained} / {row.dup_unexplained}",
            str(row.overlaps), "-" if row.recovery is None else f"{row.recovery:.1f}", rate,
            str(len(row.restarts)), f"**{row.verdict}**" if not row.passed else row.verdict]


def table(rows: Sequence[Figures]) -> str:
    """A Markdown table (readable as plain text too): one line per scenario variant."""
    body = [list(COLUMNS)] + [cells(row) for row in rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(COLUMNS))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(body[0]), rule, *(line(values) for values in body[1:])])


def failures(rows: Sequence[Figures], limit: int = 6) -> str:
    """For each failed row: its problems, examples and notable worker log lines."""
    parts = []
    for row in rows:
        if row.passed:
            continue
        parts.append(f"### {row.name}\n")
        parts += [f"- {problem}" for problem in row.problems]
        if row.details:
            parts.append("\nExamples:\n")
            parts += [f"- {detail}" for detail in row.details[:limit]]
        if row.log_lines:
            parts.append("\nWorker log lines (count x first example):\n\n```")
            parts += list(row.log_lines[:limit])
            parts.append("```")
        parts.append("")
    return "\n".join(parts)


def document(rows: Sequence[Figures], scale: Scale, machine: dict[str, str],
             command: str, seconds: float) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    passed = sum(row.passed for row in rows)
    run = sorted({row.scenario for row in rows}, key=lambda s: list(PARAGRAPHS).index(s)
                 if s in PARAGRAPHS else len(PARAGRAPHS))
    code = machine.get("code", "unknown")
    machine_text = ", ".join(f"{key} {value}" for key, value in machine.items()
                             if key != "code")
    lines = [
        "# Reliability",
        "",
        "What happens to queued tasks when workers are killed, frozen, cut off from their "
        "database, or fed poison and garbage: the fault suite in `tests/faults` runs real "
        "`manage.py taskworker` processes against fresh SQLite, PostgreSQL and MariaDB "
        "databases, injects the faults, and counts what the [delivery contract]"
        "(explanation/delivery.md) promises. This page is written by "
        "`python -m tests.faults`; do not edit it by hand.",
        "",
        f"Run: {now}, `{command}` (scale `{scale.name}`), {seconds / 60:.1f} minutes; "
        f"{passed} of {len(rows)} rows pass. Code measured: {code}.",
        "",
        f"Machine: {machine_text}.",
        "",
        f"Workers run with `TASKS_LEASE_SECONDS={LEASE:g}`, `TASKS_HEARTBEAT_SECONDS="
        f"{HEARTBEAT:g}` and `TASKS_MAX_DELIVERIES={MAX_DELIVERIES}`, so that a lapsed lease "
        "plays out in seconds.",
        "",
        "## Results",
        "",
        table(rows),
        "",
        "- **tasks**: tasks whose enqueue committed (bad rows included, poisons included).",
        "- **lost**: committed tasks that did not reach a final state (no result, PENDING, "
        "STARTED, RETRY); rows left in the queue are reported as a problem besides.",
        "- **unexpected**: a final state other than the due one (a late FAILURE over a "
        "SUCCESS), a result row or an execution of a rolled-back task, a result row "
        "nobody queued.",
        "- **duplicates**: executions after a task's first, from the tasks' own journal "
        "(one line per start and end, with pid, thread, worker and time). *Explained* when "
        "the execution before it ran in a worker that was killed or died, or that was "
        "frozen or cut off from the database for longer than the lease; *unexplained* "
        "otherwise, which the contract forbids.",
        "- **overlaps**: two executions of one task at the same time outside any faulted "
        "worker.",
        "- **recovery**: seconds from the end of the fault (the last kill, SIGCONT, the "
        "database back) until the queue was empty and every result final.",
        "- **throughput**: tasks per second from the first start to the end of the drain; "
        "for the bad rows, the innocents' rate between the first and last 5 % of them, and "
        "the ratio to a clean run of the same innocents.",
        "- **restarts**: times the harness restarted a worker that exited by itself.",
        "",
        "## Scenarios",
        "",
    ]
    for name in run:
        lines += [paragraph(name, scale), ""]
    lines += [
        "Every number comes from the tables and the journals after the run, not from the "
        "workers' own accounts; waits end on a condition (the queue drained, a result "
        "written), or when nothing has moved for a while, never after a fixed sleep alone.",
        "",
        "## How to run it",
        "",
        "```sh",
        ".venv/py3.11/bin/python -m tests.faults                 # full scale, all backends",
        ".venv/py3.11/bin/python -m tests.faults --scale ci --only freeze,poison "
        "--backends postgres --no-docs",
        ".venv/py3.11/bin/pytest -m faults tests/faults          # the bounded CI version",
        "```",
        "",
    ]
    failed = failures(rows)
    if failed:
        lines += ["## Failures", "", failed]
    return "\n".join(lines).rstrip() + "\n"


def write(text: str, path: Path = DOCS) -> Path:
    path.write_text(text)
    return path


DELIVERY = DOCS.parent / "explanation" / "delivery.md"
BEGIN, END = "<!-- fault-suite figures: begin -->", "<!-- fault-suite figures: end -->"
#: The guarantee each scenario tests, as the delivery page words it.
GUARANTEES = {
    "kill-loop": "at least once, with leases: a killed worker's tasks run again elsewhere",
    "kill-loop-brokers": "the same on Redis and RabbitMQ",
    "poison": "poison messages end; `sys.exit()` and `KeyboardInterrupt` are failures",
    "freeze": "fencing: a frozen worker's late outcome is refused",
    "outage": "nothing is forgotten when the database goes away",
    "terminate": "dropped connections are replaced",
    "bad-rows": "bad input never stops a worker and costs only its own message",
    "enqueue": "transactional enqueue under concurrency",
}


def summary(rows: Sequence[Figures], when: str) -> str:
    """One line per scenario over every backend and variant: the figures the delivery page
    quotes."""
    lines = [f"Figures of the last full run ({when}; details in "
             "[reliability](../reliability.md)):", "",
             "| guarantee | scenario | runs | tasks | lost | unexpected | duplicates "
             "(explained / unexplained) | longest recovery | verdict |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, words in GUARANTEES.items():
        mine = [row for row in rows if row.scenario == name]
        if not mine:
            continue
        recovery = max((row.recovery for row in mine if row.recovery is not None),
                       default=None)
        shown = "-" if recovery is None else f"{recovery:.1f} s"
        verdict = "PASS" if all(r.passed for r in mine) else "**FAIL**"
        lines.append(
            f"| {words} | {name} | {len(mine)} | {sum(r.tasks for r in mine):,} | "
            f"{sum(r.lost for r in mine)} | {sum(r.unexpected for r in mine)} | "
            f"{sum(r.dup_explained for r in mine)} / {sum(r.dup_unexplained for r in mine)} "
            f"| {shown} | {verdict} |")
    return "\n".join(lines)


def write_summary(rows: Sequence[Figures], path: Path = DELIVERY) -> Path:
    """Replace the figures between the markers of the delivery page."""
    text = path.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    path.write_text(text[:start] + "\n" + summary(rows, when) + "\n" + text[end:])
    return path
