"""The benches' working directory: a fresh temporary one, removed when the
bench exits (a state bench writes gigabytes of checkpoints into it)."""

import atexit
import os
import shutil
import tempfile


def enter_scratch_directory(prefix: str) -> str:
    """Makes a temporary directory the working directory until exit, then
    removes it with all the bench wrote there."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chdir(path)

    def remove() -> None:
        os.chdir(tempfile.gettempdir())
        shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path
