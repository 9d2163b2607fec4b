"""How a notebook variable is saved, on its own: ``b"P"`` and its pickle
(by cloudpickle, so that functions, lambdas and classes defined in the
notebook travel by value), or ``b"M"`` and a module's name,
imported again where it is loaded. Open files, sockets, generators and
locks are never state.
"""

import importlib
import io
import pickle
import socket
import threading
import types

try:  # Functions, lambdas and classes defined in the notebook.
    import cloudpickle
except ImportError:  # pragma: no cover - pickle alone then
    cloudpickle = None


def load(blob):
    kind, data = blob[:1], blob[1:]
    if kind == b"M":
        return importlib.import_module(data.decode())
    return pickle.loads(data)


# What is never state, whatever a pickler could make of it: open files,
# sockets, generators, locks (cloudpickle would save a file's contents).
_NEVER_STATE = (
    io.IOBase,
    socket.socket,
    types.GeneratorType,
    types.CoroutineType,
    type(threading.Lock()),
    type(threading.RLock()),
)


class Unsaveable(Exception):
    """A value that cannot be saved."""


def never_state(value):
    """Whether ``value`` is of a kind that is never state (a cheap check,
    without pickling)."""
    return isinstance(value, _NEVER_STATE)


def dump(value):
    if isinstance(value, types.ModuleType):
        return b"M" + value.__name__.encode()
    if never_state(value):
        raise Unsaveable(type(value).__name__)
    # cloudpickle saves what the notebook defined (in `__main__`: functions,
    # lambdas, classes, and values that hold them) by value, which plain
    # pickle would save as a reference that no worker can resolve; for the
    # rest it is pickle.
    pickler = cloudpickle if cloudpickle is not None else pickle
    return b"P" + pickler.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
