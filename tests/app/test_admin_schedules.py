"""The periodic task admin and the schedule admins, through Django's test client."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_tasks import states
from django_tasks.admin.schedules import SETTINGS_NOTICE, PeriodicTaskAdmin
from django_tasks.message import Message
from django_tasks.models import (
    BeatSlot,
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    QueuedMessage,
    TaskResult,
)

from .factories import (
    ADD_TASK,
    make_crontab,
    make_interval,
    make_periodic_task,
    make_result,
    now,
)

pytestmark = pytest.mark.django_db
LIST = reverse("admin:django_tasks_periodictask_changelist")
ADD = reverse("admin:django_tasks_periodictask_add")


def page(client: Client, url: str, params: dict[str, str] | None = None) -> str:
    response = client.get(url, params or {})
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def change_url(row: Any) -> str:
    meta = row._meta
    return reverse(f"admin:django_tasks_{meta.model_name}_change", args=[row.pk])


def row_of(text: str, name: str) -> str:
    """The changelist row (HTML) of the periodic task ``name``."""
    return text.split(f">{name}</a>")[1].split("</tr>")[0]


def staff(client: Client, *codenames: str) -> User:
    user = User.objects.create_user("ops", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


# -- pages --------------------------------------------------------------------------------------


def test_every_page_opens(admin_client: Client) -> None:
    crontab = make_crontab(minute="30", hour="7")
    clocked = ClockedSchedule.objects.create(clocked_time=now() + dt.timedelta(days=1))
    task = make_periodic_task("report", schedule=crontab, last_task_id="t-1")
    make_result("t-1")
    BeatSlot.objects.create(periodic_task=task, due_at=now(), task_id="t-1", queued_at=now(),
                            beat="beat-1")
    rows = {"periodictask": task, "intervalschedule": make_interval(),
            "crontabschedule": crontab, "clockedschedule": clocked}
    for model, row in rows.items():
        page(admin_client, reverse(f"admin:django_tasks_{model}_changelist"))
        page(admin_client, reverse(f"admin:django_tasks_{model}_add"))
        page(admin_client, change_url(row))
    assert "t-1" in page(admin_client, reverse("admin:django_tasks_beatslot_changelist"))


def test_list_shows_schedule_in_words_runs_and_source(admin_client: Client) -> None:
    make_periodic_task("report", schedule=make_crontab(minute="30", hour="7",
                                                       day_of_week="1"))
    make_periodic_task("poll", total_run_count=7, source="settings")
    text = page(admin_client, LIST)
    report, poll = row_of(text, "report"), row_of(text, "poll")
    assert "at 07:30 on Monday (UTC)" in report and ADD_TASK in report
    assert "every 15 minutes" in poll
    assert '<td class="field-total_run_count">7</td>' in poll
    assert '<td class="field-source">settings</td>' in poll
    assert 'alt="True"' in poll  # enabled, as an icon
    assert "never" in poll  # no run yet
    next_run = re.search(r'<td class="field-next_run">(.*?)</td>', poll, re.S)
    assert next_run and re.fullmatch(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC<br>"
                                     r"<small>in 1[45]\xa0minutes</small>", next_run.group(1))


def test_an_invalid_schedule_shows_why_instead_of_failing(admin_client: Client) -> None:
    tab = make_crontab(minute="0")
    make_periodic_task("broken", schedule=tab)
    CrontabSchedule.objects.filter(pk=tab.pk).update(minute="61")  # past the form's checks
    text = page(admin_client, LIST)
    assert "invalid: crontab minute='61': 61 is not in 0-59" in row_of(text, "broken")
    assert "invalid:" in page(admin_client, change_url(PeriodicTask.objects.get()))


def test_an_unregistered_task_is_marked_in_the_list(admin_client: Client) -> None:
    row = make_periodic_task("gone")
    PeriodicTask.objects.filter(pk=row.pk).update(task="app.tasks.removed")
    cell = row_of(page(admin_client, LIST), "gone")
    assert re.search(r"app\.tasks\.removed <span[^>]*>not registered</span>", cell)


def test_last_run_shows_the_result_state_linked_to_the_result(admin_client: Client) -> None:
    result = make_result("run-1", states.FAILURE)
    make_periodic_task("report", last_task_id="run-1", last_run_at=now())
    make_periodic_task("lost", last_task_id="pruned-long-ago", last_run_at=now())
    text = page(admin_client, LIST)
    link = reverse("admin:django_tasks_taskresult_change", args=[result.pk])
    assert f'<a class="last-result" href="{link}">' in row_of(text, "report")
    assert "FAILURE" in row_of(text, "report")
    assert "no result recorded" in row_of(text, "lost")
    detail = page(admin_client, change_url(PeriodicTask.objects.get(name="report")))
    assert link in detail and "run-1" in detail


def test_filters_by_enabled_kind_and_source(admin_client: Client) -> None:
    make_periodic_task("on-interval")
    make_periodic_task("off-crontab", schedule=make_crontab(), enabled=False)
    make_periodic_task("clock", schedule=ClockedSchedule.objects.create(
        clocked_time=now() + dt.timedelta(hours=1)), source="settings")
    names = ("on-interval", "off-crontab", "clock")
    cases = {"enabled__exact": ("0", {"off-crontab"}), "kind": ("crontab", {"off-crontab"}),
             "source__exact": ("settings", {"clock"})}
    for parameter, (value, expected) in cases.items():
        text = page(admin_client, LIST, {parameter: value})
        assert {n for n in names if f">{n}</a>" in text} == expected, parameter
    text = page(admin_client, LIST, {"kind": "interval"})
    assert {n for n in names if f">{n}</a>" in text} == {"on-interval"}


def test_search_by_name_and_by_task(admin_client: Client) -> None:
    make_periodic_task("nightly-report")
    make_periodic_task("mailer", task="testproject.demo.tasks.send_welcome_email",
                       args='["a@example.com", "A"]')
    text = page(admin_client, LIST, {"q": "nightly"})
    assert ">nightly-report</a>" in text and ">mailer</a>" not in text
    text = page(admin_client, LIST, {"q": "welcome"})
    assert ">mailer</a>" in text and ">nightly-report</a>" not in text


def list_queries(client: Client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        page(client, LIST)
    return [q["sql"] for q in queries]


def test_the_list_reads_a_page_in_the_same_queries_for_3_or_50_rows(
        admin_client: Client) -> None:
    plans: list[IntervalSchedule | CrontabSchedule | ClockedSchedule] = [
        make_interval(), make_crontab(minute="*/5"),
        ClockedSchedule.objects.create(clocked_time=now() + dt.timedelta(days=1))]

    def add(first: int, last: int) -> None:
        for i in range(first, last):
            make_result(f"r-{i}")
            make_periodic_task(f"task-{i:02}", schedule=plans[i % 3], last_task_id=f"r-{i}")

    add(0, 3)
    few = list_queries(admin_client)
    add(3, 50)
    many = list_queries(admin_client)
    # session, user, two counts (page and total), the rows with their schedules, results
    assert len(many) == len(few) == 6
    assert len([sql for sql in many if "django_tasks_taskresult" in sql]) == 1
    text = page(admin_client, LIST)
    assert text.count('class="last-result"') == 50 and "task-49" in text


# -- actions -------------------------------------------------------------------------------------


def act(client: Client, action: str, *rows: PeriodicTask) -> str:
    response = client.post(LIST, {"action": action,
                                  "_selected_action": [row.pk for row in rows]}, follow=True)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def messages_of(text: str) -> str:
    """The page's messages as text, without their links."""
    shown = re.search(r'<ul class="messagelist">(.*?)</ul>', text, re.S)
    return re.sub(r"<[^>]+>", "", shown.group(1)) if shown else ""


