"""Signatures of saved variables: loading a pickle runs code, so a kernel
or worker loads only what this user's key signed (HMAC-SHA256)."""

import contextlib
import functools
import hashlib
import hmac
import os
import pickle
import secrets
import tempfile

from . import durable


class Unauthenticated(pickle.UnpicklingError):
    """A saved variable not signed with this user's key: someone else
    wrote it (or another key did); loading a pickle runs code, so it is
    not loaded."""


_SIGNED = b"T"
_TAG = 32


def key():
    """This user's key for signing saved variables: ``PRAGMA_KEY`` (hex),
    else the file ``$XDG_CONFIG_HOME/pragma/key`` (``~/.config``), made on
    first use with 32 random bytes, readable by this user only."""
    given = os.environ.get("PRAGMA_KEY")
    if given:
        try:
            return bytes.fromhex(given)
        except ValueError:
            raise ValueError(
                "PRAGMA_KEY is not a key: give 64 hex digits (`python3 -c 'import secrets;"
                " print(secrets.token_hex(32))'`), the same wherever the state is loaded"
            ) from None
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return _key_file(os.path.join(config, "pragma", "key"))


@functools.lru_cache(maxsize=4)
def _key_file(path):
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        durable.make_dirs(os.path.dirname(path), mode=0o700)
        # Whole before it is visible: written beside, then linked into
        # place, so that a process making it at the same time reads one
        # key or the other, never half of one.
        fd, beside = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".key-")
        try:
            with os.fdopen(fd, "wb") as made:
                made.write(secrets.token_bytes(32))
                made.flush()
                os.fsync(made.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(beside, path)
        finally:
            os.unlink(beside)
        # The states it signs are durable: so must its name be, or a power
        # loss would leave them signed with a key that is gone.
        durable.sync_directory(os.path.dirname(path))
    except OSError as error:
        raise OSError(
            f"cannot make the key that signs saved states at {path}: {error}; make that"
            " directory writable, or set PRAGMA_KEY to 64 hex digits"
        ) from None
    return _read_key(path)


def _read_key(path):
    with open(path, "rb") as existing:
        found = existing.read()
    if len(found) < 16:
        raise ValueError(
            f"the key at {path} is too short ({len(found)} bytes): delete it (states it"
            " signed cannot be loaded any more) and a new one is made"
        )
    return found


def _tag(blob):
    return hmac.new(key(), blob, hashlib.sha256).digest()


def sign(blob):
    """``blob`` signed with this user's key (HMAC-SHA256): the same bytes
    for the same blob, so an unchanged variable still compares equal."""
    return _SIGNED + _tag(blob) + blob


def unsigned(blob):
    """``blob`` without its signature, unchecked: for what only reads its
    header (the names it refers to), never for loading."""
    return blob[1 + _TAG :] if blob[:1] == _SIGNED else blob


def verified(blob, name):
    """``blob`` without its signature, once that is checked."""
    if blob[:1] != _SIGNED or not hmac.compare_digest(blob[1 : 1 + _TAG], _tag(blob[1 + _TAG :])):
        raise Unauthenticated(
            f"the saved variable `{name}` is not signed with this user's key"
            " (PRAGMA_KEY or ~/.config/pragma/key): someone else wrote it, or another key"
            " did; it is not loaded, since loading a pickle runs code"
        )
    return blob[1 + _TAG :]
