"""Queue rows hold a priority of 0-9: the database broker's claim reads each of those
priorities as one range of the queue index (``brokers/database.py``). Rows written before
it kept what a message carried; one above 9 becomes 9, as the broker now writes it."""

from typing import Any

from django.db import migrations

MAX_PRIORITY = 9  # message.MAX_PRIORITY, as of this migration


def clamp(apps: Any, schema_editor: Any) -> None:
    rows = apps.get_model("django_tasks", "QueuedMessage").objects.using(
        schema_editor.connection.alias)
    rows.filter(priority__gt=MAX_PRIORITY).update(priority=MAX_PRIORITY)


class Migration(migrations.Migration):

    dependencies = [
        ('django_tasks', '0015_outbox_claimed_by'),
    ]

    operations = [
        migrations.RunPython(clamp, migrations.RunPython.noop, elidable=True),
    ]