def test_disable_and_enable(admin_client: Client) -> None:
    row = make_periodic_task("report")
    text = act(admin_client, "disable", row)
    assert "Disabled 1 periodic task(s)." in text
    row.refresh_from_db()
    assert not row.enabled and row.next_run_at is None
    text = act(admin_client, "enable", row)
    assert "Enabled 1 periodic task(s): report." in text
    row.refresh_from_db()
    assert row.enabled and row.next_run_at is not None
    assert row.next_run_at > now() + dt.timedelta(minutes=14)  # computed at once


def test_a_clocked_task_that_ran_is_not_enabled_again(admin_client: Client) -> None:
    clocked = ClockedSchedule.objects.create(clocked_time=now() - dt.timedelta(hours=1))
    row = make_periodic_task("once", schedule=clocked, enabled=False, last_run_at=now())
    text = messages_of(act(admin_client, "enable", row))
    assert "Enabled 0 periodic task(s)." in text
    assert "Left disabled, with nothing left to run (a clocked time that has run): once." in text
    assert not PeriodicTask.objects.get(pk=row.pk).enabled


def test_enable_and_disable_need_the_change_permission(client: Client) -> None:
    row = make_periodic_task("report")
    staff(client, "view_periodictask", "run_periodictask")
    text = page(client, LIST)
    assert 'value="run_now"' in text and 'value="disable"' not in text
    assert 'type="submit"' not in page(client, change_url(row)).split("<form")[-1]  # a view
    assert "No action selected." in act(client, "disable", row)
    row.refresh_from_db()
    assert row.enabled and row.next_run_at is not None
    PeriodicTask.objects.filter(pk=row.pk).update(enabled=False)
    assert "No action selected." in act(client, "enable", row)
    assert not PeriodicTask.objects.get(pk=row.pk).enabled


