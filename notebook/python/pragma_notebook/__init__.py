"""pragma for notebooks: ``#pragma repeat|parallel|async`` cells on the
notebook's Python variables, run in the background.

In Jupyter or IPython::

    %load_ext pragma_notebook

then a cell whose first line is a ``#pragma`` directive returns at once
with its operation id; its iterations run in worker interpreters, and the
best state's changed variables come back into the namespace between
cells (``%pragma wait`` waits for it). The same from Python::

    op = pragma_notebook.submit(cell_text, namespace)
    outcome = pragma_notebook.wait(op)

The scheduling, checkpoints, selection, resume and conflicts are the Rust
executor's and lifecycle library's (``pragma_notebook._native``); this
package only saves and restores variables and talks to IPython.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import state
from .syntax import python_source

__all__ = [
    "DirectiveError",
    "Outcome",
    "Operation",
    "StateCost",
    "UnsaveableError",
    "apply",
    "cancel",
    "collect_garbage",
    "config",
    "exclude",
    "excluded",
    "include",
    "last_op",
    "logs",
    "progress_text",
    "report",
    "resume_unfinished",
    "status",
    "submit",
    "wait",
]

# IPython's own names, never state.
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___"}
_IPYTHON_PATTERN = re.compile(r"^_(i{1,3}|i?\d+|oh|dh|ih)$")

_settings: dict[str, Any] = {
    "store": ".pragma",
    "workers": os.cpu_count() or 1,
    "on_conflict": "ask",
    # An exception the body raises is the user's code failing: run once,
    # as inline (a lost worker is a preemption, with its own budget).
    "retries": 0,
    # From the kernel's environment, so that a restarted kernel takes its
    # unfinished operations up on the same cluster (`address` None:
    # ray.init reads RAY_ADDRESS).
    "backend": os.environ.get("PRAGMA_BACKEND", "local"),
    "address": None,
    "ray": {},
}
# Settings the session is built with: changing one makes a new session.
_SESSION_SETTINGS = ("store", "workers", "backend", "address", "ray", "retries")
# Whether `workers` was set (with Ray, the cluster's CPUs otherwise).
_workers_set = False
_excluded: set[str] = set()
_session = None
# This kernel's operations, in order, with the namespace each came from.
_ops: list[str] = []
_namespaces: dict[str, dict] = {}
_outcomes: dict[str, Outcome] = {}
# What each operation was submitted with: the objects and their pickles.
_submitted: dict[str, dict] = {}
# The names each operation's body only reads (`#pragma readonly`).
_readonly: dict[str, set] = {}
# What each operation changed in its namespace when it was applied.
_applied: dict[str, list[str]] = {}
# The progress display of each operation submitted from a cell.
_displays: dict[str, _Progress] = {}


class UnsaveableError(Exception):
    """Variables of the namespace cannot be saved: the cell did not run."""


class DirectiveError(ValueError):
    """A ``#pragma`` cell that cannot run as written (its directive, its
    code or its selection expression): nothing ran."""


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

    def __repr__(self):
        best = (
            f"best iteration {self.best_iteration}, score {self.best_score}"
            if self.best_iteration is not None
            else "no best"
        )
        text = f"<{self.op}: {self.status}, {best}"
        if self.reason:
            text += f" ({self.reason})"
        if self.conflicts:
            text += f"; conflicts left: {', '.join(self.conflicts)}"
        if self.apply_error:
            text += f"; not applied: {self.apply_error}"
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
        largest = ", ".join(f"{name} {_megabytes(size)}" for name, size in self.largest())
        return (
            f"the state is {_megabytes(self.total)} ({largest}); submitting it wrote"
            f" {_megabytes(self.written)} (data the store holds already is not written again)"
        )


def _megabytes(size):
    return f"{size / 1e6:.1f} MB" if size < 1e10 else f"{size / 1e9:.1f} GB"


# Above this size a submitted state says what it costs.
REPORT_STATE_ABOVE = 100_000_000


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
        return wait(self.op, timeout=timeout)


def _native_session():
    global _session
    if _session is None:
        from ._native import NativeSession

        store = _store()
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        workers, dispatcher = int(_settings["workers"]), None
        if _settings["backend"] == "ray":
            try:
                from .ray_backend import Dispatcher
            except ModuleNotFoundError as missing:
                if missing.name != "ray":
                    raise
                raise ModuleNotFoundError(
                    "backend=ray needs Ray in the kernel's environment, of the cluster's"
                    ' version: pip install "ray[default]" (or "./notebook[ray]")',
                    name="ray",
                ) from None

            dispatcher = Dispatcher(_settings["address"], **_settings["ray"])
            if not _workers_set:
                workers = dispatcher.capacity()
        # Without `workers`, as many iterations at once as the cluster has
        # CPUs, as it grows and shrinks.
        follow = dispatcher is not None and not _workers_set
        _session = NativeSession(
            store,
            sys.executable,
            [package],
            workers,
            dispatcher,
            follow,
            retries=int(_settings["retries"]),
        )
    return _session


def _store():
    # A directory is taken where the kernel is now; a URL as it is.
    store = str(_settings["store"])
    return store if "://" in store else os.path.abspath(store)


def _identity():
    # The same notebook's operations resume after a kernel restart: Jupyter
    # names the notebook in JPY_SESSION_NAME; elsewhere the directory does.
    return "ipython:" + (os.environ.get("JPY_SESSION_NAME") or os.getcwd())


def _state_names(namespace):
    # What IPython put in the namespace itself (`open`, `exit`, ...) and
    # the user has not rebound is not state either.
    ip = _ipython()
    hidden = getattr(ip, "user_ns_hidden", {}) if ip is not None else {}
    return [
        name
        for name in namespace
        if name not in _IPYTHON_NAMES
        and not _IPYTHON_PATTERN.match(name)
        and not name.startswith("__")
        and name not in _excluded
        and not (name in hidden and hidden[name] is namespace[name])
    ]


def _save(namespace, buffers, readonly=(), given=None):
    """The namespace's state saved, as one graph (see
    :mod:`pragma_notebook.state`), its large buffers put in ``buffers``
    (``given``: variables saved already), with the kernel's process
    context (``readonly``: the names the body only reads): ``(names,
    blobs)``."""
    names, blobs, unsaveable = state.dump_namespace(
        namespace, _state_names(namespace), buffers, given
    )
    if unsaveable:
        raise UnsaveableError(
            "The following variables cannot be serialized: "
            + ", ".join(f"{name} ({kind})" for name, kind in unsaveable)
            + "; `%pragma exclude NAME...` leaves them out of the saved state"
            " (the body does not see them, nothing overwrites them)"
        )
    return names + [state.CONTEXT], blobs + [_context(readonly)]


def _cost(names, blobs, store, written):
    sizes = {}
    for name, blob in zip(names, blobs, strict=True):
        if name != state.CONTEXT:
            size = len(blob)
            if store is not None:
                size += sum(store.size(digest) for digest in state.buffers(blob))
            sizes[name] = size
    return StateCost(total=sum(sizes.values()), sizes=sizes, written=written)


def _context(readonly):
    """What a worker takes from the kernel to run as it does: its working
    directory, ``sys.path`` and environment, where large buffers are, and
    the names the body only reads."""
    blobs = _blobs()
    context = {
        "cwd": os.getcwd(),
        "path": list(sys.path),
        "environ": dict(os.environ),
        "blobs": blobs.root if blobs is not None else None,
        "blob_cache": getattr(blobs, "cache", None),
        "readonly": list(readonly),
    }
    # Signed as the variables are: it sets what a worker imports from.
    return state.sign(json.dumps(context, sort_keys=True).encode())


def _blobs():
    """Where large buffers are saved by content: beside the checkpoints,
    in the store's directory or bucket (with copies on this machine, in
    the store's local directory)."""
    store = _store()
    if "://" in store:
        local = os.path.dirname(_native_session().logs_dir())
        return state.blob_store(store.rstrip("/"), cache=os.path.join(local, "blobs"))
    return state.blob_store(os.path.join(store, "blobs"))


