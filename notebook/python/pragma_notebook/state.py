"""The notebook's state: its namespace as one object graph, saved variable
by variable.

Inline, a cell runs in the notebook's namespace: the functions and classes
it defines read their globals from that namespace, two names may hold one
object, and what the cell does not touch stays as it is. The state keeps
that, so that a cell run in the background means what it means inline:

- **Functions and classes defined in the notebook are bound to the
  namespace they are loaded into**, never to a private copy of the globals
  they read: a function travels with its code, closure and defaults
  (cloudpickle), and its globals are a reference to "the namespace", which
  loading resolves to the worker's during a run and to the notebook's when
  the result is applied.
- **Objects shared between variables stay shared**: each object that a
  variable holds belongs to the first variable (in the namespace's order)
  that holds it; another variable that holds it, or holds something that
  refers to it, saves a reference to that variable by name, and loading
  resolves it to the same object. Variables that refer to each other in a
  cycle, or that hold one object below their top level (two closures over
  one cell, two lists holding one dict no variable names), are saved
  together, as one group. A numpy array that is a view of a variable's
  array is saved as a view of it (its position in that array's memory),
  and loaded as one.
- **A variable's bytes follow its value**, so that an unchanged variable
  saves the same bytes in the kernel and in a worker (the conflict check
  and the store compare bytes): a function's bytes do not include the
  globals it reads, sets are saved in sorted order (their iteration
  order follows each process's hash seed), and equal strings are saved
  as one (loading shares some that were not shared before).
- **Large buffers are saved apart, by content** (see
  :mod:`pragma_notebook.blobs`): the pickle names them.

What pickle cannot keep: a set reachable from two places comes back as
two sets (sets are saved by their sorted items); two numpy arrays that
overlap in memory, neither inside a contiguous array a variable holds,
come back as copies; a shared object of a variable saved as it was loaded
(``#pragma readonly``) is copied in the others.

A saved variable is one of:

- ``b"M" + name``: a module, imported again by name where it is loaded;
- ``b"A" + name``: the same object as the variable ``name`` holds;
- ``b"G" + header + b"\\n" + pickle``: the value, its graph pickled with
  the variables it refers to left as references; ``header`` is JSON:
  ``{"refs": [NAME, ...], "buffers": [DIGEST, ...]}``, the variables it
  refers to and the large buffers it names, in the pickle's order; a
  pickle of :data:`LARGE` bytes or more is kept apart as a buffer is, its
  digest under ``"pickle"``, and the blob ends at the newline;
- ``b"S" + header + b"\\n" + pickle``: a group of variables saved
  together (see above), pickled as one tuple (saved under its first
  member; its ``refs`` name the members, then the variables outside it);
- ``b"E" + [group, index]``: a member of the group saved under ``group``.

Each is signed (``b"T"``, an HMAC-SHA256 of it with this user's key, then
it): loading a pickle runs code, so a variable not signed with the key is
not loaded (:class:`Unauthenticated`, see :mod:`pragma_notebook.signing`).
The large buffers a pickle names are checked against their names, which
are digests of their content.

Open files, sockets, generators and locks are never state.
"""

import enum
import importlib
import io
import pickle
import socket
import sys
import threading
import types

# Bound here: a body may patch its process's `json` module.
from json import dumps as _to_json
from json import loads as _from_json

import cloudpickle
from cloudpickle.cloudpickle import (
    _function_getstate,
    _function_setstate,
    _make_function,
)

from .blobs import LARGE, Blobs, Held, blob_store
from .signing import Unauthenticated, sign, unsigned, verified

__all__ = [
    "CONTEXT",
    "LARGE",
    "Blobs",
    "Held",
    "Unauthenticated",
    "Unsaveable",
    "blob_store",
    "buffers",
    "dump_namespace",
    "load_namespace",
    "never_state",
    "referring",
    "refs",
    "sign",
    "verified",
]

