"""What the package hands back: a submitted :class:`Operation`, what its
state cost (:class:`StateCost`), and how it ended (:class:`Outcome`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._native import OperationSummary

# Above this size a submitted state says what it costs.
REPORT_STATE_ABOVE = 100_000_000


def megabytes(size: float) -> str:
    """A size as a person reads it: ``12.3 MB``, ``4.5 GB``."""
    return f"{size / 1e6:.1f} MB" if size < 1e10 else f"{size / 1e9:.1f} GB"


@dataclass
class Outcome:
    """How an operation ended, and what was applied."""

    op: str
    status: str
    best_iteration: int | None
    best_score: float | None
    conflicts: list[str] = field(default_factory=list)
    failed_iterations: list[int] = field(default_factory=list)
    usage: dict = field(default_factory=dict)
    reason: str | None = None
    # The last error of each iteration that failed for good.
    errors: dict[int, str] = field(default_factory=dict)
    # Why the result could not be applied (it is kept: `%pragma apply`).
    apply_error: str | None = None
    # The variables its result changed in the notebook.
    applied: list[str] = field(default_factory=list)
    # Why a stop rule (--patience, --target) ended it before its last
    # iteration: "no better score in 3 checkpoints after iteration 29".
    stopped_early: str | None = None

    @classmethod
    def of_summary(cls, summary: OperationSummary, applied=()) -> Outcome:
        """The outcome the lifecycle's summary describes, with the
        variables ``applied``."""
        usage = summary.usage
        return cls(
            op=summary.op,
            status=summary.status,
            best_iteration=summary.best_iteration,
            best_score=summary.best_score,
            conflicts=list(summary.conflicts),
            failed_iterations=[failed.iteration for failed in summary.failed_iterations],
            usage={
                "worker_seconds": usage.worker_seconds,
                "iterations_run": usage.iterations_run,
                "work_lost": usage.work_lost,
                "bytes_checkpointed": usage.bytes_checkpointed,
            },
            reason=summary.reason,
            errors={failed.iteration: failed.error for failed in summary.failed_iterations},
            apply_error=summary.apply_error,
            applied=list(applied),
            stopped_early=summary.stopped_early,
        )

    def rows(self) -> list[list[str]]:
        """The outcome as a small table's rows: what, and its value."""
        from .display import score_text

        rows = [["operation", self.op], ["ended", self.status]]
        if self.reason:
            rows.append(["why", self.reason])
        if self.stopped_early:
            rows.append(["stopped early", self.stopped_early])
        if self.best_iteration is not None:
            rows.append(
                ["best", f"iteration {self.best_iteration}, score {score_text(self.best_score)}"]
            )
        if self.apply_error:
            rows.append(["not applied", f"{self.apply_error} (kept: `%pragma apply {self.op}`)"])
        else:
            rows.append(["applied", ", ".join(self.applied) or "nothing"])
        if self.conflicts:
            rows.append(["left to settle", ", ".join(self.conflicts) + " (changed here meanwhile)"])
        for iteration, error in sorted(self.errors.items())[:3]:
            rows.append([f"iteration {iteration} failed", error.strip().splitlines()[-1]])
        if self.usage:
            rows.append(
                [
                    "used",
                    f"{self.usage['iterations_run']} iteration runs,"
                    f" {self.usage['worker_seconds']:.1f} worker seconds,"
                    f" {self.usage['work_lost']} lost",
                ]
            )
        return rows

    def _repr_html_(self) -> str:
        from .display import Table

        return Table(None, self.rows())._repr_html_()

    def __repr__(self):
        from .display import score_text

        best = (
            f"best iteration {self.best_iteration}, score {score_text(self.best_score)}"
            if self.best_iteration is not None
            else "no best"
        )
        text = f"<{self.op}: {self.status}, {best}"
        if self.reason:
            text += f" ({self.reason})"
        if self.apply_error:
            text += f"; not applied: {self.apply_error}"
        elif self.applied:
            text += f"; applied: {', '.join(self.applied)}"
        if self.conflicts:
            text += f"; conflicts left: {', '.join(self.conflicts)}"
        return text + ">"


@dataclass
class StateCost:
    """What an operation's state costs: its size in all (variables and
    their large buffers), each variable's, and what submitting it wrote
    (buffers the store did not hold yet)."""

    total: int
    sizes: dict[str, int]
    written: int

    def largest(self, count=3):
        """The ``count`` largest variables, with their sizes."""
        return sorted(self.sizes.items(), key=lambda item: -item[1])[:count]

    def __str__(self):
        largest = ", ".join(f"{name} {megabytes(size)}" for name, size in self.largest())
        return (
            f"the state is {megabytes(self.total)} ({largest}); submitting it wrote"
            f" {megabytes(self.written)} (data the store holds already is not written again)"
        )


@dataclass
class Operation:
    """A submitted operation: ``resumed`` if an interrupted run of the same
    cell went on from its last checkpoint, ``already_running`` if this
    kernel runs that cell already (nothing new started)."""

    op: str
    resumed: bool = False
    already_running: bool = False
    # What its state costs (see :class:`StateCost`).
    cost: StateCost | None = None

    def __str__(self):
        return self.op

    def wait(self, timeout=None):
        """Waits for it to end and applies its result; its outcome."""
        from .operations import kernel

        return kernel().wait(self.op, timeout=timeout)
