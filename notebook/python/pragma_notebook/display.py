"""What the notebook shows of an operation: its progress line, updated in
place in the cell that submitted it, and how it ended."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .operations import Kernel
    from .results import Outcome


def ipython() -> Any:
    """The running IPython shell, or ``None`` outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def clock(seconds: float) -> str:
    """``HH:MM:SS``."""
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_text(kernel: Kernel, op: str, started: float, now: float) -> str:
    """One line of progress: done of total, in flight, best so far,
    elapsed and the time left; once the result is applied, what it
    changed and what is left to settle."""
    st = kernel.status(op)
    elapsed = now - started
    text = f"{op}: {st['done']}/{st['total']} iterations done, {st['in_flight']} in flight"
    if st["best_iteration"] is not None:
        text += f", best {st['best_score']} (iteration {st['best_iteration']})"
    text += f", {clock(elapsed)} elapsed"
    outcome = kernel.outcomes.get(op)
    if outcome is not None:
        return text + "; " + ending_text(kernel, op, outcome)
    if st["ended"]:
        return text + ", ended: its result is applied once the kernel is idle"
    if st["done"] and st["total"] > st["done"]:
        text += f", about {clock(elapsed / st['done'] * (st['total'] - st['done']))} left"
    return text


def ending_text(kernel: Kernel, op: str, outcome: Outcome) -> str:
    """How an operation ended, what was applied, and what is left to do."""
    text = outcome.status
    if outcome.reason:
        text += f" ({outcome.reason})"
    if outcome.errors:
        iteration, error = min(outcome.errors.items())
        more = len(outcome.errors) - 1
        text += f"; iteration {iteration} failed: {error}" + (
            f" (and {more} more: `%pragma logs`)" if more else ""
        )
    applied = kernel.applied.get(op, [])
    if outcome.status == "cancelled" and outcome.best_iteration is not None and not applied:
        text += (
            f"; its best so far (iteration {outcome.best_iteration}, score"
            f" {outcome.best_score}) is kept: `%pragma apply {op}` applies it"
        )
    if outcome.apply_error:
        text += (
            f"; not applied: {outcome.apply_error} (the result is kept: `%pragma apply {op}`"
            " applies it once that is mended)"
        )
    elif applied:
        text += ", applied: " + ", ".join(applied)
    elif outcome.status == "succeeded":
        text += ", nothing to apply"
    if outcome.conflicts:
        names = " ".join(outcome.conflicts)
        text += (
            f"; changed here meanwhile, left alone: {', '.join(outcome.conflicts)}"
            f" (`%pragma apply {op} --take-background {names}` or `--keep-live {names}`)"
        )
    return text


class Progress:
    """The submitting cell's progress display, updated in place by its
    display id, so it stays in that cell whatever cell runs meanwhile."""

    def __init__(self, kernel: Kernel, op: str):
        from IPython.display import display

        self.kernel = kernel
        self.op = op
        # The follower thread and the kernel's thread both update it: the
        # text is made and sent under the lock, so the last sent is fresh.
        self.lock = threading.Lock()
        self.started = time.time()
        self.handle = display(
            {"text/plain": progress_text(kernel, op, self.started, self.started)},
            raw=True,
            display_id=True,
        )

    def show(self) -> str:
        """Shows the progress now; its text."""
        with self.lock:
            text = progress_text(self.kernel, self.op, self.started, time.time())
            self.handle.update({"text/plain": text}, raw=True)
        return text


def show_progress(kernel: Kernel, op: str) -> None:
    """Shows ``op``'s progress in the running cell, and keeps it up to date
    in a thread until the operation ends; then its result is applied once
    the kernel is idle."""
    progress = Progress(kernel, op)
    kernel.displays[op] = progress

    def follow():
        while op not in kernel.outcomes:
            time.sleep(0.5)
            try:
                progress.show()
                ended = kernel.native().status(op).ended
            except Exception:  # noqa: BLE001 - the kernel is shutting down
                return
            if ended:
                when_idle(kernel, kernel.apply_finished)
                return

    threading.Thread(target=follow, name=f"pragma progress {op}", daemon=True).start()


def show_ending(kernel: Kernel, op: str) -> None:
    """Shows how ``op`` ended: in its progress display, or printed in a
    terminal IPython, which shows no display updates."""
    progress = kernel.displays.get(op)
    if progress is not None:
        progress.show()
    elif ipython() is not None and getattr(ipython(), "kernel", None) is None:
        print(f"{op} ended: {ending_text(kernel, op, kernel.outcomes[op])}")


def when_idle(kernel: Kernel, callback) -> None:
    """Runs ``callback`` on the Jupyter kernel's own loop, which runs
    callbacks between requests; a cell running then (one that awaits) is
    left alone: after it ends, post_run_cell applies what arrived."""
    loop = getattr(getattr(ipython(), "kernel", None), "io_loop", None)
    if loop is not None:
        loop.add_callback(lambda: None if kernel.cell_running else callback())