# Values whose identity nobody relies on: never saved as a reference to
# another variable (`x = y = 0` saves two zeros), so that one variable's
# change never shows as a change of another.
_ATOMS = (int, float, complex, str, bytes, bool, type(None), type(Ellipsis), range)

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

# The name under which the kernel's process context travels with the
# variables (a JSON blob: ``cwd``, ``path``, ``environ``): never a
# variable.
CONTEXT = "__pragma_context__"

_ABSENT = object()

# Persistent ids (see `_Pickler.persistent_id`).
_NAMESPACE = ("namespace",)
_VARIABLE = "variable"
_SET = "set"
_FROZENSET = "frozenset"


class Unsaveable(Exception):
    """A value that cannot be saved."""


def never_state(value):
    """Whether ``value`` is of a kind that is never state (a cheap check,
    without pickling)."""
    return isinstance(value, _NEVER_STATE)


def _sorted_items(items):
    """A set's items in an order that does not depend on the process's hash
    seed: sorted where they sort, else by type name and repr."""
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=lambda item: (type(item).__qualname__, repr(item)))


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, with the namespace and the other variables' objects
    left as references, and sets sorted."""

    def __init__(self, file, namespace, owners, root, buffers=None, arrays=None):
        # Large buffers (numpy arrays, ...) go to `buffers`, by content;
        # the pickle names them. Without it, they are in the pickle.
        self.buffers = []
        callback = None
        if buffers is not None:

            def callback(buffer):
                return self._out_of_band(buffer, buffers)

        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=callback)
        self._namespace = namespace
        # A function's globals are pickled as this dict, which cloudpickle
        # makes once per globals and pickler; here it stands for the
        # namespace.
        self._globals: dict[str, object] = {}
        self.globals_ref[id(namespace)] = self._globals
        self._owners = owners
        self._root = root
        self._strings = {}
        self._arrays = arrays
        self.refs = []

    def _out_of_band(self, buffer, buffers):
        try:
            view = buffer.raw()
        except BufferError:  # not contiguous: in the pickle
            return True
        if view.nbytes < LARGE:
            return True
        self.buffers.append(buffers.put(view))
        return False

    def _dynamic_function_reduce(self, func):
        if func.__globals__ is not self._namespace:
            return super()._dynamic_function_reduce(func)
        # Its globals are the namespace it is loaded into: none travel
        # with it (by value they would be a private copy, frozen).
        state, slotstate = _function_getstate(func)
        slotstate["__globals__"] = {}
        newargs = self._function_getnewargs(func)
        return (_make_function, newargs, (state, slotstate), None, None, _function_setstate)

    def reducer_override(self, obj):
        if self._arrays is not None and type(obj) is self._arrays.ndarray:
            base = self._arrays.container(obj)
            if base is not None and base is not self._root:
                # A view of a variable's array: a view of that array
                # again where it is loaded, not a copy.
                offset = _data_address(obj) - _data_address(base)
                return _view_of, (base, offset, obj.shape, obj.strides, obj.dtype)
            strided = _strided(obj)
            if strided is not None:
                return strided
        reduced = super().reducer_override(obj)
        if isinstance(obj, type) and type(reduced) is tuple and len(reduced) > 2:
            # copyreg caches `__slotnames__` on a class once an instance
            # is pickled: not a change of the class.
            state, slotstate = reduced[2]
            if "__slotnames__" in state:
                state = {k: v for k, v in state.items() if k != "__slotnames__"}
                reduced = (*reduced[:2], (state, slotstate), *reduced[3:])
        return reduced

    def persistent_id(self, obj):
        if type(obj) in (str, bytes):
            # Equal strings are saved as one, whether they were one object
            # or not: loading shares some (characters, names set on a
            # class) that were not before, so the bytes would differ.
            return self._strings.setdefault(obj, obj)
        if obj is self._globals:
            return _NAMESPACE
        if isinstance(obj, (set, frozenset)):
            # Sorted, so that the bytes do not follow the hash seed.
            kind = _SET if isinstance(obj, set) else _FROZENSET
            if type(obj) in (set, frozenset):
                return (kind, _sorted_items(obj))
            return None
        owner = self._owners.get(id(obj))
        if owner is None or obj is self._root or owner[1] is not obj:
            return None
        name = owner[0]
        if name not in self.refs:
            self.refs.append(name)
        return (_VARIABLE, name)


def _pickle(value, namespace, owners, buffers, arrays=None):
    """``value`` pickled with the other variables' objects as references
    and its large buffers put in ``buffers``: the framed pickle's header
    (what it refers to), the pickle, and the objects in it whose identity
    matters (id to object)."""
    out = io.BytesIO()
    pickler = _Pickler(out, namespace, owners, value, buffers, arrays)
    pickler.dump(value)
    header = {"refs": pickler.refs}
    if pickler.buffers:
        header["buffers"] = pickler.buffers
    inside = {key: obj for key, (_, obj) in pickler.memo.copy().items() if _has_identity(obj)}
    return header, out.getvalue(), inside


def _has_identity(obj):
    """Whether two places holding ``obj`` must hold one object after
    loading: mutable containers, closures' cells, functions and instances
    saved by value; not what is immutable or saved by reference (classes,
    modules, library functions, enum members, dtypes)."""
    if isinstance(obj, (list, dict, set, bytearray, types.CellType)):
        return True
    if isinstance(
        obj,
        (type, types.ModuleType, types.MethodType, types.BuiltinFunctionType, enum.Enum),
    ):
        return False
    if isinstance(obj, types.FunctionType):
        # Saved by value (a notebook's function, a lambda, a closure):
        # what cloudpickle decides, told cheaply (its own test looks the
        # function up through every loaded module).
        module, name = obj.__module__, obj.__qualname__
        return module in (None, "__main__") or "<" in name or module not in sys.modules
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, numpy.ndarray):
        return True
    return hasattr(obj, "__dict__")


def _data_address(array):
    return array.__array_interface__["data"][0]


def _view_of(base, offset, shape, strides, dtype):
    """A view of the array ``base``: what a view of a variable's array is
    loaded as."""
    return type(base)(shape, dtype, buffer=base, offset=offset, strides=strides)


class _Region:
    """The bytes ``[low, low + size)`` of ``owner``'s memory, as numpy reads
    an array interface (the owner kept alive with them)."""

    def __init__(self, owner, low, size):
        self.owner = owner
        self.__array_interface__ = {
            "data": (low, True),
            "shape": (size,),
            "typestr": "|u1",
            "version": 3,
        }


def _strided(array):
    """A non-contiguous array (a slice such as ``X[:, ::2]``) reduced as the
    same view of a copy of the memory it spans, where that is at most a few
    times its own size: loaded, it has its strides again, so saving it
    again gives the same bytes (numpy's own pickle makes it a contiguous
    copy, which pickles differently: a change the body never made). ``None``
    for other arrays."""
    flags = array.flags
    if flags.c_contiguous or flags.f_contiguous or array.size == 0 or array.dtype.hasobject:
        return None
    low, high = _extent(array)
    if high - low > 4 * array.nbytes + 4096:
        return None  # a sparse slice of a large array: copied as numpy does
    import numpy

    region = numpy.array(_Region(array, low, high - low), copy=True)
    offset = _data_address(array) - low
    return _view_of, (region, offset, array.shape, array.strides, array.dtype)


class _Arrays:
    """The contiguous numpy arrays the variables hold, by the memory they
    live in: to tell which an array pickled is a view of."""

    def __init__(self, numpy, arrays):
        self.ndarray = numpy.ndarray
        self._by_memory: dict[int, list[tuple]] = {}
        for order, array in enumerate(arrays):
            if type(array) is numpy.ndarray and (
                array.flags.c_contiguous or array.flags.f_contiguous
            ):
                low, high = _extent(array)
                if high > low:
                    self._by_memory.setdefault(id(_memory(array, self.ndarray)), []).append(
                        (high - low, -order, low, high, array)
                    )

    def container(self, array):
        """The largest variable's array (the first of equal ones) whose
        memory holds all of ``array``'s, if it is not ``array`` itself."""
        candidates = self._by_memory.get(id(_memory(array, self.ndarray)))
        if not candidates:
            return None
        low, high = _extent(array)
        if high <= low:
            return None
        holding = [c for c in candidates if c[2] <= low and high <= c[3]]
        if not holding:
            return None
        best = max(holding, key=lambda c: c[:2])[4]
        return None if best is array else best


