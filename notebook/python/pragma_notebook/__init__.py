"""pragma for notebooks: ``#pragma repeat|parallel|async`` cells on the
notebook's Python variables, run in the background.

In Jupyter or IPython::

    %load_ext pragma_notebook

then a cell whose first line is a ``#pragma`` directive returns at once
with its operation id; its iterations run in worker interpreters, and the
best state's changed variables come back into the namespace between
cells (``%pragma wait`` waits for it; ``%pragma --help`` lists the
magics). The same from Python::

    op = pragma_notebook.submit(cell_text, namespace)
    outcome = pragma_notebook.wait(op)

The scheduling, checkpoints, selection, resume and conflicts are the Rust
executor's and lifecycle library's (``pragma_notebook._native``); this
package saves and restores variables and talks to IPython. Its modules:

- :mod:`.operations`: one kernel's operations, owned by one :class:`Kernel`;
  the functions below act on :func:`kernel`;
- :mod:`.magics`: the ``%pragma`` magics and the IPython hooks;
- :mod:`.display`: the progress line and how an operation ended;
- :mod:`.settings`: what ``%pragma config`` may set;
- :mod:`.state`, :mod:`.blobs`, :mod:`.signing`: variables saved and
  loaded as one graph, their large buffers by content;
- :mod:`.worker` and :mod:`.ray_backend`: where bodies run.
"""

from __future__ import annotations

from .display import View as _View
from .errors import DirectiveError, UnsaveableError
from .magics import load_ipython_extension
from .magics import near_miss as _near_miss
from .magics import run_cell as _run_cell
from .operations import Kernel, kernel
from .results import REPORT_STATE_ABOVE, Operation, Outcome, StateCost

__all__ = [
    "REPORT_STATE_ABOVE",
    "DirectiveError",
    "Kernel",
    "Operation",
    "Outcome",
    "StateCost",
    "UnsaveableError",
    "apply",
    "cancel",
    "collect_garbage",
    "config",
    "exclude",
    "excluded",
    "extend",
    "include",
    "kernel",
    "last_op",
    "load_ipython_extension",
    "logs",
    "progress_text",
    "status_table",
    "report",
    "resume_unfinished",
    "status",
    "submit",
    "wait",
]

# What IPython's input transformer calls (see `magics.transform`).
_EXPORTED_FOR_CELLS = (_run_cell, _near_miss)


def submit(cell, namespace, name="cell") -> Operation:
    """Runs ``cell`` (a ``#pragma`` line, then the body) in the background
    on ``namespace``; returns at once with the :class:`Operation`. A cell
    whose directive, code or selection expression is wrong raises
    :class:`DirectiveError` before anything runs.

    An interrupt (the kernel's Interrupt) while the namespace is saved
    stops the submission: nothing runs. Once the operation is started, an
    interrupt waits until this kernel follows it (``%pragma status``,
    ``wait`` and ``cancel`` reach it), then raises."""
    return kernel().submit(cell, namespace, name)


def resume_unfinished(namespace) -> list[Operation]:
    """Takes up the operations of this notebook that a kernel restart (or
    crash) left unfinished: each goes on from its last checkpoint, and its
    result is applied to ``namespace`` as for a submitted one. Returns them
    as :class:`Operation` s. ``%load_ext pragma_notebook`` calls it."""
    return kernel().resume_unfinished(namespace)


def last_op() -> str:
    """The most recent operation of this kernel."""
    return kernel().last_op()


def status(op=None) -> dict:
    """Where an operation stands, as a dict (``%pragma status [OP]``)."""
    return kernel().status(op)


def cancel(op=None) -> None:
    """Cancels an operation: its workers stop, its last checkpoint stays
    (``%pragma cancel [OP]``)."""
    kernel().cancel(op)


def wait(op=None, timeout=None) -> Outcome | None:
    """Waits for an operation to end, applies its result to its namespace
    (conflicts as the ``on_conflict`` rule says), and returns its
    :class:`Outcome`; ``None`` if ``timeout`` seconds passed first
    (``%pragma wait [OP]``)."""
    return kernel().wait(op, timeout)


