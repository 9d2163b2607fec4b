"""A persistent worker interpreter of the notebook host.

The Rust host (crate ``pragma-notebook``) starts a few of these and sends
each request over standard input; the answer goes back on the worker's own
copy of standard output. Imports stay loaded between requests, so a body's
``import tensorflow`` is paid once per worker, not once per iteration.

Framing: every message is one JSON header frame followed by as many blob
frames as the header's ``vars`` names; a frame is a 4-byte big-endian
length and that many bytes. Variables travel as :mod:`pragma_notebook.state`
saves them (the namespace as one graph, variable by variable), with the
kernel's process context under :data:`CONTEXT`.

A body runs as it would in the notebook: in a module ``__main__`` of its
own (so that what it defines is ``__main__.NAME``, and ``if __name__ ==
"__main__":`` holds), in the kernel's working directory, with its
``sys.path`` and environment as they were at submission; after the run the
worker's own are restored, so one operation's changes do not reach the
next. The iteration variable is set for the run only: a variable of that
name that the namespace had comes back, and one the body assigned stays.

Requests: ``{"op": "run", "body", "vars", "iteration_var", "iteration",
"seed", "resident", "dump"}``, ``{"op": "eval", "expr", "vars",
"resident"}``, ``{"op": "dump", "resident"}``, ``{"op": "imported"}``
(answered ``{"ok": true, "modules", "blobs"}``: the libraries imported
since the start, the data blobs checked) and ``{"op": "preload",
"modules", "blobs"}``; any request may carry
``"forget": [token, ...]``. Answers: ``{"ok": true, "token", "vars",
"stdout", "stderr"}`` for a run, ``{"ok": true, "score"}`` for an
evaluation, ``{"ok": true, "vars"}`` for a dump, or ``{"ok": false,
"error"}``, ``{"ok": false, "interactive"}``, ``{"ok": false,
"unsaveable": [[name, type], ...]}``.

Output: what a run's body writes to ``sys.stdout`` and ``sys.stderr``
(warnings included) and, in a worker process of the pool, to file
descriptors 1 and 2 (C code, subprocesses) comes back as the answer's
``"stdout"`` and ``"stderr"``, in the order written (by lines). Outside runs
(imports, start-up, selection expressions) descriptors 1 and 2 are the
worker's standard error, which the host points at the worker's log: never
the kernel's, whose output shows in whatever cell runs at the time.

Resident namespaces: the namespace a run leaves stays here under the
answer's ``token``, so the next iteration of a ``repeat`` runs on it
(``"resident": token``, consuming it) without the namespace travelling or
being pickled. A run saves (``"dump": true``) only where the executor
keeps the state: a candidate, a checkpoint; between checkpoints only what
is never state (open files, sockets, generators, locks) is looked for. The
host forgets a token once no state refers to it.
"""

import builtins
import contextlib
import functools
import importlib
import io
import math
import os
import random
import re
import struct
import sys
import sysconfig
import tempfile
import threading
import traceback
import types

# Bound here: a body may patch its process's `json` module.
from json import dumps as _to_json
from json import loads as _from_json
from typing import Any

from pragma_notebook.blobs import blob_stores
from pragma_notebook.state import (
    CONTEXT,
    blob_store,
    dump_namespace,
    load_namespace,
    never_state,
    verified,
)
from pragma_notebook.syntax import python_source

# Namespaces left by runs, by token (see the module docs).
_residents: dict[int, "_Resident"] = {}
_next_token = 0

# The protocol's streams (set by `main`).
_PROTOCOL_IN: Any = None
_PROTOCOL_OUT: Any = None

# The most a run keeps of each of its streams.
OUTPUT_CAP = 1 << 20

# Whether a run captures what is written to file descriptors 1 and 2 while
# its body runs (by C code, by subprocesses), with what it prints: in a
# worker process of the pool (set by `main`), whose own descriptors go to
# its log; not in a Ray worker's process, where Ray's threads write there.
_CAPTURE_FDS = False


class InteractiveInput(Exception):
    """A body asked for interactive input."""


class _NoInput(io.TextIOBase):
    """Standard input for bodies: reading it stops the run."""

    def readable(self):
        return True

    def read(self, size=-1):
        raise InteractiveInput("the body read sys.stdin")

    def readline(self, size=-1):
        raise InteractiveInput("the body read sys.stdin")


def _no_input(*args, **kwargs):
    raise InteractiveInput("input() was called")