def _memory(array, ndarray):
    """What holds an array's memory: the first object down its ``base``
    chain that is not an array, or the array that owns it."""
    while isinstance(array.base, ndarray):
        array = array.base
    return array if array.base is None else array.base


def _extent(array):
    """The addresses ``[low, high)`` of an array's elements."""
    low = high = _data_address(array)
    if array.size == 0:
        return low, low
    for size, stride in zip(array.shape, array.strides, strict=True):
        if stride < 0:
            low += (size - 1) * stride
        else:
            high += (size - 1) * stride
    return low, high + array.itemsize


def _framed(kind, header, data, buffers=None):
    if buffers is not None and len(data) >= LARGE:
        # A large pickle (a long list of strings, a model's archive) is
        # kept apart by content, as a large buffer is: unchanged, it is
        # neither written nor sent again.
        header = dict(header, pickle=buffers.put(memoryview(data)))
        data = b""
    return kind + _to_json(header).encode() + b"\n" + data


def dump_namespace(namespace, names, buffers=None, given=None):
    """The variables ``names`` of ``namespace`` saved: ``(names, blobs,
    unsaveable)``, ``unsaveable`` being ``(name, type name)`` pairs of the
    variables that cannot be saved (``names`` and ``blobs`` then hold the
    rest). Buffers of :data:`LARGE` bytes or more go to ``buffers`` (a
    :class:`Blobs` or :class:`Held`), by content, where it is given.
    ``given`` (name to bytes) are variables saved already, as they were
    loaded (``#pragma readonly`` ones): taken as they are, not saved
    again, while what refers to them still refers to them by name."""
    given = given or {}
    owners = {}
    for name in names:
        value = namespace[name]
        if not isinstance(value, _ATOMS) and id(value) not in owners:
            owners[id(value)] = (name, value)
    numpy = sys.modules.get("numpy")
    arrays = _Arrays(numpy, [v for _, v in owners.values()]) if numpy is not None else None
    if buffers is not None:
        buffers = _NamedOnce(buffers)
    saved, referred, inside, unsaveable = {}, {}, {}, []
    for name in names:
        value = namespace[name]
        if name in given:
            saved[name], referred[name] = unsigned(given[name]), refs(given[name])
            continue
        try:
            saved[name], referred[name], inside[name] = _dump_one(
                name, value, namespace, owners, buffers, arrays
            )
        except Exception:  # noqa: BLE001 - every failure is reported by name
            unsaveable.append((name, type(value).__name__))
    if unsaveable:
        # A variable that refers to one that cannot be saved cannot be
        # loaded either: it is named too.
        unloadable = {name for name, _ in unsaveable}
        bad = referring(referred, unloadable)
        unsaveable += [
            (name, type(namespace[name]).__name__) for name in names if name in bad - unloadable
        ]
        names = [name for name in names if name not in bad]
    for group in _groups(names, referred, inside):
        if not any(name in given for name in group):
            _dump_group(group, namespace, owners, saved, buffers, arrays)
    return names, [sign(saved[name]) for name in names], unsaveable


