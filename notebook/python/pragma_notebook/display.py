"""What the notebook shows of an operation: a live panel in the cell that
submitted it, how it ended, and the tables of ``%pragma status``.

The panel is an ipywidgets widget, as tqdm.notebook's bar is: its model
lives in the kernel, so a page reloaded mid-run shows the live state again,
and progress updates the model, not the notebook's saved outputs (which
are rewritten once, at the end, with the final text). Where ipywidgets is
missing, or with ``%pragma config progress=text``, a text line updated in
place by its display id does the same; a terminal IPython prints the
ending."""

from __future__ import annotations

import contextvars
import functools
import html
import reprlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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


def in_jupyter() -> bool:
    """Whether the shell is a Jupyter kernel's (which shows displays)."""
    return getattr(ipython(), "kernel", None) is not None


def clock(seconds: float) -> str:
    """``HH:MM:SS``."""
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def score_text(score: float | None) -> str:
    """A score as the body made it: ``20``, not ``20.0``; ``0.9731``."""
    if score is None:
        return "none"
    if float(score).is_integer() and abs(score) < 1e15:
        return str(int(score))
    return f"{score:.6g}"


_SHORT = reprlib.Repr()
_SHORT.maxstring = 40
_SHORT.maxother = 40
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6


def short_repr(value: Any) -> str:
    """A value in a few dozen characters: an array by its shape and type."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__}(shape={tuple(shape)}, dtype={dtype})"
    try:
        text = _SHORT.repr(value)
    except Exception:  # noqa: BLE001 - a repr that fails is still a value
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Conflict:
    """A variable both the operation and the notebook changed: each side's
    value, shortly."""

    name: str
    background: str
    live: str


@dataclass(frozen=True)
class View:
    """What a display shows of one operation at one moment."""

    op: str
    label: str
    phase: str
    finished: int
    total: int
    in_flight: int
    failed: int
    best_iteration: int | None
    best_score: float | None
    elapsed: float
    outcome: Outcome | None = None
    applied: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    note: str | None = None

    @classmethod
    def of(cls, kernel: Kernel, op: str, now: float | None = None) -> View:
        """``op`` as ``kernel`` knows it now."""
        progress = kernel.native().status(op)
        outcome = kernel.outcomes.get(op)
        started = kernel.started.get(op, time.time())
        ended_at = kernel.ended_at.get(op)
        now = ended_at if ended_at is not None else (now or time.time())
        return cls(
            op=op,
            label=kernel.labels.get(op, op),
            phase=outcome.status if outcome is not None else progress.phase,
            finished=progress.finished,
            total=progress.total,
            in_flight=progress.in_flight,
            failed=progress.failed,
            best_iteration=progress.best_iteration,
            best_score=progress.best_score,
            elapsed=max(0.0, now - started),
            outcome=outcome,
            applied=kernel.applied.get(op, []),
            conflicts=kernel.conflicts(op) if outcome is not None else [],
            note=kernel.output_note(op) if outcome is not None else None,
        )

    @property
    def ended(self) -> bool:
        """Whether its outcome is in (and applied, as far as it goes)."""
        return self.outcome is not None

    def rate(self) -> float | None:
        """Iterations per second so far."""
        return self.finished / self.elapsed if self.finished and self.elapsed > 0 else None

    def left(self) -> float | None:
        """Seconds left at the rate so far."""
        rate = self.rate()
        if rate is None or self.ended or self.total <= self.finished:
            return None
        return (self.total - self.finished) / rate

    def best(self) -> str | None:
        """``best 3 (iteration 7)``."""
        if self.best_iteration is None:
            return None
        return f"best {score_text(self.best_score)} (iteration {self.best_iteration})"

    def counts(self) -> list[str]:
        """The parts of the progress line after the label and the state."""
        parts = [f"{self.finished}/{self.total} iterations done" if self.total else "starting"]
        if self.in_flight and not self.ended:
            parts.append(f"{self.in_flight} running")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.best():
            parts.append(str(self.best()))
        timing = clock(self.elapsed)
        left = self.left()
        if left is not None:
            timing += f", about {clock(left)} left"
        rate = self.rate()
        if rate is not None and not self.ended:
            timing += f" ({rate:.2g}/s)" if rate < 10 else f" ({rate:.0f}/s)"
        parts.append(timing)
        return parts

    def state(self) -> str:
        """What it is doing, or how it ended."""
        if self.outcome is not None:
            return self.outcome.status
        if self.phase == "ended":
            return "ended, applied once the kernel is idle"
        return {"queued": "waiting for workers", "suspended": "suspended"}.get(
            self.phase, "running in the background"
        )

    def line(self) -> str:
        """The progress line: ``In[3] · running · 4/8 iterations done ...``."""
        return " · ".join([self.label, self.state(), *self.counts()])

    def ending(self) -> list[str]:
        """How it ended, one line each: why, what was applied, what is left
        and the complete commands that settle it."""
        outcome = self.outcome
        if outcome is None:
            return []
        op = self.op
        lines = []
        if outcome.reason:
            lines.append(f"why: {outcome.reason}")
        if outcome.stopped_early:
            lines.append(f"stopped early: {outcome.stopped_early}")
        if outcome.errors:
            iteration, error = min(outcome.errors.items())
            more = len(outcome.errors) - 1
            lines.append(
                f"iteration {iteration} failed: {error}"
                + (f" (and {more} more: `%pragma logs {op}`)" if more else "")
            )
        if outcome.apply_error:
            lines.append(
                f"not applied: {outcome.apply_error}; the result is kept: `%pragma apply {op}`"
                " applies it once that is mended"
            )
        elif self.applied:
            lines.append("applied: " + ", ".join(self.applied))
        elif outcome.status == "succeeded" and not self.conflicts:
            lines.append("applied: nothing (the result changes no variable)")
        if self.kept_best():
            lines.append(
                f"kept: its best so far (iteration {outcome.best_iteration}, score"
                f" {score_text(outcome.best_score)}); `%pragma apply {op}` applies it"
            )
        for conflict in self.conflicts:
            lines.append(
                f"left alone: {conflict.name}, changed here meanwhile (background"
                f" {conflict.background}, here {conflict.live}):"
                f" `%pragma apply {op} --take-background {conflict.name}` or"
                f" `%pragma apply {op} --keep-live {conflict.name}`"
            )
        if self.note:
            lines.append(self.note)
        return lines

    def kept_best(self) -> bool:
        """Whether a cancelled run's best so far waits for ``%pragma apply``."""
        outcome = self.outcome
        return (
            outcome is not None
            and outcome.status == "cancelled"
            and outcome.best_iteration is not None
            and not self.applied
        )

    def text(self) -> str:
        """The progress line, then the ending's lines."""
        return "\n".join([self.line(), *self.ending()])