def test_run_now_queues_one_message_and_leaves_the_schedule(admin_client: Client) -> None:
    row = make_periodic_task("report", args="[20, 22]", queue="reports", priority=3,
                             total_run_count=4)
    before = row.next_run_at
    text = act(admin_client, "run_now", row)
    message = Message.decode(QueuedMessage.objects.get().body)
    assert (message.task, message.args, message.queue, message.priority) == (
        ADD_TASK, (20, 22), "reports", 3)
    assert message.headers["periodic_task_name"] == "report"
    assert TaskResult.objects.get().task_id == message.id
    assert TaskResult.objects.get().state == states.PENDING
    assert f"Queued 1 run(s) now: report → {message.id}." in messages_of(text)
    assert f"?q={message.id}" in text  # linked to the result list, searched by id
    row.refresh_from_db()
    assert (row.next_run_at, row.total_run_count, row.last_run_at) == (before, 4, None)
    assert row.last_task_id == message.id and not BeatSlot.objects.exists()
    assert "PENDING" in row_of(text, "report")  # the list links the manual run's result


def test_run_now_needs_its_own_permission(client: Client) -> None:
    row = make_periodic_task("report")
    user = staff(client, "view_periodictask", "change_periodictask")
    assert 'value="run_now"' not in page(client, LIST)
    assert "No action selected." in act(client, "run_now", row)
    assert not QueuedMessage.objects.exists()
    user.user_permissions.add(Permission.objects.get(codename="run_periodictask"))
    client.force_login(User.objects.get(pk=user.pk))  # permissions are cached on the user
    assert "Queued 1 run(s) now" in act(client, "run_now", row)
    assert QueuedMessage.objects.count() == 1


@pytest.mark.parametrize(("change", "reason"), [
    ({"task": "app.tasks.removed"}, "task 'app.tasks.removed' is not registered"),
    ({"args": "[1]"}, "missing a required argument: 'y'"),
    ({"kwargs": "[]"}, "kwargs must be a JSON object, not list"),
    ({"expires": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)}, "expired at"),
])
def test_run_now_reports_what_it_cannot_queue(admin_client: Client, change: dict[str, Any],
                                              reason: str) -> None:
    bad, good = make_periodic_task("bad"), make_periodic_task("good")
    PeriodicTask.objects.filter(pk=bad.pk).update(**change)  # as the form would not allow
    text = act(admin_client, "run_now", bad, good)
    shown = messages_of(text)
    assert "Not run: periodic task 'bad'" in shown and reason in shown
    assert "Queued 1 run(s) now: good → " in shown
    assert QueuedMessage.objects.count() == 1


def test_run_now_refuses_too_many_at_once(admin_client: Client,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PeriodicTaskAdmin, "run_now_limit", 1)
    text = act(admin_client, "run_now", make_periodic_task("a"), make_periodic_task("b"))
    assert "More than 1 periodic tasks selected" in text
    assert not QueuedMessage.objects.exists()


# -- the periodic task form ------------------------------------------------------------------


def task_form(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "report", "task": ADD_TASK, "enabled": "on", "description": "",
        "interval": "", "crontab": "", "clocked": "", "start_time_0": "", "start_time_1": "",
        "args": "[1, 2]", "kwargs": "{}", "queue": "", "priority": "", "expires_0": "",
        "expires_1": "", "expire_seconds": "",
    }
    data.update(fields)
    return data