def submit(cell, namespace, name="cell"):
    """Runs ``cell`` (a ``#pragma`` line, then the body) in the background
    on ``namespace``; returns at once with the :class:`Operation`. A cell
    whose directive, code or selection expression is wrong raises
    :class:`DirectiveError` before anything runs.

    An interrupt (the kernel's Interrupt) while the namespace is saved
    stops the submission: nothing runs. Once the operation is started, an
    interrupt waits until this kernel follows it (``%pragma status``,
    ``wait`` and ``cancel`` reach it), then raises."""
    readonly = _check(cell, name)
    missing = [var for var in readonly if var not in namespace]
    if missing:
        raise DirectiveError(
            f"{name}: `#pragma readonly` names {', '.join(missing)}, which the notebook does"
            " not have; nothing ran"
        )
    store = _blobs()
    written = store.written if store is not None else 0
    names, blobs = _save(namespace, store, readonly)
    cost = _cost(names, blobs, store, (store.written if store is not None else 0) - written)
    with _interrupts_deferred() as interrupted:
        op, how = _native_session().submit(cell, name, _identity(), names, blobs)
        if how != "running":
            _ops.append(op)
            _namespaces[op] = namespace
            _submitted[op] = {
                n: (namespace.get(n), b)
                for n, b in zip(names, blobs, strict=True)
                if n != state.CONTEXT
            }
            _readonly[op] = set(readonly)
    operation = Operation(op, resumed=how == "resumed", already_running=how == "running", cost=cost)
    if interrupted:
        raise KeyboardInterrupt(
            f"{op} was submitted before the interrupt, and runs: `%pragma cancel {op}` stops it"
        )
    return operation


