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


def make_dirs(directory, mode=0o777):
    """``os.makedirs(directory, mode, exist_ok=True)``, each directory it
    makes synced in its parent before anything goes in it. An existing
    directory costs one call."""
    try:
        os.mkdir(directory, mode)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(directory))
        if parent == directory:
            raise
        make_dirs(parent, mode)
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            return
    sync_directory(os.path.dirname(os.path.abspath(directory)))