def form_errors(client: Client, url: str, data: dict[str, Any]) -> dict[str, list[str]]:
    response = client.post(url, data)
    assert response.status_code == 200, "the form was accepted"
    form = response.context["adminform"].form
    return {field: [html.unescape(str(e)) for e in errors]
            for field, errors in form.errors.items()}


def test_adding_a_periodic_task_computes_its_next_run(admin_client: Client) -> None:
    interval = make_interval(30, "seconds")
    response = admin_client.post(ADD, task_form(interval=interval.pk, kwargs=""))
    assert response.status_code == 302
    row = PeriodicTask.objects.get()
    assert (row.task, row.args, row.kwargs, row.source) == (ADD_TASK, "[1, 2]", "{}",
                                                            "database")
    assert row.next_run_at is not None and row.next_run_at > now()


def test_the_task_field_offers_the_registered_tasks(admin_client: Client) -> None:
    text = page(admin_client, ADD)
    assert 'list="id_task_options"' in text
    assert f'<option value="{ADD_TASK}">' in text
    assert 'id="add_id_crontab"' in text and 'id="add_id_interval"' in text  # popups


def test_an_unregistered_task_is_refused_with_close_matches(admin_client: Client) -> None:
    errors = form_errors(admin_client, ADD, task_form(task="testproject.demo.tasks.ad",
                                                      interval=make_interval().pk))
    # Other test modules register tasks too (unit.testing.add), so only the first match is fixed.
    [message] = errors["task"]
    assert message.startswith("'testproject.demo.tasks.ad' is not a registered task. Did you mean "
                              "testproject.demo.tasks.add")
    assert message.endswith("? Tasks register with @shared_task in the tasks.py of an installed "
                            "app.")
    errors = form_errors(admin_client, ADD, task_form(task="multiply",
                                                      interval=make_interval().pk))
    assert "Did you mean testproject.demo.tasks.multiply?" in errors["task"][0]
    assert not PeriodicTask.objects.exists()


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"args": "[1, 2"}, "args", "args is not valid JSON (Expecting ',' delimiter: line 1 "
                                "column 6 (char 5)); write a list, e.g. [16, 16]."),
    ({"args": '{"x": 1}'}, "args", "args must be a JSON list, not an object; e.g. [16, 16]."),
    ({"kwargs": "[1]"}, "kwargs", 'kwargs must be a JSON object, not a list; e.g. '
                                  '{"user_id": 5}.'),
    ({"kwargs": "{'x': 1}"}, "kwargs", "kwargs is not valid JSON (Expecting property name "
                                       "enclosed in double quotes"),
    ({"args": "[1, NaN]"}, "args", "args cannot be serialized to JSON: Out of range float"),
    ({"args": "[1]"}, "args", "The arguments do not fit the task: "
                              "testproject.demo.tasks.add(x: int, y: int) -> int: missing a "
                              "required argument: 'y'."),
    ({"queue": "bad\tqueue"}, "queue", "holds the control character"),
])
def test_arguments_and_options_are_checked(admin_client: Client, fields: dict[str, str],
                                           field: str, message: str) -> None:
    errors = form_errors(admin_client, ADD, task_form(interval=make_interval().pk, **fields))
    assert list(errors) == [field]
    assert errors[field][0].startswith(message) or message in errors[field][0]


@pytest.mark.parametrize("chosen", [(), ("interval", "crontab")])
def test_exactly_one_schedule_is_required(admin_client: Client, chosen: tuple[str, ...]) -> None:
    plans = {"interval": make_interval().pk, "crontab": make_crontab().pk}
    errors = form_errors(admin_client, ADD, task_form(**{k: plans[k] for k in chosen}))
    assert errors == {"interval": ["Choose exactly one schedule: an interval, a crontab or a "
                                   "clocked time."]}


def test_readonly_fields_cannot_be_posted(admin_client: Client) -> None:
    row = make_periodic_task("report", total_run_count=3)
    data = task_form(interval=row.interval_id, total_run_count="99", source="settings",
                     last_task_id="forged", next_run_at_0="2000-01-01")
    assert admin_client.post(change_url(row), data).status_code == 302
    row.refresh_from_db()
    assert (row.total_run_count, row.source, row.last_task_id) == (3, "database", "")
    assert row.next_run_at is not None and row.next_run_at > now()
    text = page(admin_client, change_url(row))
    assert '<div class="readonly">3</div>' in text  # total runs, shown