class _NamedOnce:
    """A blob store that names each buffer once per save: a variable
    saved again in a group does not hash its data again."""

    def __init__(self, buffers):
        self._buffers = buffers
        self._named = {}

    def put(self, view):
        # Each object named is kept for the save, so that its id stays
        # its own (its content does not change while it is saved).
        key = (id(view.obj), view.nbytes, view.format, view.shape, view.strides)
        if key not in self._named:
            self._named[key] = (self._buffers.put(view), view.obj)
        return self._named[key][0]


def _dump_one(name, value, namespace, owners, buffers, arrays):
    """One variable saved: its bytes, the variables it refers to, and the
    objects in it whose identity matters."""
    if isinstance(value, types.ModuleType):
        return b"M" + value.__name__.encode(), [], {}
    if never_state(value):
        raise Unsaveable(type(value).__name__)
    owner = owners.get(id(value))
    if owner is not None and owner[0] != name:
        return b"A" + owner[0].encode(), [owner[0]], {}
    header, data, inside = _pickle(value, namespace, owners, buffers, arrays)
    return _framed(b"G", header, data, buffers), header["refs"], inside


def _groups(names, referred, inside):
    """The groups of variables saved together, each in the namespace's
    order: those that refer to each other in a cycle, and those that hold
    one object below their top level (two closures over one cell, two
    models sharing a layer)."""
    leader = {name: name for name in names}

    def find(name):
        while leader[name] != name:
            leader[name] = leader[leader[name]]
            name = leader[name]
        return name

    def join(one, other):
        one, other = find(one), find(other)
        if one != other:
            leader[other] = one

    for group in _cycles(names, referred):
        for name in group[1:]:
            join(group[0], name)
    holder: dict[int, str] = {}
    for name in names:
        for key in inside.get(name, ()):
            join(holder.setdefault(key, name), name)
    members: dict[str, list[str]] = {}
    for name in names:
        members.setdefault(find(name), []).append(name)
    return [group for group in members.values() if len(group) > 1]


