"""Making names durable: a synced file survives a power loss only if its
name, and the name of every directory above it that was just made, was
synced in its directory too (POSIX promises no more; some file systems
keep no more)."""

import os


def sync_directory(directory):
    """Makes the names in ``directory`` durable (fsync of the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Directories whose name this process synced in their parent.
_synced: set[str] = set()


def make_dirs(directory, mode=0o777):
    """``os.makedirs(directory, mode, exist_ok=True)``, each directory
    synced in its parent before anything goes in it: one this process
    makes, and, once per process, one that was there (whoever made it may
    not have synced it yet)."""
    directory = os.path.abspath(directory)
    try:
        os.mkdir(directory, mode)
    except FileExistsError:
        if directory in _synced:
            return
    except FileNotFoundError:
        parent = os.path.dirname(directory)
        if parent == directory:
            raise
        make_dirs(parent, mode)
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            pass
    sync_directory(os.path.dirname(directory))
    _synced.add(directory)
