"""Tasks: what is solved and how it is graded, registered by name.

Every module in this package that defines a task registers it on import; importing the
package imports them all, so adding a task is adding a file.
"""

import importlib
import pkgutil

from ponder.tasks.base import (
    Task,
    TaskBase,
    create_task,
    describe_tasks,
    register_task,
    task_class,
    task_names,
)

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base" and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "Task",
    "TaskBase",
    "create_task",
    "describe_tasks",
    "register_task",
    "task_class",
    "task_names",
]
