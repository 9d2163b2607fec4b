"""One kernel's operations, owned by one object: the native session, the
settings, each operation's namespace, what it was submitted with, its
outcome and what it changed. The package's functions and the ``%pragma``
magics all act on the kernel's :func:`kernel`."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from . import display, state
from .errors import DirectiveError, UnsaveableError
from .native_args import SavedNamespace, SessionOptions, Settling
from .results import Operation, Outcome, StateCost, megabytes
from .settings import SESSION_SETTINGS, Settings, is_bucket
from .syntax import python_source

if TYPE_CHECKING:
    from ._native import NativeSession, ParsedCell

# IPython's own names, never state.
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___"}
_IPYTHON_PATTERN = re.compile(r"^_(i{1,3}|i?\d+|oh|dh|ih)$")

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


class Kernel:
    """The operations of one kernel, and everything they need."""

    # The store's unnamed data blobs are collected by themselves, in the
    # background, once an operation is settled: at most this often
    # (seconds), each blob after its grace period (see `collect_garbage`).
    collect_every = 3600
    collect_grace = 3600
    # Seconds the iterations running when the kernel is shut down or
    # restarted get to finish: Jupyter kills a kernel that has not exited
    # 5 s after it asked it to.
    shutdown_grace = 3.0

    def __init__(self):
        self.settings = Settings()
        self.excluded: set[str] = set()
        self.session: NativeSession | None = None
        # This kernel's operations, in order, with the namespace each came
        # from.
        self.ops: list[str] = []
        self.namespaces: dict[str, dict] = {}
        self.outcomes: dict[str, Outcome] = {}
        # What each operation was submitted with: the objects and their
        # pickles.
        self.submitted: dict[str, dict] = {}
        # The names each operation's body only reads (`#pragma readonly`).
        self.readonly: dict[str, set] = {}
        # What each operation changed in its namespace when it was applied.
        self.applied: dict[str, list[str]] = {}
        # The progress display of each operation submitted from a cell.
        self.displays: dict[str, display.Progress] = {}
        # Each operation's cell (`In[3]`), and when it started here and
        # ended.
        self.labels: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.ended_at: dict[str, float] = {}
        # Each conflict's two values, shortly, while it is left.
        self.conflict_values: dict[str, list[display.Conflict]] = {}
        # Whether a cell is running now: results are applied between cells
        # only.
        self.cell_running = False
        self.collected_at: float | None = None
        self.collector: threading.Thread | None = None

    # --- the native session ------------------------------------------------

    def native(self) -> NativeSession:
        """The lifecycle library's session, made on first use from the
        settings."""
        if self.session is None:
            from ._native import NativeSession

            settings = self.settings
            package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            workers, dispatcher = int(settings["workers"]), None
            if settings["backend"] == "ray":
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

                dispatcher = Dispatcher(settings["address"], **settings["ray"])
                if not settings.workers_set:
                    workers = dispatcher.capacity()
            # Without `workers`, as many iterations at once as the cluster
            # has CPUs, as it grows and shrinks.
            follow = dispatcher is not None and not settings.workers_set
            self.session = NativeSession(
                SessionOptions(
                    store=settings.store(),
                    python=sys.executable,
                    python_path=[package],
                    workers=workers,
                    ray=dispatcher,
                    follow_cluster=follow,
                    retries=int(settings["retries"]),
                )
            )
            # A kernel shut down or restarted suspends what still runs.
            atexit.register(self.suspend_running)
            if dispatcher is not None:
                # Beside the workers' own output: shown by `%pragma logs`.
                dispatcher.keep_messages_in(
                    os.path.join(self.session.logs_dir(), "workers", f"{os.getpid()}-ray.err")
                )
        return self.session

    def suspend_running(self) -> list[str]:
        """The kernel is going (shut down, restarted): each of its
        operations still running gets a preemption notice, as ``pragma
        run`` gets from a SIGTERM: nothing new starts, what runs has
        :attr:`shutdown_grace` seconds to finish, a repeat checkpoints its
        last finished iteration. The notebook's next kernel resumes each
        with nothing that finished run again. Returns those suspended."""
        native = self.session
        if native is None:
            return []
        running = []
        for op in self.ops:
            # An operation this kernel no longer follows is not its own.
            with contextlib.suppress(ValueError):
                if op not in self.outcomes and not native.wait(op, 0.0):
                    native.suspend(op, self.shutdown_grace)
                    running.append(op)
        if running:
            # Jupyter sends SIGTERM halfway through its 5 s, then SIGKILL:
            # the notice is done within the 5 s, not cut off at half.
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
        deadline = time.monotonic() + self.shutdown_grace + 1.0
        for op in running:
            with contextlib.suppress(ValueError):
                native.wait(op, max(0.0, deadline - time.monotonic()))
        return running

    def identity(self) -> str:
        """The notebook's identity: the same notebook's operations resume
        after a kernel restart. Jupyter names the notebook in
        JPY_SESSION_NAME; elsewhere the directory does."""
        return "ipython:" + (os.environ.get("JPY_SESSION_NAME") or os.getcwd())

    def blobs(self) -> Any:
        """Where large buffers are saved by content: beside the checkpoints,
        in the store's directory or bucket (with copies on this machine, in
        the store's local directory)."""
        store = self.settings.store()
        if is_bucket(store):
            local = os.path.dirname(self.native().logs_dir())
            return state.blob_store(store.rstrip("/"), cache=os.path.join(local, "blobs"))
        return state.blob_store(os.path.join(store, "blobs"))

    # --- saving the namespace ----------------------------------------------

    def state_names(self, namespace: dict) -> list[str]:
        """The names of ``namespace`` that are state: not IPython's own
        (``In``, ``_3``, what it put there and the user did not rebind),
        not dunder names, not excluded."""
        ip = display.ipython()
        hidden = getattr(ip, "user_ns_hidden", {}) if ip is not None else {}
        return [
            name
            for name in namespace
            if name not in _IPYTHON_NAMES
            and not _IPYTHON_PATTERN.match(name)
            and not name.startswith("__")
            and name not in self.excluded
            and not (name in hidden and hidden[name] is namespace[name])
        ]

    def save(self, namespace, buffers, readonly=(), given=None):
        """The namespace's state saved, as one graph (see
        :mod:`pragma_notebook.state`), its large buffers put in ``buffers``
        (``given``: variables saved already), with the kernel's process
        context (``readonly``: the names the body only reads): ``(names,
        blobs)``."""
        names, blobs, unsaveable = state.dump_namespace(
            namespace, self.state_names(namespace), buffers, given
        )
        if unsaveable:
            raise UnsaveableError(
                "The following variables cannot be serialized: "
                + ", ".join(f"{name} ({kind})" for name, kind in unsaveable)
                + "; `%pragma exclude NAME...` leaves them out of the saved state"
                " (the body does not see them, nothing overwrites them)"
            )
        return names + [state.CONTEXT], blobs + [self.context(readonly)]

    def context(self, readonly) -> bytes:
        """What a worker takes from the kernel to run as it does: its
        working directory, ``sys.path`` and environment, where large
        buffers are, and the names the body only reads."""
        blobs = self.blobs()
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

    # --- submitting ----------------------------------------------------------

    def submit(self, cell: str, namespace: dict, name: str = "cell") -> Operation:
        """See :func:`pragma_notebook.submit`."""
        parsed = check_cell(cell, name)
        readonly = parsed.readonly
        missing = [var for var in readonly if var not in namespace]
        if missing:
            raise DirectiveError(
                f"{name}: `#pragma readonly` names {', '.join(missing)}, which the notebook"
                " does not have; nothing ran"
            )
        store = self.blobs()
        written = store.written if store is not None else 0
        names, blobs = self.save(namespace, store, readonly)
        cost = _cost(names, blobs, store, (store.written if store is not None else 0) - written)
        with _interrupts_deferred() as interrupted:
            submitted = self.native().submit(parsed, SavedNamespace(self.identity(), names, blobs))
            op, how = submitted.op, submitted.how
            if how != "running":
                self.ops.append(op)
                self.labels[op] = name
                self.started[op] = time.time()
                self.namespaces[op] = namespace
                self.submitted[op] = {
                    n: (namespace.get(n), b)
                    for n, b in zip(names, blobs, strict=True)
                    if n != state.CONTEXT
                }
                self.readonly[op] = set(readonly)
        operation = Operation(
            op, resumed=how == "resumed", already_running=how == "running", cost=cost
        )
        if interrupted:
            raise KeyboardInterrupt(
                f"{op} was submitted before the interrupt, and runs: `%pragma cancel {op}` stops it"
            )
        return operation

    def resume_unfinished(self, namespace: dict) -> list[Operation]:
        """See :func:`pragma_notebook.resume_unfinished`."""
        store = self.settings.store()
        # Nothing was ever run here: no run records, and no checkpoints
        # (a crash at a submit leaves those alone; taking up what is
        # unfinished also clears what crashed writers left in them).
        if (
            self.session is None
            and not is_bucket(store)
            and not os.path.isdir(os.path.join(store, "ops"))
            and not os.path.isdir(os.path.join(store, "store", "ops"))
        ):
            return []
        session = self.native()
        resumed = []
        for op in session.unfinished(self.identity()):
            session.resume(op)
            self.ops.append(op)
            self.labels[op] = "resumed"
            self.started[op] = time.time()
            self.namespaces[op] = namespace
            resumed.append(Operation(op, resumed=True))
        return resumed

    # --- following -------------------------------------------------------

    def last_op(self) -> str:
        """The most recent operation of this kernel."""
        if not self.ops:
            raise ValueError("no operation was submitted in this kernel yet")
        return self.ops[-1]

    def extend(self, op, more: int) -> Operation:
        """See :func:`pragma_notebook.extend`."""
        op = self.op(op)
        if op not in self.outcomes:
            raise ValueError(
                f"{op} has not ended here: `%pragma wait {op}` waits for it, then extend it"
            )
        namespace = self.namespaces[op]
        readonly = self.readonly.get(op, set())
        store = self.blobs()
        names, blobs = self.save(namespace, store, readonly)
        with _interrupts_deferred() as interrupted:
            self.native().extend(op, int(more), SavedNamespace(self.identity(), names, blobs))
            # It runs again: what its end said is no more.
            for ended in (self.outcomes, self.applied, self.ended_at, self.conflict_values):
                ended.pop(op, None)
            self.started[op] = time.time()
            self.submitted[op] = {
                n: (namespace.get(n), b)
                for n, b in zip(names, blobs, strict=True)
                if n != state.CONTEXT
            }
        if interrupted:
            raise KeyboardInterrupt(
                f"{op} was extended before the interrupt, and runs: `%pragma cancel {op}` stops it"
            )
        return Operation(op, resumed=True, already_running=False)

    def op(self, op) -> str:
        """``op`` as an id; the last operation for ``None``."""
        return str(op) if op is not None else self.last_op()

    def status(self, op=None) -> dict[str, Any]:
        """See :func:`pragma_notebook.status`."""
        op = self.op(op)
        progress = self.native().status(op)
        return {
            "op": op,
            "done": progress.done,
            "total": progress.total,
            "in_flight": progress.in_flight,
            "best_iteration": progress.best_iteration,
            "best_score": progress.best_score,
            "ended": progress.ended,
        }

    def cancel(self, op=None) -> None:
        """See :func:`pragma_notebook.cancel`."""
        self.native().cancel(self.op(op))

    def cancel_and_tell(self, op=None, timeout=10.0) -> str:
        """``%pragma cancel``: cancels ``op``, waits a moment for it to stop,
        and says what it kept and how to apply it."""
        op = self.op(op)
        if op in self.outcomes:
            return f"{op} has ended already ({self.outcomes[op].status}): nothing to cancel"
        self.cancel(op)
        outcome = self.wait(op, timeout=timeout)
        if outcome is None:
            return f"{op}: cancelling; it stops once its running iterations do"
        view = display.View.of(self, op)
        if outcome.status != "cancelled":
            return f"{op} ended before the cancel: {view.text()}"
        if view.kept_best():
            return (
                f"{op} cancelled after {view.finished} of {view.total} iterations; its best"
                f" so far (iteration {outcome.best_iteration}, score"
                f" {display.score_text(outcome.best_score)}) is kept, not applied:"
                f" `%pragma apply {op}` applies it"
            )
        return (
            f"{op} cancelled after {view.finished} of {view.total} iterations; it had no"
            " scored result to keep"
        )

    def status_table(self, op=None) -> display.Table:
        """``%pragma status``: this kernel's operations (``op``'s alone if
        given), and the notebook's unfinished ones no kernel follows."""
        if op is not None:
            return display.status_table(self, [self.op(op)], [])
        unfinished: list[str] = []
        if self.session is not None:
            with contextlib.suppress(Exception):
                unfinished = self.native().unfinished(self.identity())
        return display.status_table(self, list(self.ops), unfinished)

    def conflicts(self, op: str) -> list[display.Conflict]:
        """The conflicts ``op`` left, each with both values shortly: its
        result's (loaded from the kept result) and the notebook's."""
        outcome = self.outcomes.get(op)
        names = list(outcome.conflicts) if outcome is not None else []
        known = self.conflict_values.get(op, [])
        if [c.name for c in known] == names:
            return known
        namespace = self.namespaces.get(op, {})
        background = dict.fromkeys(names, "?")
        with contextlib.suppress(Exception):  # only a display is at stake
            saved = self.native().kept_values(op, names)
            for name, blob in zip(names, saved, strict=True):
                background[name] = (
                    "(deleted)" if blob is None else self._short_saved(op, name, blob)
                )
        found = [
            display.Conflict(
                name,
                background[name],
                display.short_repr(namespace[name]) if name in namespace else "(deleted)",
            )
            for name in names
        ]
        self.conflict_values[op] = found
        return found

    def _short_saved(self, op: str, name: str, blob: bytes) -> str:
        # A large value is named by its size, not loaded to be shown.
        store = self.blobs()
        size = len(blob)
        if store is not None:
            size += sum(store.size(digest) for digest in state.buffers(blob))
        if size > 50_000_000:
            return f"<{megabytes(size)}>"
        scratch: dict = {}
        namespace = self.namespaces.get(op, {})
        state.load_namespace({name: blob}, scratch, elsewhere=namespace.__getitem__, buffers=store)
        return display.short_repr(scratch[name])

    def wait(self, op=None, timeout=None) -> Outcome | None:
        """See :func:`pragma_notebook.wait`."""
        op = self.op(op)
        if op in self.outcomes:
            return self.outcomes[op]
        if not self.native().wait(op, timeout):
            return None
        return self.finish(op)

    def report(self, op=None) -> str:
        """See :func:`pragma_notebook.report`."""
        return self.native().report_svg(self.op(op))

    def logs(self, op=None, iteration=None) -> str:
        """See :func:`pragma_notebook.logs`. After the iterations' output
        comes what this kernel's workers wrote outside any iteration
        (imports, start-up, threads a body left running), kept apart so
        that it never shows in whatever cell runs at the time."""
        op = self.op(op)
        logs_dir = self.native().logs_dir()
        directory = os.path.join(logs_dir, op)

        def outside_iterations():
            # Named `KERNEL-WORKER.err` by the host (process ids): this
            # kernel's only, not those of earlier kernels on the store.
            workers = os.path.join(logs_dir, "workers")
            mine = f"{os.getpid()}-"
            names: list[str] = []
            with contextlib.suppress(OSError):
                names = [n for n in os.listdir(workers) if n.startswith(mine)]
            shown = []
            # By worker id, as numbers (the shorter id is the smaller).
            for name in sorted(names, key=lambda n: (len(n), n)):
                worker = name.removeprefix(mine).removesuffix(".err")
                text = tail(os.path.join(workers, name))
                # Ray's messages to the kernel (see `Dispatcher.keep_messages_in`).
                title = "Ray, to this kernel" if worker == "ray" else f"worker {worker}"
                if text.strip():
                    shown.append(f"-- {title}\n{text}" + ("" if text.endswith("\n") else "\n"))
            return "".join(["== workers (outside any iteration)\n", *shown]) if shown else ""

        def tail(path, most=1 << 16):
            # A worker's thread may write on and on: its last words.
            try:
                with open(path, "rb") as file:
                    size = file.seek(0, os.SEEK_END)
                    file.seek(max(0, size - most))
                    text = file.read().decode("utf-8", "replace")
            except OSError:
                return ""
            if size > most:
                return f"[its first {size - most} bytes are left out: see {path}]\n{text}"
            return text

        if not os.path.isdir(directory):
            outside = outside_iterations()
            nothing = f"operation {op}: its iterations printed nothing so far"
            return f"{nothing}\n{outside}" if outside else nothing

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
        shown = "".join(parts) or f"operation {op}: no output for iteration {iteration}"
        outside = outside_iterations()
        if outside and not shown.endswith("\n"):
            shown += "\n"
        return shown + outside

    def output_note(self, op) -> str | None:
        """A line for the operation's own cell when its iterations wrote
        to standard error (kept in its logs, not shown in cells): how many
        lines, how many of them Python warnings; None if they wrote
        nothing there."""
        op = self.op(op)
        directory = os.path.join(self.native().logs_dir(), op)
        lines = warned = 0
        with contextlib.suppress(OSError):
            for name in os.listdir(directory):
                if not name.endswith(".err"):
                    continue
                path = os.path.join(directory, name)
                with (
                    contextlib.suppress(OSError),
                    open(path, encoding="utf-8", errors="replace") as file,
                ):
                    for line in file:
                        lines += 1
                        # As `warnings.formatwarning` writes them.
                        if re.search(r": \w*Warning: ", line):
                            warned += 1
        if not lines:
            return None

        def counted(n, what):
            return f"{n} {what}{'' if n == 1 else 's'}"

        found = f" ({counted(warned, 'warning')})" if warned else ""
        return (
            f"its iterations wrote {counted(lines, 'line')} to stderr{found} — `%pragma logs {op}`"
        )

    # --- applying --------------------------------------------------------

    def live(self, op: str, namespace: dict, changed=None):
        """The namespace now, saved, for the conflict check. A variable
        changed in the notebook if it was bound to another object, or, for
        values whose pickle is stable (builtins, numpy arrays, ...),
        changed in place. Other objects may pickle differently each time (a
        Keras model's archive holds a timestamp): the same object counts as
        unchanged. Its large buffers are named by content, held in memory
        (``held``), not saved: ``(names, blobs, held)``. With ``changed``
        (the names the operation changed), only those and what refers to
        them are saved afresh."""
        held = state.Held(self.blobs())
        submitted = self.submitted.get(op, {})
        # What the operation did not change (``changed``: the names it
        # did), nor what refers to that, and is still the object it was
        # submitted as, is not saved again: it is never applied, whatever
        # its value now. Nor is what the body only reads.
        skipped = set(self.readonly.get(op, ()))
        if changed is not None:
            refs = {name: state.refs(blob) for name, (_, blob) in submitted.items()}
            skipped |= set(submitted) - state.referring(refs, changed)
        given = {
            name: submitted[name][1]
            for name in skipped
            if name in submitted and namespace.get(name, _MISSING) is submitted[name][0]
        }
        names, blobs = self.save(namespace, held, given=given)
        for i, name in enumerate(names):
            if name not in submitted:
                continue  # the process context too: what counts is the submitted one
            value, blob = submitted[name]
            stable = type(value).__module__.split(".")[0] in _STABLE_PICKLES
            if namespace[name] is value and not stable:
                blobs[i] = blob
        return names, blobs, held

    def applier(self, op: str, namespace: dict, names, blobs, held):
        """What makes an operation's changes in ``namespace``, its live
        state saved as ``names`` and ``blobs`` (large buffers in
        ``held``)."""
        live = dict(zip(names, blobs, strict=True))
        submitted = self.submitted.get(op, {})
        return lambda changes: apply_changes(namespace, changes, live, submitted, held)

    def finish(self, op: str) -> Outcome:
        """Ends ``op`` against its namespace now: applies its result
        (conflicts as the ``on_conflict`` rule says); its outcome."""
        namespace = self.namespaces[op]
        names, blobs, held = self.live(op, namespace, self.native().changed_names(op))
        finished = self.native().finish(
            op,
            SavedNamespace(self.identity(), names, blobs),
            Settling(self.settings["on_conflict"], [], []),
            self.applier(op, namespace, names, blobs, held),
        )
        self.applied[op] = finished.applied
        outcome = Outcome.of_summary(finished.summary, finished.applied)
        self.outcomes[op] = outcome
        self.ended_at.setdefault(op, time.time())
        self.settled(op, outcome)
        display.show_ending(self, op)
        return outcome

    def apply(self, op=None, take_background=None, keep_live=None) -> Outcome | None:
        """See :func:`pragma_notebook.apply`."""
        op = self.op(op)
        namespace = self.namespaces[op]
        names, blobs, held = self.live(op, namespace)
        settled = self.native().apply_kept(
            op,
            SavedNamespace(self.identity(), names, blobs),
            Settling("ask", list(take_background or []), list(keep_live or [])),
            self.applier(op, namespace, names, blobs, held),
        )
        self.applied[op] = self.applied.get(op, []) + settled.applied
        if settled.summary is not None:
            self.outcomes[op] = Outcome.of_summary(settled.summary, self.applied[op])
            self.settled(op, self.outcomes[op], applying=True)
            display.show_ending(self, op)
        return self.outcomes.get(op)

    def settled(self, op: str, outcome: Outcome, applying: bool = False) -> None:
        """Nothing is left to apply: what ``op`` was submitted with is let
        go (it may be most of the notebook's memory). A cancelled
        operation's best so far waits for ``%pragma apply``, unless this is
        it."""
        waits = outcome.status == "cancelled" and outcome.best_iteration is not None
        if not outcome.conflicts and not outcome.apply_error and (applying or not waits):
            self.submitted.pop(op, None)
            self.readonly.pop(op, None)
            self.collect_now_and_then()

    def apply_finished(self, *args) -> None:
        """Between cells: results that arrived are applied now, never
        during a cell (IPython's ``post_run_cell``)."""
        self.cell_running = False
        for op in list(self.ops):
            if op in self.outcomes:
                continue
            if self.native().status(op).ended:
                try:
                    self.finish(op)
                except UnsaveableError as error:
                    # The live namespace cannot be compared now; it waits.
                    print(f"{op} ended, but its result waits: {error}", file=sys.stderr)

    # --- the store's data ----------------------------------------------------

    def collect_garbage(self, grace_seconds=3600):
        """See :func:`pragma_notebook.collect_garbage`."""
        blobs = self.blobs()
        named = set()
        for saved in self.native().stored_variables():
            named.update(state.buffers(saved))
        # Copies: the kernel's thread may submit meanwhile.
        for submitted in list(self.submitted.values()):
            for _, saved in list(submitted.values()):
                named.update(state.buffers(saved))
        return blobs.collect(named, grace_seconds)

    def collect_now_and_then(self) -> None:
        """Collects the store's unnamed blobs in a thread, at most every
        :attr:`collect_every` seconds."""
        now = time.monotonic()
        if self.collected_at is not None and now - self.collected_at < self.collect_every:
            return
        self.collected_at = now
        grace = self.collect_grace

        def collect():
            # Only space is at stake: a failure leaves the blobs for the
            # next time, or for `%pragma gc`, which says why.
            with contextlib.suppress(Exception):
                self.collect_garbage(grace)

        self.collector = threading.Thread(target=collect, name="pragma gc", daemon=True)
        self.collector.start()

    # --- what the state leaves out -------------------------------------

    def exclude(self, *names: str) -> None:
        """See :func:`pragma_notebook.exclude`."""
        self.excluded.update(names)

    def include(self, *names: str) -> None:
        """See :func:`pragma_notebook.include`."""
        if names:
            self.excluded.difference_update(names)
        else:
            self.excluded.clear()

    # --- settings --------------------------------------------------------

    def config(self, **settings) -> None:
        """See :func:`pragma_notebook.config`."""
        for key, value in settings.items():
            self.settings.check(key, value)
            if key in SESSION_SETTINGS and self.session is not None and value != self.settings[key]:
                if any(op not in self.outcomes for op in self.ops):
                    raise ValueError(
                        f"`{key}` cannot change while operations of this kernel run: wait for"
                        " them or cancel them first"
                    )
                self.session = None
            self.settings.set(key, value)
            if key == "store" and display.ipython() is not None:
                self.take_up_unfinished(display.ipython())

    def take_up_unfinished(self, ip) -> None:
        """Resumes this notebook's unfinished operations into ``ip``'s
        namespace, saying so, each with its progress shown."""
        for operation in self.resume_unfinished(ip.user_ns):
            print(
                f"{operation.op}: resumed in the background from its last checkpoint (a kernel"
                " restart stopped it); `%pragma wait` waits for it"
            )
            display.show_progress(self, operation.op)