@contextlib.contextmanager
def _interrupts_deferred():
    """Holds back SIGINT (the kernel's Interrupt) in its block; yields a
    list that is not empty if one came."""
    came: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield came
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda *_: came.append(True))
    try:
        yield came
    finally:
        signal.signal(signal.SIGINT, previous)


def _check(cell, name):
    """Checks a cell before anything runs: its directive, its code and its
    selection expression compile. Returns the names its ``#pragma
    readonly`` lines give."""
    from ._native import parse_cell

    try:
        parsed = parse_cell(cell, name)
    except ValueError as error:
        raise DirectiveError(str(error).rstrip().removeprefix("error: ")) from None
    expr, body, readonly = parsed.expr, parsed.body, parsed.readonly
    try:
        compile(python_source(body), name, "exec")
    except SyntaxError as error:
        raise DirectiveError(
            f"{name}: the cell's code does not compile (line {_body_line(cell, error)}):"
            f" {error.msg}; nothing ran"
        ) from None
    if expr is not None:
        try:
            compile(expr, "--max-by/--min-by", "eval")
        except SyntaxError as error:
            raise DirectiveError(
                f"{name}: the selection expression `{expr}` does not compile: {error.msg};"
                " nothing ran"
            ) from None
    return readonly


def _body_line(cell, error):
    # The body starts after the directive's line(s): count them in.
    directive_lines = cell[: cell.find("#pragma")].count("\n") + 1
    continued = 0
    for line in cell.splitlines()[directive_lines - 1 :]:
        if not line.endswith("\\"):
            break
        continued += 1
    return (error.lineno or 1) + directive_lines + continued


def resume_unfinished(namespace):
    """Takes up the operations of this notebook that a kernel restart (or
    crash) left unfinished: each goes on from its last checkpoint, and its
    result is applied to ``namespace`` as for a submitted one. Returns them
    as :class:`Operation` s. ``%load_ext pragma_notebook`` calls it."""
    store = _store()
    if _session is None and "://" not in store and not os.path.isdir(os.path.join(store, "ops")):
        return []  # nothing was ever run here
    session = _native_session()
    resumed = []
    for op in session.unfinished(_identity()):
        session.resume(op)
        _ops.append(op)
        _namespaces[op] = namespace
        resumed.append(Operation(op, resumed=True))
    return resumed


_MISSING = object()

# Types whose pickle is the same for the same value: for these a change in
# place shows as a different pickle. The notebook's own classes are saved
# by `state`, whose bytes follow the value (their instances' too).
_STABLE_PICKLES = (
    "builtins",
    "collections",
    "numpy",
    "datetime",
    "decimal",
    "fractions",
    "__main__",
)