def _no_getpass(*args, **kwargs):
    raise InteractiveInput("getpass() was called")


def read_exactly(n):
    # Into one buffer: growing bytes by `+=` copies it again at each chunk.
    data = bytearray(n)
    view = memoryview(data)
    done = 0
    while done < n:
        got = _PROTOCOL_IN.readinto(view[done:])
        if not got:
            raise EOFError
        done += got
    return data


def read_frame():
    (length,) = struct.unpack(">I", read_exactly(4))
    return read_exactly(length)


def write_frames(header, blobs=()):
    frames = [_to_json(header).encode()] + list(blobs)
    _PROTOCOL_OUT.write(b"".join(struct.pack(">I", len(f)) + f for f in frames))


class _Resident:
    """A namespace a run left, with the module ``__main__`` it is the
    dictionary of, the kernel's process context it runs in, and where its
    large buffers are saved (None: in its pickles)."""

    def __init__(self, module, context):
        self.module = module
        # As it came (signed), to send back as it came.
        self.context = context
        settings = _settings_of(context)
        self.settings = settings
        root = settings.get("blobs")
        self.blobs = _blobs(root, settings.get("blob_cache")) if root else None
        # What the body only reads (`#pragma readonly`): name to the
        # object loaded and its saved bytes, never saved again.
        self.readonly_names = settings.get("readonly", [])
        self.readonly = {}

    def rebound(self):
        """The read-only names the body bound to other objects."""
        return [n for n, (value, _) in self.readonly.items() if self.ns.get(n) is not value]

    @property
    def ns(self):
        return self.module.__dict__


# The process contexts met, by their signed bytes: their settings, each
# checked and read once (an operation's iterations all carry the same).
_contexts: dict[bytes, dict[str, Any]] = {}


def _settings_of(context):
    """The settings of the signed process context ``context`` (none:
    ``{}``), read once for all the runs that carry the same bytes; their
    ``"environ"`` is the whole environment of a run here."""
    if not context:
        return {}
    context = bytes(context)
    settings = _contexts.get(context)
    if settings is None:
        settings = _from_json(verified(context, CONTEXT))
        if "environ" in settings:
            settings["environ"] = _environ_here(settings["environ"])
        if len(_contexts) >= 8:
            _contexts.clear()
        _contexts[context] = settings
    return settings


def namespace(request, blobs):
    """The request's variables loaded into a new module ``__main__``, as
    one graph."""
    saved = dict(zip(request["vars"], blobs, strict=True))
    context = saved.pop(CONTEXT, None)
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    resident = _Resident(module, context)
    load_namespace(saved, module.__dict__, buffers=resident.blobs)
    resident.readonly = {
        name: (module.__dict__[name], saved[name])
        for name in resident.readonly_names
        if name in saved
    }
    return resident


def _blobs(root, cache):
    """The blob store of ``root`` as a worker uses it: keeping its
    mappings from one load to the next (this process serves one
    operation)."""
    store = blob_store(root, cache)
    store.keep_mappings()
    return store


def state_names(ns):
    """The names of a namespace that are state: not ``__dunder__`` ones."""
    return [name for name in ns if not name.startswith("__")]


# What a worker keeps of its own whatever the kernel had: what Ray sets
# for a task (its cluster, the GPUs it was given).
_OWN_ONLY = re.compile(r"^(RAY_|CUDA_VISIBLE_DEVICES$|ROCR_VISIBLE_DEVICES$)")

# Where the host keeps the worker's log, `KERNEL-WORKER.err` (the process
# ids): its own output, outside runs. Not the bodies' business.
_LOGS = os.environ.pop("PRAGMA_WORKER_LOGS", None)

# The worker's own process state, restored after each run.
_OWN_CWD = os.getcwd()
_OWN_PATH = list(sys.path)
_OWN_ENVIRON = dict(os.environ)
# Whether `os.environ` keeps the environment as bytes (POSIX).
_BYTES_ENVIRON = os.name == "posix" and isinstance(getattr(os.environ, "_data", None), dict)