def test_a_settings_row_explains_which_side_wins(admin_client: Client) -> None:
    synced = make_periodic_task("from-settings", source="settings")
    local = make_periodic_task("from-admin")
    text = page(admin_client, change_url(synced))
    assert "Synced from the settings" in text
    assert html.unescape(SETTINGS_NOTICE) in text
    assert "overwrites this row with the settings" in text
    assert "Synced from the settings" not in page(admin_client, change_url(local))


# -- the schedule forms ----------------------------------------------------------------------


CRONTAB_ADD = reverse("admin:django_tasks_crontabschedule_add")


def crontab_form(**fields: str) -> dict[str, str]:
    data = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*",
            "month_of_year": "*", "timezone": ""}
    data.update(fields)
    return data


@pytest.mark.parametrize(("field", "value", "message"), [
    ("minute", "61", "crontab minute='61': 61 is not in 0-59"),
    ("hour", "x", "crontab hour='x': 'x' is not a number"),
    ("day_of_week", "8", "crontab day_of_week='8': 8 is not in 0-7"),
])
def test_a_bad_crontab_field_is_reported_on_that_field(admin_client: Client, field: str,
                                                       value: str, message: str) -> None:
    errors = form_errors(admin_client, CRONTAB_ADD, crontab_form(**{field: value}))
    assert errors == {field: [message]}
    assert not CrontabSchedule.objects.exists()


def test_an_unknown_time_zone_is_refused_with_a_suggestion(admin_client: Client) -> None:
    errors = form_errors(admin_client, CRONTAB_ADD, crontab_form(timezone="Europe/Prag"))
    assert errors == {"timezone": [
        "Unknown time zone 'Europe/Prag'. Did you mean Europe/Prague? Write an IANA name such "
        "as Europe/Prague or America/New_York, or leave it blank for the project's TIME_ZONE "
        "(UTC)."]}
    errors = form_errors(admin_client, CRONTAB_ADD, crontab_form(timezone="prague"))
    assert "Did you mean Europe/Prague?" in errors["timezone"][0]
    assert 'list="id_timezone_options"' in page(admin_client, CRONTAB_ADD)


def test_a_crontab_made_in_a_popup_is_handed_back_to_the_task_form(
        admin_client: Client) -> None:
    response = admin_client.post(
        f"{CRONTAB_ADD}?_to_field=id&_popup=1",
        {**crontab_form(minute="30", hour="7", timezone="Europe/Prague"), "_popup": "1",
         "_to_field": "id"})
    assert response.status_code == 200
    tab = CrontabSchedule.objects.get()
    text = html.unescape(response.content.decode())
    assert 'id="django-admin-popup-response-constants"' in text
    assert f'"value": "{tab.pk}"' in text
    assert '"obj": "at 07:30 every day (Europe/Prague)"' in text
    detail = page(admin_client, change_url(tab))
    assert "at 07:30 every day (Europe/Prague)" in detail
    upcoming = re.search(r'field-upcoming.*?<div class="readonly">(.*?)</div>', detail, re.S)
    assert upcoming is not None
    assert len(re.findall(r"0[56]:30:00 UTC", upcoming.group(1))) == 3


def test_interval_and_clocked_forms_validate(admin_client: Client) -> None:
    errors = form_errors(admin_client, reverse("admin:django_tasks_intervalschedule_add"),
                         {"every": "0", "period": "minutes"})
    assert "every" in errors
    response = admin_client.post(reverse("admin:django_tasks_intervalschedule_add"),
                                 {"every": "2", "period": "hours"})
    assert response.status_code == 302
    assert str(IntervalSchedule.objects.get()) == "every 2 hours"
    errors = form_errors(admin_client, reverse("admin:django_tasks_clockedschedule_add"),
                         {"clocked_time_0": "", "clocked_time_1": ""})
    assert "clocked_time" in errors


def test_schedule_lists_count_the_tasks_using_them(admin_client: Client) -> None:
    interval = make_interval()
    make_periodic_task("a", schedule=interval)
    make_periodic_task("b", schedule=interval)
    text = page(admin_client, reverse("admin:django_tasks_intervalschedule_changelist"))
    assert "every 15 minutes" in text and '<td class="field-used_by">2</td>' in text
    detail = page(admin_client, change_url(interval))
    assert "a, b (a change here changes each of them)" in re.sub(r"<[^>]+>", "", detail)