# The bar's colour: Bootstrap's, as ipywidgets names them.
_BAR_STYLES = {
    "succeeded": "success",
    "failed": "danger",
    "interrupted": "danger",
    "cancelled": "warning",
}


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def _ending_html(view: View) -> str:
    """The ending's lines as HTML, the commands as code; conflicts are
    left to their rows of buttons."""
    lines = []
    for line in view.ending():
        if line.startswith("left alone: "):
            continue
        parts = line.split("`")
        # Odd parts were between backticks: commands.
        lines.append(
            "".join(_code(part) if i % 2 else html.escape(part) for i, part in enumerate(parts))
        )
    return "<br>".join(lines)


class Panel:
    """An operation's live panel: a label (the cell, ``In[3]``; the op id
    on hover and in the detail line), a bar of the iterations done
    coloured by state, the counts, and once it ended what was applied and
    buttons for what is left."""

    def __init__(self, kernel: Kernel, op: str):
        import ipywidgets as widgets

        self.kernel, self.op = kernel, op
        self.widgets = widgets
        view = View.of(kernel, op)
        self.label = widgets.HTML(f"<b>{html.escape(view.label)}</b>", tooltip=op)
        self.bar = widgets.IntProgress(min=0, max=max(view.total, 1), value=view.finished)
        self.bar.layout.width = "40%"
        self.counts = widgets.HTML()
        self.detail = widgets.HTML()
        self.actions = widgets.VBox()
        self.box = _panel_box_class()(
            [widgets.HBox([self.label, self.bar, self.counts]), self.detail, self.actions]
        )
        self.box.add_class("pragma-panel")
        self.shown_actions: tuple = ()
        # Why the last click did not settle: kept, so each update shows it.
        self.not_applied = ""
        self.update(view)

    def update(self, view: View) -> None:
        """Shows ``view``."""
        self.bar.max = max(view.total, 1)
        self.bar.value = min(view.finished, self.bar.max)
        self.bar.bar_style = _BAR_STYLES.get(view.phase, "info" if view.ended else "")
        self.counts.value = html.escape(" · ".join([view.state(), *view.counts()]))
        ending = _ending_html(view)
        op_line = (
            f'<span style="color: var(--jp-ui-font-color2, #777)">{html.escape(view.op)}</span>'
        )
        self.detail.value = ending + ("<br>" if ending else "") + op_line + self.not_applied
        self.box.text = view.text()
        actions = (tuple(view.conflicts), view.kept_best())
        if actions != self.shown_actions:
            self.shown_actions = actions
            self.actions.children = self.buttons(view)

    def buttons(self, view: View) -> list:
        """A row per conflict ("take background" / "keep live"), and "apply
        the best so far" for a cancelled run's kept best."""
        widgets, rows = self.widgets, []
        # As wide as their words.
        fit = {"layout": widgets.Layout(width="auto", min_width="max-content")}
        for conflict in view.conflicts:
            take = widgets.Button(
                description="take background",
                tooltip=f"%pragma apply {view.op} --take-background {conflict.name}",
                **fit,
            )
            keep = widgets.Button(
                description="keep live",
                tooltip=f"%pragma apply {view.op} --keep-live {conflict.name}",
                **fit,
            )
            take.on_click(self.settling(take_background=[conflict.name]))
            keep.on_click(self.settling(keep_live=[conflict.name]))
            text = widgets.HTML(
                f"left alone: {_code(conflict.name)}, changed here meanwhile (background"
                f" {_code(conflict.background)}, here {_code(conflict.live)})"
            )
            commands = widgets.HTML(
                f"or {_code(take.tooltip)} / {_code('--keep-live ' + conflict.name)}"
            )
            rows.append(widgets.HBox([text, take, keep, commands]))
        if view.kept_best():
            apply = widgets.Button(
                description="apply the best so far", tooltip=f"%pragma apply {view.op}", **fit
            )
            apply.on_click(self.settling())
            rows.append(apply)
        return rows

    def settling(self, **settle) -> Callable[[Any], None]:
        """A button's action: ``%pragma apply`` with ``settle``; an error
        is shown in the panel (a button has no cell to print into)."""

        def click(_button):
            self.not_applied = ""
            try:
                self.kernel.apply(self.op, **settle)
            except Exception as error:  # noqa: BLE001 - shown where the user clicked
                self.not_applied = f"<br><b>not applied</b>: {html.escape(str(error))}"
                progress = self.kernel.displays.get(self.op)
                if progress is not None:
                    progress.show()

        return click