def _live(op, namespace, changed=None):
    """The namespace now, saved, for the conflict check. A variable changed
    in the notebook if it was bound to another object, or, for values whose
    pickle is stable (builtins, numpy arrays, ...), changed in place. Other
    objects may pickle differently each time (a Keras model's archive holds
    a timestamp): the same object counts as unchanged. Its large buffers
    are named by content, held in memory (``held``), not saved:
    ``(names, blobs, held)``. With ``changed`` (the names the operation
    changed), only those and what refers to them are saved afresh."""
    held = state.Held(_blobs())
    submitted = _submitted.get(op, {})
    # What the operation did not change (``changed``: the names it did),
    # nor what refers to that, and is still the object it was submitted
    # as, is not saved again: it is never applied, whatever its value now.
    # Nor is what the body only reads.
    skipped = set(_readonly.get(op, ()))
    if changed is not None:
        refs = {name: state.refs(blob) for name, (_, blob) in submitted.items()}
        skipped |= set(submitted) - state.referring(refs, changed)
    given = {
        name: submitted[name][1]
        for name in skipped
        if name in submitted and namespace.get(name, _MISSING) is submitted[name][0]
    }
    names, blobs = _save(namespace, held, given=given)
    for i, name in enumerate(names):
        if name not in submitted:
            continue  # the process context too: what counts is the submitted one
        value, blob = submitted[name]
        stable = type(value).__module__.split(".")[0] in _STABLE_PICKLES
        if namespace[name] is value and not stable:
            blobs[i] = blob
    return names, blobs, held


def last_op():
    """The most recent operation of this kernel."""
    if not _ops:
        raise ValueError("no operation was submitted in this kernel yet")
    return _ops[-1]


def _op(op):
    return str(op) if op is not None else last_op()


def status(op=None):
    """Where an operation stands, as a dict."""
    op = _op(op)
    progress = _native_session().status(op)
    return {
        "op": op,
        "done": progress.done,
        "total": progress.total,
        "in_flight": progress.in_flight,
        "best_iteration": progress.best_iteration,
        "best_score": progress.best_score,
        "ended": progress.ended,
    }


def cancel(op=None):
    """Cancels an operation: its workers stop, its last checkpoint stays."""
    _native_session().cancel(_op(op))


def _apply_changes(namespace, changes, live, submitted, buffers):
    """Makes an operation's ``changes`` (name and saved value, or ``None``
    to delete) in ``namespace``, as one graph with what stays: a reference
    to a variable that does not change is the notebook's object. A
    variable the changes do not name but whose value refers to one they
    change is loaded again from ``live`` (its saved value now), so that it
    refers to the new object, as it would inline. A reference to a
    variable that does not change is to the object the operation started
    from (``submitted``: name to object and bytes), as inline, or else
    the notebook's. All or none: if a value cannot be loaded, nothing
    changes."""
    changed = {name: blob for name, blob in changes if blob is not None}
    removed = {name for name, blob in changes if blob is None}
    refs = {
        name: state.refs(blob)
        for name, blob in live.items()
        if name not in removed and name != state.CONTEXT
    }
    for name in state.referring(refs, changed) - changed.keys():
        changed[name] = live[name]

    def elsewhere(name):
        # What the operation started from, as inline, where this kernel
        # submitted it; else what the notebook has now.
        if name in submitted and submitted[name][0] is not None:
            return submitted[name][0]
        if name in namespace:
            return namespace[name]
        raise UnsaveableError(
            f"the result refers to the variable `{name}`, which the notebook no longer has:"
            f" define it again, then `%pragma apply`"
        )

    state.load_namespace(changed, namespace, elsewhere=elsewhere, buffers=buffers)
    for name in removed:
        namespace.pop(name, None)


def _applier(op, namespace, names, blobs, held):
    """What makes an operation's changes in ``namespace``, its live state
    saved as ``names`` and ``blobs`` (large buffers in ``held``)."""
    live = dict(zip(names, blobs, strict=True))
    submitted = _submitted.get(op, {})
    return lambda changes: _apply_changes(namespace, changes, live, submitted, held)


