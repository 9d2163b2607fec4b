"""What the kernel hands the extension (``_native``) as arguments: plain
frozen records whose attributes the extension reads by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SavedNamespace:
    """The kernel's variables, saved: the notebook's ``identity``, and
    ``names[i]`` saved as ``blobs[i]``."""

    identity: str
    names: list[str]
    blobs: list[bytes]


@dataclass(frozen=True)
class Settling:
    """How conflicts are settled: a ``rule`` (``ask``, ``take-background``,
    ``keep-live``) and the variables chosen one by one."""

    rule: str
    take_background: list[str]
    keep_live: list[str]


@dataclass(frozen=True)
class SessionOptions:
    """How a kernel's native session is made: its ``store``, the
    interpreter and import path of its workers, how many, and Ray's
    dispatcher if it runs on a cluster (``follow_cluster``: as many at once
    as the cluster has CPUs), and the retries of a body that raised."""

    store: str
    python: str
    python_path: list[str]
    workers: int
    ray: Any = None
    follow_cluster: bool = False
    retries: int = 0