@functools.cache
def _panel_box_class() -> Any:
    # Made on first use: ipywidgets is imported only where a panel shows.
    import ipywidgets as widgets

    class PanelBox(widgets.VBox):
        """The panel's outer box; its text is what a frontend without
        widgets (and the saved notebook) shows."""

        text = ""

        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs)
            bundle["text/plain"] = self.text
            return bundle

    return PanelBox


def widgets_available() -> bool:
    """Whether ipywidgets can be imported."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class Progress:
    """The submitting cell's display of an operation, updated in place, so
    it stays in that cell whatever cell runs meanwhile: a :class:`Panel`,
    or a text line by display id."""

    def __init__(self, kernel: Kernel, op: str):
        from IPython.display import display

        self.kernel = kernel
        self.op = op
        # The follower thread and the kernel's thread both update it: the
        # view is made and sent under the lock, so the last sent is fresh.
        self.lock = threading.Lock()
        # Every widget update is sent under a request of the main shell
        # (see `as_cell`), whatever thread or click sends it. ipykernel
        # (7.4) routes a widget's incoming messages to the subshell of the
        # request its last update was sent under, and JupyterLab deletes
        # its subshells when a page goes: an update sent from a thread
        # (which ipykernel gives the last request of any subshell) or from
        # a page's click would leave the panel's buttons answered "Unknown
        # subshell_id" after a reload.
        self.cell = contextvars.copy_context()
        use_widget = kernel.settings["progress"] == "widget" and widgets_available()
        self.panel = Panel(kernel, op) if use_widget else None
        if self.panel is not None:
            self.handle = display(self.panel.box, display_id=True)
        else:
            text = View.of(kernel, op).text()
            self.handle = display({"text/plain": text}, raw=True, display_id=True)

    def as_cell(self, action: Callable[[], Any]) -> Any:
        """Runs ``action`` under a request of the kernel's main shell: the
        one that runs now if it is one (a frontend that follows that
        request, as nbclient does, records the widgets' state), else the
        submitting cell's."""
        if _request_on_main_shell():
            return action()
        # A context runs in one thread at a time: each call gets a copy.
        return self.cell.copy().run(action)

    def show(self, final: bool = False) -> str:
        """Shows the operation now; its text. ``final``: the saved output is
        rewritten too (a widget's updates otherwise change only its model)."""
        with self.lock:
            view = View.of(self.kernel, self.op)
            if self.panel is not None:
                panel = self.panel
                self.as_cell(lambda: panel.update(view))
                # Not as the cell: a display update reaches the frontend
                # with the request that runs now (the submitting cell's
                # output area may be gone with its request).
                if final:
                    self.handle.update(self.panel.box)
            else:
                self.handle.update({"text/plain": view.text()}, raw=True)
        return view.text()


def _request_on_main_shell() -> bool:
    """Whether the request messages sent now are parented to (the current
    one, or for a thread of ours the last one any subshell handled) came
    on the kernel's main shell, not on a frontend's subshell."""
    kernel = getattr(ipython(), "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else None
    except Exception:  # noqa: BLE001 - an older ipykernel: no subshells
        return True
    return not (parent or {}).get("header", {}).get("subshell_id")


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
                kernel.ended_at.setdefault(op, time.time())
                when_idle(kernel, kernel.apply_finished)
                return

    threading.Thread(target=follow, name=f"pragma progress {op}", daemon=True).start()


def show_ending(kernel: Kernel, op: str) -> None:
    """Shows how ``op`` ended: in its display, or printed in a terminal
    IPython, which shows no display updates."""
    progress = kernel.displays.get(op)
    if progress is not None:
        progress.show(final=True)
    elif ipython() is not None and not in_jupyter():
        print(View.of(kernel, op).text())


def when_idle(kernel: Kernel, callback) -> None:
    """Runs ``callback`` on the Jupyter kernel's own loop, which runs
    callbacks between requests; a cell running then (one that awaits) is
    left alone: after it ends, post_run_cell applies what arrived."""
    loop = getattr(getattr(ipython(), "kernel", None), "io_loop", None)
    if loop is not None:
        loop.add_callback(lambda: None if kernel.cell_running else callback())


class Table:
    """Rows under a header, as HTML in a notebook and as aligned text
    elsewhere (``%pragma status``, an outcome)."""

    def __init__(self, header: list[str] | None, rows: list[list[str]], caption: str = ""):
        self.header, self.rows, self.caption = header, rows, caption

    def __repr__(self) -> str:
        table = ([self.header] if self.header else []) + self.rows
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))] if table else []
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in table
        ]
        return "\n".join(([self.caption] if self.caption else []) + lines)

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th style='text-align:left'>{html.escape(h)}</th>" for h in self.header or []
        )
        head = f"<thead><tr>{head}</tr></thead>" if head else ""
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in row)
            for row in self.rows
        )
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table class='pragma-table'>{caption}{head}<tbody>{body}</tbody></table>"


def status_table(kernel: Kernel, ops: list[str], unfinished: list[str]) -> Table:
    """``%pragma status``: a row per operation of this kernel, then the
    notebook's unfinished ones no kernel follows."""
    rows = []
    for op in ops:
        try:
            view = View.of(kernel, op)
        except Exception as error:  # noqa: BLE001 - one row, not the table
            rows.append([kernel.labels.get(op, ""), op, f"unknown here: {error}", *[""] * 6])
            continue
        left = ", ".join(c.name for c in view.conflicts)
        rows.append(
            [
                view.label,
                op,
                view.state(),
                f"{view.finished}/{view.total}",
                str(view.in_flight) if not view.ended else "",
                (view.best() or "").removeprefix("best "),
                clock(view.elapsed),
                ", ".join(view.applied),
                left,
            ]
        )
    for op in unfinished:
        rows.append(["", op, "stopped, resumable (another kernel's)", *[""] * 6])
    header = ["cell", "operation", "state", "done", "running", "best", "elapsed"]
    header += ["applied", "left to settle"]
    return Table(header, rows, caption="" if rows else "no operation in this kernel yet")