def _settled(op, outcome, applying=False):
    # Nothing is left to apply: what it was submitted with is let go (it
    # may be most of the notebook's memory). A cancelled operation's best
    # so far waits for `%pragma apply`, unless this is it.
    waits = outcome.status == "cancelled" and outcome.best_iteration is not None
    if not outcome.conflicts and not outcome.apply_error and (applying or not waits):
        _submitted.pop(op, None)
        _readonly.pop(op, None)
        _collect_now_and_then()


# The store's unnamed data blobs are collected by themselves, in the
# background, once an operation is settled: at most this often (seconds),
# each blob after its grace period (see `collect_garbage`).
COLLECT_EVERY = 3600
COLLECT_GRACE = 3600
_collected_at = None
_collector = None


def _collect_now_and_then():
    global _collected_at, _collector
    now = time.monotonic()
    if _collected_at is not None and now - _collected_at < COLLECT_EVERY:
        return
    _collected_at = now

    def collect():
        # Only space is at stake: a failure leaves the blobs for the next
        # time, or for `%pragma gc`, which says why.
        with contextlib.suppress(Exception):
            collect_garbage(COLLECT_GRACE)

    _collector = threading.Thread(target=collect, name="pragma gc", daemon=True)
    _collector.start()


def _outcome(summary):
    best = summary.get("best") or {}
    return Outcome(
        op=summary["op"],
        status=summary["status"],
        best_iteration=best.get("iteration"),
        best_score=best.get("score"),
        conflicts=list(summary.get("conflicts", [])),
        failed_iterations=[f["iteration"] for f in summary.get("failed_iterations", [])],
        usage=dict(summary.get("usage", {})),
        reason=summary.get("reason"),
        errors={f["iteration"]: f["error"] for f in summary.get("failed_iterations", [])},
        apply_error=summary.get("apply_error"),
    )


def _finish(op):
    namespace = _namespaces[op]
    names, blobs, held = _live(op, namespace, _native_session().changed_names(op))
    summary, applied = _native_session().finish(
        op,
        _identity(),
        names,
        blobs,
        _settings["on_conflict"],
        [],
        [],
        _applier(op, namespace, names, blobs, held),
    )
    _applied[op] = applied
    outcome = _outcome(json.loads(summary))
    _outcomes[op] = outcome
    _settled(op, outcome)
    _show_ending(op)
    return outcome


def wait(op=None, timeout=None):
    """Waits for an operation to end, applies its result to its namespace
    (conflicts as the ``on_conflict`` rule says), and returns its
    :class:`Outcome`; ``None`` if ``timeout`` seconds passed first."""
    op = _op(op)
    if op in _outcomes:
        return _outcomes[op]
    if not _native_session().wait(op, timeout):
        return None
    return _finish(op)


def apply(op=None, take_background=None, keep_live=None):
    """Applies what an operation left to apply: its conflicts, the named
    variables taking the operation's value (``take_background``) or
    keeping the notebook's (``keep_live``); a result the kernel could not
    load before; a cancelled operation's best so far. Its outcome after."""
    op = _op(op)
    namespace = _namespaces[op]
    names, blobs, held = _live(op, namespace)
    summary, applied = _native_session().apply_kept(
        op,
        _identity(),
        names,
        blobs,
        "ask",
        list(take_background or []),
        list(keep_live or []),
        _applier(op, namespace, names, blobs, held),
    )
    _applied[op] = _applied.get(op, []) + applied
    if summary is not None:
        _outcomes[op] = _outcome(json.loads(summary))
        _settled(op, _outcomes[op], applying=True)
        _show_ending(op)
    return _outcomes.get(op)


def report(op=None):
    """The chart of an operation's candidates and scores, as SVG text
    (``%pragma report`` shows it inline)."""
    return _native_session().report_svg(_op(op))


def logs(op=None, iteration=None):
    """Each run's captured standard output and error, as text."""
    op = _op(op)
    directory = os.path.join(_native_session().logs_dir(), op)
    if not os.path.isdir(directory):
        return f"operation {op}: its iterations printed nothing so far"

    def order(name):
        stem, _, extension = name.partition(".")
        numbers = [int(part) if part.isdigit() else 0 for part in stem.split("-")]
        return numbers, extension == "err"

    parts = []
    for name in sorted(os.listdir(directory), key=order):
        numbers, is_err = order(name)
        if iteration is not None and numbers[:1] != [int(iteration)]:
            continue
        with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as file:
            text = file.read()
        stream = "stderr" if is_err else "stdout"
        parts.append(f"== iteration {numbers[0]} attempt {numbers[-1]} {stream}\n{text}")
    return "".join(parts) or f"operation {op}: no output for iteration {iteration}"


