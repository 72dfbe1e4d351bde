"""Tasks (VQA, VGD, ITM): the only part of a run that varies between tasks."""
import importlib

from mmnas.tasks.base import TASKS, Task


def get_task(name: str) -> type[Task]:
    """The Task class registered as `name`; its module mmnas.tasks.<name> is imported on first use."""
    if name not in TASKS:
        try:
            importlib.import_module(f"mmnas.tasks.{name}")
        except ModuleNotFoundError:
            pass  # TASKS.get below names the valid tasks
    return TASKS.get(name)


__all__ = ["TASKS", "Task", "get_task"]