@contextlib.contextmanager
def _as_in_kernel(resident):
    """Runs as the kernel did at submission: its working directory,
    ``sys.path`` and environment (a worker's own variables kept where the
    kernel has none of that name), the namespace as ``__main__``; then the
    worker's own again."""
    context = resident.settings
    saved_main = sys.modules.get("__main__")
    try:
        if "environ" in context:
            _make_environ(context["environ"])
        if "path" in context:
            sys.path[:] = context["path"] + [p for p in _OWN_PATH if p not in context["path"]]
        if "cwd" in context:
            with contextlib.suppress(OSError):  # not on this machine: a Ray node
                os.chdir(context["cwd"])
        sys.modules["__main__"] = resident.module
        yield
    finally:
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        with contextlib.suppress(OSError):
            os.chdir(_OWN_CWD)
        sys.path[:] = _OWN_PATH
        _make_environ(_OWN_STORED)


def _environ_here(kernel):
    """The environment a run has: the kernel's at submission (``kernel``),
    with the worker's own variables where the kernel has none of that
    name, and those of :data:`_OWN_ONLY` always the worker's."""
    wanted = dict(_OWN_ENVIRON)
    wanted.update((n, v) for n, v in kernel.items() if not _OWN_ONLY.match(n))
    return _as_stored(wanted)


def _as_stored(environ):
    """``environ`` as :func:`_environ_now` reads the environment."""
    if not _BYTES_ENVIRON:
        return environ
    return {os.fsencode(name): os.fsencode(value) for name, value in environ.items()}


_OWN_STORED = _as_stored(_OWN_ENVIRON)


def _make_environ(wanted):
    """Makes ``os.environ`` ``wanted``, setting only what differs: setting
    every variable (a ``putenv`` each), or even reading each through the
    mapping, cost more than the run of a short body."""
    current = _environ_now()
    if current == wanted:
        return
    for name in current.keys() - wanted.keys():
        os.environ.pop(_decoded(name), None)
    for name, value in wanted.items() - current.items():
        os.environ[_decoded(name)] = _decoded(value)


def _environ_now():
    """The environment as :func:`_environ_here` gives one: on POSIX,
    ``os.environ``'s own dictionary of bytes (CPython's since 3.2), copied
    whole at once; elsewhere its variables."""
    data = getattr(os.environ, "_data", None)
    if _BYTES_ENVIRON and isinstance(data, dict):
        return dict(data)
    return dict(os.environ)


def _decoded(name):
    return os.fsdecode(name) if _BYTES_ENVIRON else name


_ABSENT = object()


_shell = None


def _ipython_shell():
    """An IPython shell of this worker (made once, without a history
    file): what ``get_ipython()`` gives a body."""
    global _shell
    if _shell is None:
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.enabled = False
        _shell = InteractiveShell.instance(config=config)
    return _shell


@contextlib.contextmanager
def _ipython_in(resident):
    """``get_ipython()`` and ``display()`` for a run, as in the kernel: the
    shell runs magics and shell commands in the run's namespace, and
    ``display`` prints what it shows into the run's output."""
    saved = {name: getattr(builtins, name, _ABSENT) for name in ("get_ipython", "display")}

    def get_ipython():
        shell = _ipython_shell()
        shell.user_module = resident.module
        shell.user_ns = resident.ns
        return shell

    def display(*objects, **options):
        try:
            from IPython.display import display as shown
        except ImportError:
            print(*objects)
            return None
        return shown(*objects, **options)

    setattr(builtins, "get_ipython", get_ipython)  # noqa: B010 - not an attribute builtins declares
    if saved["display"] is _ABSENT:
        setattr(builtins, "display", display)  # noqa: B010
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is _ABSENT:
                with contextlib.suppress(AttributeError):
                    delattr(builtins, name)
            else:
                setattr(builtins, name, value)


@contextlib.contextmanager
def _iteration_variable(ns, var, iteration):
    """Sets the iteration variable for a run; after it, a variable of that
    name that the namespace had comes back, unless the run assigned its
    own."""
    if not var:
        yield
        return
    before = ns.get(var, _ABSENT)
    ns[var] = iteration
    try:
        yield
    finally:
        if ns.get(var, _ABSENT) is iteration:
            if before is _ABSENT:
                del ns[var]
            else:
                ns[var] = before


def seed(value):
    random.seed(value)
    numpy = sys.modules.get("numpy")
    if numpy is None:
        try:
            import numpy as imported
        except ImportError:
            return
        numpy = imported
    numpy.random.seed(value % (1 << 32))


def last_error():
    lines = traceback.format_exception_only(*sys.exc_info()[:2])
    return lines[-1].strip() if lines else "the body failed"


class _Capped(io.StringIO):
    def write(self, text):
        if self.tell() < OUTPUT_CAP:
            super().write(text[: OUTPUT_CAP - self.tell()])
        return len(text)