def collect_garbage(grace_seconds=3600):
    """Deletes the data blobs of the store (``.pragma/blobs``) that no
    state it holds names any more (checkpoints it let go, operations
    whose data changed), unless written or used in the last
    ``grace_seconds``; ``%pragma gc``. Returns how many it deleted and
    their bytes. A store it cannot read whole is left as it is (the error
    says why)."""
    blobs = _blobs()
    named = set()
    for saved in _native_session().stored_variables():
        named.update(state.buffers(saved))
    # Copies: the kernel's thread may submit meanwhile.
    for submitted in list(_submitted.values()):
        for _, saved in list(submitted.values()):
            named.update(state.buffers(saved))
    return blobs.collect(named, grace_seconds)


def exclude(*names):
    """Leaves variables out of the saved state from now on (the body does
    not see them, nothing overwrites them): ``%pragma exclude NAME...``,
    or DataSphere's ``%state_exclude NAME...``."""
    _excluded.update(names)


def include(*names):
    """Takes variables left out by :func:`exclude` into the state again
    (``%state_include NAME...``); with no name, all of them
    (``%state_include_all``)."""
    if names:
        _excluded.difference_update(names)
    else:
        _excluded.clear()


def excluded():
    """The variables left out of the saved state (``%state_exclude_ls``)."""
    return sorted(_excluded)