def _cycles(names, refs):
    """The groups of variables that refer to each other in a cycle
    (strongly connected components of more than one, Tarjan's), each in
    the namespace's order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    order = {name: i for i, name in enumerate(names)}

    def visit(name):
        # Iterative: a long chain of references must not hit the recursion limit.
        work = [(name, iter(refs.get(name, ())))]
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in order:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(refs.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group, key=order.__getitem__))

    for name in names:
        if name not in index:
            visit(name)
    return groups


def _dump_group(group, namespace, owners, saved, buffers, arrays):
    # The group's values are pickled as one tuple, its members' objects
    # within it (not as references); the rest stay references.
    inside = {id(namespace[name]) for name in group}
    outside = {key: owner for key, owner in owners.items() if key not in inside}
    values = tuple(namespace[name] for name in group)
    header, data, _ = _pickle(values, namespace, outside, buffers, arrays)
    header["refs"] = group + header["refs"]
    saved[group[0]] = _framed(b"S", header, data, buffers)
    for i, name in enumerate(group[1:], start=1):
        saved[name] = b"E" + _to_json([group[0], i]).encode()


def refs(blob):
    """The variables a saved variable refers to."""
    blob = unsigned(blob)
    kind = blob[:1]
    if kind == b"A":
        return [blob[1:].decode()]
    if kind in (b"G", b"S"):
        return _header(blob)["refs"]
    if kind == b"E":
        return [_from_json(blob[1:])[0]]
    return []


def referring(refs_by_name, names):
    """``names`` and every name of ``refs_by_name`` (name to the names it
    refers to) that refers to one of them, directly or through others."""
    found = set(names)
    growing = True
    while growing:
        growing = False
        for name, referred in refs_by_name.items():
            if name not in found and any(ref in found for ref in referred):
                found.add(name)
                growing = True
    return found


def buffers(blob):
    """The digests of the large buffers a saved variable names (its
    pickle's too, if that is kept apart)."""
    blob = unsigned(blob)
    if blob[:1] in (b"G", b"S"):
        header = _header(blob)
        return header.get("buffers", []) + ([header["pickle"]] if "pickle" in header else [])
    return []


def _header(blob):
    return _from_json(blob[1 : blob.index(b"\n")])


def _unpickled(blob, namespace, variable, buffers):
    """The value of a framed blob (``G`` or ``S``), its large buffers
    taken from ``buffers``."""
    header = _header(blob)
    data = memoryview(blob)[blob.index(b"\n") + 1 :]
    digests = header.get("buffers", [])
    if (digests or "pickle" in header) and buffers is None:
        raise pickle.UnpicklingError("a saved variable's buffers are in a blob store not given")
    if "pickle" in header:
        data = buffers.get(header["pickle"]).raw()
    taken = [buffers.get(digest) for digest in digests]
    return _Unpickler(io.BytesIO(data), namespace, variable, taken).load()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, namespace, variable, buffers=()):
        super().__init__(file, buffers=buffers)
        self._namespace = namespace
        self._variable = variable

    def persistent_load(self, pid):
        if type(pid) in (str, bytes):
            return pid
        if pid == _NAMESPACE:
            return self._namespace
        kind, value = pid
        if kind == _VARIABLE:
            return self._variable(value)
        if kind == _SET:
            return set(value)
        if kind == _FROZENSET:
            return frozenset(value)
        raise pickle.UnpicklingError(f"unknown reference {pid!r} in a saved variable")