_KERNEL = Kernel()


def kernel() -> Kernel:
    """This kernel's :class:`Kernel`: what the package's functions and the
    ``%pragma`` magics act on."""
    return _KERNEL


def check_cell(cell: str, name: str) -> ParsedCell:
    """Checks a cell before anything runs: its directive, its code and its
    selection expression compile. Returns it parsed, as it is submitted."""
    from ._native import parse_cell

    try:
        parsed = parse_cell(cell, name)
    except ValueError as error:
        raise DirectiveError(str(error).rstrip().removeprefix("error: ")) from None
    expr, body = parsed.expr, parsed.body
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
    return parsed


def _body_line(cell: str, error: SyntaxError) -> int:
    # The body starts after the directive's line(s): count them in.
    directive_lines = cell[: cell.find("#pragma")].count("\n") + 1
    continued = 0
    for line in cell.splitlines()[directive_lines - 1 :]:
        if not line.endswith("\\"):
            break
        continued += 1
    return (error.lineno or 1) + directive_lines + continued


def _cost(names, blobs, store, written) -> StateCost:
    sizes = {}
    for name, blob in zip(names, blobs, strict=True):
        if name != state.CONTEXT:
            size = len(blob)
            if store is not None:
                size += sum(store.size(digest) for digest in state.buffers(blob))
            sizes[name] = size
    return StateCost(total=sum(sizes.values()), sizes=sizes, written=written)


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


def apply_changes(namespace, changes, live, submitted, buffers) -> None:
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