def config(**settings):
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
    ``runtime_env``)."""
    global _workers_set
    for key, value in settings.items():
        if key not in _settings:
            raise ValueError(f"unknown setting `{key}`: use one of {', '.join(_settings)}")
        if key == "on_conflict" and value not in ("take-background", "keep-live", "ask"):
            raise ValueError(f"on_conflict `{value}`: use take-background, keep-live or ask")
        if key == "backend" and value not in ("local", "ray"):
            raise ValueError(f"backend `{value}`: use local or ray")
        if key == "retries" and not (str(value).isdigit()):
            raise ValueError(f"retries `{value}`: give a whole number, 0 or more")
        if key == "ray" and not isinstance(value, dict):
            raise ValueError(f"ray `{value!r}`: give a dict of ray.init arguments")
        if key in _SESSION_SETTINGS and _session is not None and value != _settings[key]:
            if any(op not in _outcomes for op in _ops):
                raise ValueError(
                    f"`{key}` cannot change while operations of this kernel run: wait for"
                    " them or cancel them first"
                )
            _reset_session()
        _settings[key] = value
        if key == "workers":
            _workers_set = True
        if key == "store" and _ipython() is not None:
            _take_up_unfinished(_ipython())


def _reset_session():
    global _session
    _session = None


# --- IPython ---------------------------------------------------------------


# What a directive looks like, whatever its spelling: `# pragma repeat`,
# `#Pragma parallel`, ... (a coverage comment, `# pragma: no cover`, is
# not one).
_DIRECTIVE_LIKE = re.compile(r"^\s*#\s*pragma\s+(repeat|parallel|async)\b", re.IGNORECASE)


def _transform(lines):
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return lines
    if lines[first].lstrip().startswith("#pragma "):
        return [f"__import__('pragma_notebook')._run_cell({''.join(lines)!r})\n"]
    # A near miss is named, and the cell does not run inline.
    for number, line in enumerate(lines, start=1):
        if _DIRECTIVE_LIKE.match(line):
            return [
                f"__import__('pragma_notebook')._near_miss({line.strip()!r}, {number},"
                f" {number - 1 == first})\n"
            ]
    return lines


def _near_miss(line, number, first):
    if first:
        why = (
            f"`{line}` is not a #pragma directive: write `#pragma` (lowercase, no space after"
            " `#`), then repeat, parallel or async"
        )
    else:
        why = (
            f"line {number}, `{line}`, looks like a #pragma directive, but a directive must be"
            " the cell's first line: move it there"
        )
    print(f"error: {why}; the cell did not run", file=sys.stderr)


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _run_cell(cell):
    ip = _ipython()
    try:
        # The cell's number as its prompt shows it (execution_count is
        # the next one's while a cell runs).
        number = getattr(ip.displayhook, "prompt_count", ip.execution_count)
        operation = submit(cell, ip.user_ns, name=f"In[{number}]")
    except (UnsaveableError, DirectiveError) as error:
        print(f"error: {error}", file=sys.stderr)
        return
    if operation.already_running:
        op = operation.op
        print(
            f"{op}: this cell is running in the background already; nothing new started."
            f" `%pragma wait {op}` waits for it; `%pragma cancel {op}`, then this cell again,"
            " starts it over",
            file=sys.stderr,
        )
        return
    verb = "resumed" if operation.resumed else "running"
    print(f"{operation.op}: {verb} in the background; `%pragma wait` waits for it")
    if operation.cost is not None and operation.cost.total > REPORT_STATE_ABOVE:
        print(f"{operation.op}: {operation.cost}")
    _show_progress(operation.op)


def _clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_text(op, started, now):
    """One line of progress: done of total, in flight, best so far,
    elapsed and the time left; once the result is applied, what it
    changed and what is left to settle."""
    st = status(op)
    elapsed = now - started
    text = f"{op}: {st['done']}/{st['total']} iterations done, {st['in_flight']} in flight"
    if st["best_iteration"] is not None:
        text += f", best {st['best_score']} (iteration {st['best_iteration']})"
    text += f", {_clock(elapsed)} elapsed"
    outcome = _outcomes.get(op)
    if outcome is not None:
        return text + "; " + _ending_text(op, outcome)
    if st["ended"]:
        return text + ", ended: its result is applied once the kernel is idle"
    if st["done"] and st["total"] > st["done"]:
        text += f", about {_clock(elapsed / st['done'] * (st['total'] - st['done']))} left"
    return text


def _ending_text(op, outcome):
    text = outcome.status
    if outcome.reason:
        text += f" ({outcome.reason})"
    if outcome.errors:
        iteration, error = min(outcome.errors.items())
        more = len(outcome.errors) - 1
        text += f"; iteration {iteration} failed: {error}" + (
            f" (and {more} more: `%pragma logs`)" if more else ""
        )
    applied = _applied.get(op, [])
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


class _Progress:
    """The submitting cell's progress display, updated in place by its
    display id, so it stays in that cell whatever cell runs meanwhile."""

    def __init__(self, op):
        import threading
        import time

        from IPython.display import display

        self.op = op
        # The follower thread and the kernel's thread both update it: the
        # text is made and sent under the lock, so the last sent is fresh.
        self.lock = threading.Lock()
        self.started = time.time()
        self.handle = display(
            {"text/plain": progress_text(op, self.started, self.started)},
            raw=True,
            display_id=True,
        )

    def show(self):
        import time

        with self.lock:
            text = progress_text(self.op, self.started, time.time())
            self.handle.update({"text/plain": text}, raw=True)
        return text


def _show_progress(op):
    import threading
    import time

    progress = _Progress(op)
    _displays[op] = progress

    def follow():
        while op not in _outcomes:
            time.sleep(0.5)
            try:
                progress.show()
                ended = _native_session().status(op).ended
            except Exception:  # noqa: BLE001 - the kernel is shutting down
                return
            if ended:
                _when_idle(_apply_finished)
                return

    threading.Thread(target=follow, name=f"pragma progress {op}", daemon=True).start()


def _show_ending(op):
    progress = _displays.get(op)
    if progress is not None:
        progress.show()
    elif _ipython() is not None and getattr(_ipython(), "kernel", None) is None:
        # A terminal IPython shows no display updates: it is printed.
        print(f"{op} ended: {_ending_text(op, _outcomes[op])}")


# Whether a cell is running now: results are applied between cells only.
_cell_running = False


def _pre_run_cell(*args):
    global _cell_running
    _cell_running = True


def _when_idle(callback):
    # On the kernel's own loop, which runs callbacks between requests; a
    # cell running then (one that awaits) is left alone: after it ends,
    # post_run_cell applies what arrived.
    kernel = getattr(_ipython(), "kernel", None)
    loop = getattr(kernel, "io_loop", None)
    if loop is not None:
        loop.add_callback(lambda: None if _cell_running else callback())


def _apply_finished(*args):
    global _cell_running
    _cell_running = False
    # Between cells: results that arrived are applied now, never during a cell.
    for op in list(_ops):
        if op in _outcomes:
            continue
        if _native_session().status(op).ended:
            try:
                _finish(op)
            except UnsaveableError as error:
                # The live namespace cannot be compared now; it waits.
                print(f"{op} ended, but its result waits: {error}", file=sys.stderr)


def _take_up_unfinished(ip):
    for operation in resume_unfinished(ip.user_ns):
        print(
            f"{operation.op}: resumed in the background from its last checkpoint (a kernel"
            " restart stopped it); `%pragma wait` waits for it"
        )
        _show_progress(operation.op)


def _magic(line):
    words = shlex.split(line)
    if not words:
        print("usage: %pragma status|wait|cancel|apply|report|logs|exclude|config|gc ...")
        return None
    command, rest = words[0], words[1:]
    if command == "wait":
        return wait(rest[0] if rest else None)
    if command == "status":
        return status(rest[0] if rest else None)
    if command == "cancel":
        cancel(rest[0] if rest else None)
        return None
    if command == "report":
        from IPython.display import SVG, display

        display(SVG(report(rest[0] if rest else None)))
        return None
    if command == "logs":
        op, iteration = None, None
        for i, word in enumerate(rest):
            if word == "--iteration" and i + 1 < len(rest):
                iteration = rest[i + 1]
            elif rest[i - 1 : i] != ["--iteration"]:
                op = word
        print(logs(op, iteration), end="")
        return None
    if command == "gc":
        count, freed = collect_garbage()
        print(f"deleted {count} data blobs no state names, {_megabytes(freed)}")
        return None
    if command == "exclude":
        exclude(*rest)
        return None
    if command == "config":
        config(**_config_words(rest))
        return None
    if command == "apply":
        op, target = None, None
        take: list[str] = []
        keep: list[str] = []
        for word in rest:
            if word == "--take-background":
                target = take
            elif word == "--keep-live":
                target = keep
            elif target is None:
                op = word
            else:
                target.append(word)
        return apply(op, take_background=take, keep_live=keep)
    raise ValueError(f"unknown %pragma command `{command}`")


def _config_words(words):
    """``KEY=VALUE`` words as settings; ``ray.NAME=VALUE`` ones gather into
    the ``ray`` dict, each value read as a Python literal where it is one
    (``ray.log_to_driver=True``, ``ray.runtime_env={...}``)."""
    settings, ray_options = {}, {}
    for word in words:
        if "=" not in word:
            raise ValueError(f"`{word}`: write settings as KEY=VALUE")
        key, value = word.split("=", 1)
        if key.startswith("ray."):
            try:
                ray_options[key[4:]] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                ray_options[key[4:]] = value
        else:
            settings[key] = value
    if ray_options:
        settings["ray"] = {**_settings["ray"], **ray_options}
    return settings


def load_ipython_extension(ip):
    """``%load_ext pragma_notebook``: ``#pragma`` cells run in the
    background, ``%pragma ...`` controls them."""
    if _transform not in ip.input_transformers_cleanup:
        ip.input_transformers_cleanup.append(_transform)
    ip.register_magic_function(_magic, magic_kind="line", magic_name="pragma")
    # DataSphere's words for what the state leaves out.
    ip.register_magic_function(
        lambda line: exclude(*line.split()), magic_kind="line", magic_name="state_exclude"
    )
    ip.register_magic_function(
        lambda line: include(*line.split()), magic_kind="line", magic_name="state_include"
    )
    ip.register_magic_function(
        lambda line: include(), magic_kind="line", magic_name="state_include_all"
    )
    ip.register_magic_function(
        lambda line: print(" ".join(excluded()) or "(nothing is excluded)"),
        magic_kind="line",
        magic_name="state_exclude_ls",
    )
    ip.events.register("pre_run_cell", _pre_run_cell)
    ip.events.register("post_run_cell", _apply_finished)
    _take_up_unfinished(ip)
