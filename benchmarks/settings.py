"""Django settings for django_tasks' side of the benchmark: testproject's, plus the three
settings testproject does not read from the environment.

``TASKS_STORE_PENDING`` and ``TASKS_DEFAULT_QUEUE`` come from the variables of those names
(default True and "default"), and an empty ``TASKS_RESULT_BACKEND`` means no result store
(``None``).
"""

from testproject.settings import *  # noqa: F403 - the same project, two more settings
from testproject.settings import env

TASKS_STORE_PENDING = env.bool("TASKS_STORE_PENDING", default=True)
TASKS_RESULT_BACKEND = env("TASKS_RESULT_BACKEND", default="django://") or None
TASKS_DEFAULT_QUEUE = env("TASKS_DEFAULT_QUEUE", default="default")
