"""The result page links a task's workflow: its parent, its children, its root and its
group; the list filters by those ids."""

from __future__ import annotations

import html

import pytest
from django.test import Client
from django.urls import reverse

from django_tasks.models import TaskResult

from .factories import make_result

pytestmark = pytest.mark.django_db
LIST = reverse("admin:django_tasks_taskresult_changelist")


def page(client: Client, url: str, params: dict[str, str] | None = None) -> str:
    response = client.get(url, params or {})
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def detail_url(row: TaskResult) -> str:
    return reverse("admin:django_tasks_taskresult_change", args=[row.pk])


def test_a_result_page_links_parent_children_root_and_group(admin_client: Client) -> None:
    root = make_result("root-1", root_id="root-1")
    middle = make_result("mid-1", root_id="root-1", parent_id="root-1", group_id="g-1")
    leaf = make_result("leaf-1", root_id="root-1", parent_id="mid-1")
    text = page(admin_client, detail_url(middle))
    assert f'href="{detail_url(root)}">root-1</a>' in text  # the parent, and the root
    assert f'href="{detail_url(leaf)}">leaf-1</a>' in text  # a child
    assert f'href="{LIST}?root_id=root-1">its workflow</a>' in text
    assert f'href="{LIST}?group_id=g-1">g-1</a>' in text
    top = page(admin_client, detail_url(root))
    assert "this task" in top and f'href="{detail_url(middle)}">mid-1</a>' in top


def test_many_children_end_with_a_link_to_all_of_them(admin_client: Client) -> None:
    parent = make_result("p-1")
    for i in range(25):
        make_result(f"c-{i}", parent_id="p-1")
    text = page(admin_client, detail_url(parent))
    assert text.count(">c-") == 20
    assert f'href="{LIST}?parent_id=p-1">all children</a>' in text


def test_the_list_filters_by_workflow_ids(admin_client: Client) -> None:
    make_result("m-1", group_id="g-2")
    make_result("m-2", group_id="g-2")
    make_result("other")
    text = page(admin_client, LIST, {"group_id": "g-2"})
    assert "m-1" in text and "m-2" in text and ">other<" not in text