def load_namespace(blobs, namespace, elsewhere=None, buffers=None):
    """Loads the saved variables ``blobs`` (name to bytes) into
    ``namespace`` as one graph: functions are bound to ``namespace``, and
    a reference to a variable is resolved to that variable's object, loaded
    from ``blobs`` or, for a name not there, ``elsewhere(name)``. Large
    buffers come from ``buffers`` (a :class:`Blobs` or :class:`Held`).
    Every variable must be signed with this user's key (see :func:`sign`),
    or nothing is loaded: :class:`Unauthenticated`."""
    blobs = {name: verified(blob, name) for name, blob in blobs.items()}
    loaded: dict[str, object] = {}
    groups: dict[str, tuple] = {}

    def variable(name):
        if name in loaded:
            return loaded[name]
        if name not in blobs:
            if elsewhere is None:
                raise pickle.UnpicklingError(f"a saved variable refers to `{name}`, not saved")
            return elsewhere(name)
        value = _load_one(name, blobs[name], group)
        loaded[name] = value
        return value

    def group(name):
        if name not in groups:
            groups[name] = _unpickled(blobs[name], namespace, variable, buffers)
        return groups[name]

    def _load_one(name, blob, group):
        kind = blob[:1]
        if kind == b"M":
            return importlib.import_module(blob[1:].decode())
        if kind == b"A":
            return variable(blob[1:].decode())
        if kind == b"G":
            return _unpickled(blob, namespace, variable, buffers)
        if kind == b"S":
            return group(name)[0]
        if kind == b"E":
            owner, index = _from_json(blob[1:])
            return group(owner)[index]
        raise pickle.UnpicklingError(f"`{name}` was saved in an unknown format")

    # cloudpickle sets a loaded function's `__builtins__` in its globals:
    # the namespace keeps its own.
    builtins_before = namespace.get("__builtins__", _ABSENT)
    try:
        for name in blobs:
            variable(name)
    finally:
        if builtins_before is _ABSENT:
            namespace.pop("__builtins__", None)
        else:
            namespace["__builtins__"] = builtins_before
        # The loader's functions refer to each other and to the namespace:
        # a cycle the collector would free only later, keeping the
        # namespace and its values alive meanwhile (a worker's forgotten
        # states, a blob's mapping nothing else uses).
        variable = group = _load_one = None  # type: ignore[assignment]  # noqa: F841 - clears the closures' cells
    namespace.update(loaded)
    return loaded