class _Output:
    """What a run wrote to its standard output and error, once it ended."""

    stdout = ""
    stderr = ""


class _FdStream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of a body: text written to the file
    descriptor a line at a time, so that it keeps its order with what C
    code and subprocesses write there; at most :data:`OUTPUT_CAP` bytes
    while the run lasts (a thread may write on after it: to the worker's
    log, uncapped)."""

    encoding = "utf-8"

    def __init__(self, fd):
        super().__init__()
        self._fd = fd
        self._left: int | None = OUTPUT_CAP
        self._pending: list[str] = []
        # Re-entrant: a signal handler may print in the middle of a write.
        self._lock = threading.RLock()
        self.buffer = open(fd, "wb", buffering=0, closefd=False)

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._fd

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._pending.append(text)
            if "\n" in text or len(self._pending) > 256:
                self._write_pending()
        return len(text)

    def flush(self):
        with self._lock:
            self._write_pending()

    def uncapped(self):
        """Writes all that comes from now on (the run is over)."""
        self.flush()
        self._left = None

    def _write_pending(self):
        data = "".join(self._pending).encode("utf-8", "backslashreplace")
        self._pending.clear()
        if self._left is not None:
            data = data[: self._left]
            self._left -= len(data)
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except OSError:
                return


_libc: Any = None


def _flush_c_streams():
    """Writes out what C code left in its ``stdio`` buffers (``printf``:
    buffered in full where standard output is a file), to the descriptor
    it is meant for as it is now."""
    global _libc
    if _libc is False:
        return
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None)
        _libc.fflush(None)
    except Exception:  # no C library to speak of: nothing buffered there either
        _libc = False


@contextlib.contextmanager
def _captured(output):
    """Captures what the code run inside writes to ``sys.stdout`` and
    ``sys.stderr`` (warnings, tracebacks of threads included) and, in a
    worker process of the pool, to file descriptors 1 and 2, into
    ``output``."""
    if not _CAPTURE_FDS:
        out, err = _Capped(), _Capped()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                yield
        finally:
            output.stdout, output.stderr = out.getvalue(), err.getvalue()
        return
    # Fresh files each run: a subprocess a body left running writes on to
    # its run's, not into the next run's output.
    files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    streams = [_FdStream(1), _FdStream(2)]
    own = [os.dup(1), os.dup(2)]
    for worker_stream in (sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if worker_stream is not None:
                worker_stream.flush()
    _flush_c_streams()
    try:
        os.dup2(files[0].fileno(), 1)
        os.dup2(files[1].fileno(), 2)
        with contextlib.redirect_stdout(streams[0]), contextlib.redirect_stderr(streams[1]):
            yield
    finally:
        for stream in streams:
            stream.flush()
        _flush_c_streams()
        os.dup2(own[0], 1)
        os.dup2(own[1], 2)
        for fd in own:
            os.close(fd)
        for stream in streams:
            stream.uncapped()
        texts = []
        for file in files:
            with file:
                file.seek(0)
                texts.append(file.read(OUTPUT_CAP).decode("utf-8", "replace"))
        output.stdout, output.stderr = texts


@functools.lru_cache(maxsize=64)
def _compiled(body):
    """A body compiled as Python runs it, once for the iterations that run
    it (a code object is never changed by running it)."""
    return compile(python_source(body), "<cell>", "exec")


@functools.lru_cache(maxsize=64)
def _compiled_expression(expr):
    """A selection expression compiled, once for the states it scores."""
    return compile(expr, "<selection>", "eval")


def _gone():
    return {"ok": False, "gone": True, "error": "this worker no longer holds that state"}, []


def run(request, blobs):
    global _next_token
    token = request.get("resident")
    if token is not None and token not in _residents:
        return _gone()
    try:
        resident = _residents.pop(token) if token is not None else namespace(request, blobs)
    except Exception:
        return {"ok": False, "error": f"cannot load the state: {last_error()}"}, []
    ns = resident.ns
    seed(request["seed"])
    output = _Output()
    saved = builtins.input
    getpass = sys.modules.get("getpass")
    saved_getpass = getpass.getpass if getpass else None
    builtins.input = _no_input
    if getpass:
        setattr(getpass, "getpass", _no_getpass)  # noqa: B010 - a module's function replaced
    sys.stdin = _NoInput()
    try:
        with (
            _captured(output),
            _as_in_kernel(resident),
            _ipython_in(resident),
            _iteration_variable(ns, request.get("iteration_var"), request.get("iteration")),
        ):
            try:
                exec(_compiled(request["body"]), ns)
            finally:
                _exit_if_forked()
    except InteractiveInput as asked:
        return {"ok": False, "interactive": str(asked)}, []
    except BaseException:  # the body's own failure, SystemExit included
        return {
            "ok": False,
            "error": last_error(),
            "stdout": output.stdout,
            "stderr": output.stderr,
        }, []
    finally:
        builtins.input = saved
        if getpass:
            setattr(getpass, "getpass", saved_getpass)  # noqa: B010
    rebound = resident.rebound()
    if rebound:
        return {
            "ok": False,
            "error": f"the body binds or deletes {', '.join(rebound)}, but `#pragma readonly`"
            " says it only reads them: drop them from that line (then what the body leaves in"
            " them is saved back)",
            "stdout": output.stdout,
            "stderr": output.stderr,
        }, []
    if request.get("dump", True):
        names, dumped, unsaveable = saved_vars(resident)
    else:
        names, dumped = [], []
        unsaveable = [[n, type(ns[n]).__name__] for n in state_names(ns) if never_state(ns[n])]
    if unsaveable:
        return {"ok": False, "unsaveable": unsaveable}, []
    _next_token += 1
    _residents[_next_token] = resident
    return {
        "ok": True,
        "token": _next_token,
        "vars": names,
        "stdout": output.stdout,
        "stderr": output.stderr,
    }, dumped


def saved_vars(resident):
    """The namespace saved: the names, their bytes (the process context
    with them, as it came), and the unsaveable as ``[name, type]``."""
    given = {name: blob for name, (_, blob) in resident.readonly.items()}
    names, dumped, unsaveable = dump_namespace(
        resident.ns, state_names(resident.ns), resident.blobs, given
    )
    if resident.context is not None:
        names.append(CONTEXT)
        dumped.append(resident.context)
    return names, dumped, [list(pair) for pair in unsaveable]


def dump_resident(request, blobs):
    resident = _residents.get(request["resident"])
    if resident is None:
        return _gone()
    names, dumped, unsaveable = saved_vars(resident)
    if unsaveable:
        return {"ok": False, "unsaveable": unsaveable}, []
    return {"ok": True, "vars": names}, dumped


def evaluate(request, blobs):
    token = request.get("resident")
    if token is not None and token not in _residents:
        return _gone()
    try:
        # A resident state is scored where it is, not copied.
        resident = _residents[token] if token is not None else namespace(request, blobs)
        with (
            _as_in_kernel(resident),
            _iteration_variable(
                resident.ns, request.get("iteration_var"), request.get("iteration")
            ),
        ):
            value = eval(_compiled_expression(request["expr"]), resident.ns)
        _exit_if_forked()
        value = _score(value)
    except BaseException:
        _exit_if_forked()
        return {"ok": False, "error": last_error()}, []
    return {"ok": True, "score": "nan" if math.isnan(value) else repr(value)}, []


def imported_libraries(request, blobs):
    """The libraries (installed packages, the standard library) this
    process imported since it started, and the data blobs it checked:
    what a fresh worker for the operations after this one takes up
    ahead."""
    roots = sorted({name.partition(".")[0] for name in list(sys.modules) if name not in _AT_START})
    return {
        "ok": True,
        "modules": [r for r in roots if _is_library(sys.modules.get(r))],
        "blobs": blob_stores(),
    }, []


def _is_library(module):
    # Not the user's own modules (a file beside the notebook): importing
    # one runs their code, which only a body may ask for.
    file = getattr(module, "__file__", None)
    if not file:
        return False
    paths = sysconfig.get_paths()
    places = {paths[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    return any(os.path.abspath(file).startswith(place + os.sep) for place in places)


def preload(request, blobs):
    """Imports libraries, and checks data blobs against their names, ahead
    of the operation this fresh process will serve (see
    :func:`imported_libraries`); what fails is left to the body or the
    load."""
    for name in request.get("modules") or ():
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    for root, cache, digests in request.get("blobs") or ():
        with contextlib.suppress(Exception):
            store = _blobs(root, cache)
            for digest in digests:
                store.warm(digest)
    return {"ok": True}, []


_HANDLERS = {
    "run": run,
    "eval": evaluate,
    "dump": dump_resident,
    "imported": imported_libraries,
    "preload": preload,
}


# The namespace the last run here left (its token), with the fingerprint
# of what it was saved as: kept for the scoring of that state, which
# comes next.
_left_here: list[tuple[int, dict[str, tuple[int, int]]]] = []


def _fingerprint(names, blobs):
    """Saved variables, each as its length and hash: what tells the state
    a run left when it comes back to be scored, without keeping a copy of
    its bytes."""
    return {name: (len(blob), hash(bytes(blob))) for name, blob in zip(names, blobs, strict=True)}


def handle_here(header, blobs):
    """Answers one request (JSON text and its blobs) in this interpreter,
    not over the protocol: what a Ray task does in its worker process. The
    namespace a run leaves goes to the store, not kept here beyond the
    request that scores it."""
    request = _from_json(header)
    blobs = list(blobs)
    left = _left_here.pop() if _left_here else None
    try:
        if (
            left is not None
            and request["op"] == "eval"
            and left[1] == _fingerprint(request["vars"], blobs)
        ):
            # The state the run just left, scored where it is (as a pool's
            # worker scores it), not loaded again from its bytes.
            request["resident"], blobs = left[0], []
        answer, out = _HANDLERS[request["op"]](request, blobs)
    finally:
        if left is not None:
            _residents.pop(left[0], None)
    if request["op"] == "run" and answer.get("ok"):
        _left_here.append((answer["token"], _fingerprint(answer["vars"], out)))
    return _to_json(answer), list(out)


def forget_here():
    """Lets go of the namespace the last run here left (its job ended)."""
    while _left_here:
        _residents.pop(_left_here.pop()[0], None)


def handle_kept(header, blobs):
    """Answers one request (JSON text and its blobs) in this interpreter, as
    the protocol loop of :func:`main` does, the namespace a run leaves kept
    here: what a worker actor on a Ray cluster does."""
    answer, out = _answer(_from_json(header), list(blobs))
    return _to_json(answer), list(out)


def _answer(request, blobs):
    """Forgets what the request says to, then answers it."""
    for token in request.get("forget", ()):
        _residents.pop(token, None)
    return _HANDLERS[request["op"]](request, blobs)


def _drop_empty_log(parent):
    """Removes the worker's log if nothing was written to it: only logs
    with something in them are worth keeping."""
    if _LOGS is None:
        return
    path = os.path.join(_LOGS, f"{parent}-{os.getpid()}.err")
    with contextlib.suppress(OSError):
        log = os.stat(path)
        if log.st_size == 0 and os.path.samestat(log, os.fstat(2)):
            os.remove(path)


def _die_with_parent():
    # A worker outlives its kernel only as an orphan burning CPU on a run
    # nobody takes: when the kernel dies (killed, restarted), so does it.
    import threading
    import time

    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        _drop_empty_log(parent)
        os._exit(1)

    threading.Thread(target=watch, name="pragma parent watch", daemon=True).start()


def _score(value):
    """A selection expression's value as a score: a number (numpy's
    included), not text that reads as one."""
    if isinstance(value, (str, bytes, bytearray)) or value is None:
        raise TypeError(f"the score is {type(value).__name__} {value!r}, not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"the score is a {type(value).__name__}, not a number") from None


# The worker's own process: a child a body forks never answers for it.
_WORKER_PID = os.getpid()


def _exit_if_forked():
    """Ends a process a body forked, once it is back here: only the worker
    answers the protocol."""
    if os.getpid() != _WORKER_PID:
        os._exit(0)


def main():
    global _PROTOCOL_IN, _PROTOCOL_OUT, _CAPTURE_FDS
    _die_with_parent()
    # The protocol keeps the real streams. Descriptors 1 and 2 are the
    # worker's log (its standard error, which the host points there);
    # each run captures them for its body (see `_captured`).
    _PROTOCOL_IN = os.fdopen(os.dup(0), "rb", buffering=0)
    _PROTOCOL_OUT = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    _CAPTURE_FDS = True
    parent = os.getppid()
    while True:
        try:
            request = _from_json(read_frame())
            blobs = [read_frame() for _ in request.get("vars", [])]
        except EOFError:
            # The host let go of this worker, or ended without a word.
            _drop_empty_log(parent)
            return
        write_frames(*_answer(request, blobs))


# What was imported before any request: the worker's own.
_AT_START = set(sys.modules)

if __name__ == "__main__":
    main()