def extend(op=None, more=1) -> Operation:
    """Runs ``more`` iterations beyond the end of an operation that
    succeeded and whose result was applied (``%pragma extend [OP] N``): a
    repeat goes on from its last state (not its best), a parallel
    operation runs its next iterations; the earlier candidates stay
    candidates, the usage adds up, and ``%pragma wait`` applies the best
    of all. Raises ``ValueError`` for one that has not ended here, failed
    or was cancelled (resume that one instead)."""
    return kernel().extend(op, more)


def apply(op=None, take_background=None, keep_live=None) -> Outcome | None:
    """Applies what an operation left to apply: its conflicts, the named
    variables taking the operation's value (``take_background``) or
    keeping the notebook's (``keep_live``); a result the kernel could not
    load before; a cancelled operation's best so far. Its outcome after
    (``%pragma apply [OP] [--take-background NAME...] [--keep-live
    NAME...]``)."""
    return kernel().apply(op, take_background, keep_live)


def report(op=None) -> str:
    """The chart of an operation's candidates and scores, as SVG text
    (``%pragma report [OP]`` shows it inline)."""
    return kernel().report(op)


def logs(op=None, iteration=None) -> str:
    """Each run's captured standard output and error, as text
    (``%pragma logs [OP] [--iteration N]``)."""
    return kernel().logs(op, iteration)


def collect_garbage(grace_seconds=3600):
    """Deletes the data blobs of the store (``.pragma/blobs``) that no
    state it holds names any more (checkpoints it let go, operations
    whose data changed), unless written or used in the last
    ``grace_seconds``; ``%pragma gc [--grace SECONDS]``. Returns how many
    it deleted and their bytes. A store it cannot read whole is left as it
    is (the error says why)."""
    return kernel().collect_garbage(grace_seconds)


def exclude(*names) -> None:
    """Leaves variables out of the saved state from now on (the body does
    not see them, nothing overwrites them): ``%pragma exclude NAME...``,
    or DataSphere's ``%state_exclude NAME...``."""
    kernel().exclude(*names)


def include(*names) -> None:
    """Takes variables left out by :func:`exclude` into the state again
    (``%state_include NAME...``); with no name, all of them
    (``%state_include_all``)."""
    kernel().include(*names)


def excluded() -> list[str]:
    """The variables left out of the saved state (``%state_exclude_ls``)."""
    return sorted(kernel().excluded)


def config(**settings) -> None:
    """Sets ``store`` (a directory, ``.pragma`` by default, or
    ``s3://BUCKET/PREFIX`` as for the ``pragma`` command), ``workers`` (the
    most worker interpreters, the machine's cores by default; with Ray, the
    most iterations at once, by default the cluster's CPUs, followed as
    nodes join and leave),
    ``on_conflict`` (``take-background``, ``keep-live`` or ``ask``),
    ``retries`` (how many times an iteration whose body raised runs again;
    0 by default, so that its side effects happen once, as inline),
    ``backend`` (``local``, or ``ray`` to run iterations on a Ray
    cluster), ``address`` (the cluster's, as ``ray.init`` takes it) and
    ``ray`` (a dict of more ``ray.init`` arguments, such as
    ``runtime_env``), ``progress`` (``widget``, a live ipywidgets panel,
    or ``text``, a line); ``%pragma config KEY=VALUE...``."""
    kernel().config(**settings)


def progress_text(op=None) -> str:
    """What an operation's cell shows of it, as text: its cell, its state,
    iterations done of all, running, best so far, elapsed and the time
    left; once it ended, what was applied and what is left to settle, with
    the commands that settle it."""
    return _View.of(kernel(), kernel().op(op)).text()


def status_table(op=None):
    """This kernel's operations as a table (HTML in a notebook, text
    elsewhere): cell, id, state, done, running, best, elapsed, applied,
    left to settle; what ``%pragma status`` shows."""
    return kernel().status_table(op)
