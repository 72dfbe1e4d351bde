"""Tasks (VQA, VGD, ITM): the only part of a run that varies between tasks."""
from mmnas.tasks.base import TASKS, Task


def get_task(name: str):
    """The Task class registered as `name` (imports the task modules on first use)."""
    import mmnas.tasks.vqa  # noqa: F401  (registers 'vqa')
    return TASKS.get(name)


__all__ = ["TASKS", "Task", "get_task"]
