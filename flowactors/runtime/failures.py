"""Where a failure happened: the operator (and subtask) a job error names.

User code, and the runtime around it, raise :class:`OperatorFailure` naming the
operator at the place where the error was raised — never further down the
chain, so the operator an error blames is the one that broke. The task turns
it into a :class:`TaskFailure` with its subtask, which the job turns into the
public :class:`~flowactors.errors.JobFailedError`.
"""

from __future__ import annotations

__all__ = ["OperatorFailure", "TaskFailure", "key_by_name"]


def key_by_name(operator: str) -> str:
    """What a key selector's failure is attributed to: the ``key_by`` into ``operator``.

    The same whether the key is computed by the sending task (a hash edge) or by the
    keyed operator itself (chained at parallelism 1).
    """
    return f"key_by -> {operator}"


class OperatorFailure(Exception):
    """An operator's user code (or the operator itself) raised ``cause``."""

    def __init__(self, operator: str, cause: BaseException) -> None:
        super().__init__(f"{operator}: {type(cause).__name__}: {cause}")
        self.operator = operator
        self.cause = cause


class TaskFailure(Exception):
    """A task ended with an error; ``operator`` is the operator it is attributed to."""

    def __init__(self, task_name: str, operator: str, subtask: int, cause: BaseException) -> None:
        super().__init__(f"{operator} (subtask {subtask}): {type(cause).__name__}: {cause}")
        self.task_name = task_name
        self.operator = operator
        self.subtask = subtask
        self.cause = cause

    @staticmethod
    def of(error: BaseException, task_name: str, head: str, subtask: int) -> TaskFailure:
        """Attribute ``error``, raised in a task whose chain starts with ``head``."""
        if isinstance(error, OperatorFailure):
            return TaskFailure(task_name, error.operator, subtask, error.cause)
        return TaskFailure(task_name, head, subtask, error)
