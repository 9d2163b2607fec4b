"""A persistent worker interpreter of the notebook host.

The Rust host (crate ``pragma-notebook``) starts a few of these and sends
each request over standard input; the answer goes back on the worker's own
copy of standard output. Imports stay loaded between requests, so a body's
``import tensorflow`` is paid once per worker, not once per iteration.

Framing: every message is one JSON header frame followed by as many blob
frames as the header's ``vars`` names; a frame is a 4-byte big-endian
length and that many bytes. A variable travels as ``b"P" + pickle`` or
``b"M" + module name`` (a module is imported again where it is loaded).

Requests: ``{"op": "run", "body", "vars", "iteration_var", "iteration",
"seed", "resident", "dump"}``, ``{"op": "eval", "expr", "vars",
"resident"}`` and ``{"op": "dump", "resident"}``; any request may carry
``"forget": [token, ...]``. Answers: ``{"ok": true, "token", "vars",
"stdout", "stderr"}`` for a run, ``{"ok": true, "score"}`` for an
evaluation, ``{"ok": true, "vars"}`` for a dump, or ``{"ok": false,
"error"}``, ``{"ok": false, "interactive"}``, ``{"ok": false,
"unsaveable": [[name, type], ...]}``.

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
import io
import json
import math
import os
import random
import struct
import sys
import traceback

from pragma_notebook.state import dump, load, never_state

# Namespaces left by runs, by token (see the module docs).
_residents = {}
_next_token = 0

# The protocol's streams (see `main`).
_PROTOCOL_IN = None
_PROTOCOL_OUT = None

# The most a run keeps of each of its streams.
OUTPUT_CAP = 1 << 20


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
    data = b""
    while len(data) < n:
        chunk = _PROTOCOL_IN.read(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_frame():
    (length,) = struct.unpack(">I", read_exactly(4))
    return read_exactly(length)


def write_frames(header, blobs=()):
    frames = [json.dumps(header).encode()] + list(blobs)
    _PROTOCOL_OUT.write(b"".join(struct.pack(">I", len(f)) + f for f in frames))


def namespace(request, blobs):
    return {name: load(blob) for name, blob in zip(request["vars"], blobs)}


def seed(value):
    random.seed(value)
    numpy = sys.modules.get("numpy")
    if numpy is None:
        try:
            import numpy
        except ImportError:
            return
    numpy.random.seed(value % (1 << 32))


def last_error():
    lines = traceback.format_exception_only(*sys.exc_info()[:2])
    return lines[-1].strip() if lines else "the body failed"


class _Capped(io.StringIO):
    def write(self, text):
        if self.tell() < OUTPUT_CAP:
            super().write(text[: OUTPUT_CAP - self.tell()])
        return len(text)


def run(request, blobs):
    global _next_token
    token = request.get("resident")
    if token is not None and token not in _residents:
        return {"ok": False, "gone": True, "error": "this worker no longer holds that state"}, []
    ns = _residents.pop(token) if token is not None else namespace(request, blobs)
    var = request.get("iteration_var")
    if var:
        ns[var] = request["iteration"]
    seed(request["seed"])
    out, err = _Capped(), _Capped()
    saved = builtins.input
    getpass = sys.modules.get("getpass")
    saved_getpass = getpass.getpass if getpass else None
    builtins.input = _no_input
    if getpass:
        getpass.getpass = _no_getpass
    sys.stdin = _NoInput()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(request["body"], "<cell>", "exec"), ns)
    except InteractiveInput as asked:
        return {"ok": False, "interactive": str(asked)}, []
    except BaseException:  # the body's own failure, SystemExit included
        return {
            "ok": False,
            "error": last_error(),
            "stdout": out.getvalue(),
            "stderr": err.getvalue(),
        }, []
    finally:
        builtins.input = saved
        if getpass:
            getpass.getpass = saved_getpass
    if var:
        ns.pop(var, None)
    ns.pop("__builtins__", None)
    if request.get("dump", True):
        names, dumped, unsaveable = saved_vars(ns)
    else:
        names, dumped = [], []
        unsaveable = [[n, type(v).__name__] for n, v in ns.items() if never_state(v)]
    if unsaveable:
        return {"ok": False, "unsaveable": unsaveable}, []
    _next_token += 1
    _residents[_next_token] = ns
    return {
        "ok": True,
        "token": _next_token,
        "vars": names,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
    }, dumped


def saved_vars(ns):
    """Each variable saved: the names, their bytes, and the unsaveable."""
    names, dumped, unsaveable = [], [], []
    for name, value in ns.items():
        try:
            dumped.append(dump(value))
            names.append(name)
        except Exception:
            unsaveable.append([name, type(value).__name__])
    return names, dumped, unsaveable


def dump_resident(request, blobs):
    ns = _residents.get(request["resident"])
    if ns is None:
        return {"ok": False, "gone": True, "error": "this worker no longer holds that state"}, []
    names, dumped, unsaveable = saved_vars(ns)
    if unsaveable:
        return {"ok": False, "unsaveable": unsaveable}, []
    return {"ok": True, "vars": names}, dumped


def evaluate(request, blobs):
    token = request.get("resident")
    var = request.get("iteration_var")
    if token is not None and token not in _residents:
        return {"ok": False, "gone": True, "error": "this worker no longer holds that state"}, []
    try:
        if token is not None:
            ns = _residents[token]  # scored where it is, not copied
        else:
            ns = namespace(request, blobs)
        if var:
            ns[var] = request["iteration"]
        try:
            value = float(eval(compile(request["expr"], "<selection>", "eval"), ns))
        finally:
            if var:
                ns.pop(var, None)
            ns.pop("__builtins__", None)
    except BaseException:
        return {"ok": False, "error": last_error()}, []
    return {"ok": True, "score": "nan" if math.isnan(value) else repr(value)}, []


_HANDLERS = {"run": run, "eval": evaluate, "dump": dump_resident}


def handle_here(header, blobs):
    """Answers one request (JSON text and its blobs) in this interpreter,
    not over the protocol: what a Ray task does in its worker process. The
    namespace a run leaves is not kept here; it goes to the store."""
    request = json.loads(header)
    answer, out = _HANDLERS[request["op"]](request, list(blobs))
    if request["op"] == "run" and answer.get("ok"):
        _residents.pop(answer["token"], None)
    return json.dumps(answer), list(out)


def handle_kept(header, blobs):
    """Answers one request (JSON text and its blobs) in this interpreter, as
    the protocol loop of :func:`main` does, the namespace a run leaves kept
    here: what a worker actor on a Ray cluster does."""
    answer, out = _answer(json.loads(header), list(blobs))
    return json.dumps(answer), list(out)


def _answer(request, blobs):
    """Forgets what the request says to, then answers it."""
    for token in request.get("forget", ()):
        _residents.pop(token, None)
    return _HANDLERS[request["op"]](request, blobs)


def _die_with_parent():
    # A worker outlives its kernel only as an orphan burning CPU on a run
    # nobody takes: when the kernel dies (killed, restarted), so does it.
    import threading
    import time

    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="pragma parent watch", daemon=True).start()


def main():
    global _PROTOCOL_IN, _PROTOCOL_OUT
    _die_with_parent()
    # Bodies print into a buffer per run; the protocol keeps the real streams.
    _PROTOCOL_IN = os.fdopen(os.dup(0), "rb", buffering=0)
    _PROTOCOL_OUT = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    while True:
        try:
            request = json.loads(read_frame())
            blobs = [read_frame() for _ in request.get("vars", [])]
        except EOFError:
            return
        write_frames(*_answer(request, blobs))


if __name__ == "__main__":
    main()
