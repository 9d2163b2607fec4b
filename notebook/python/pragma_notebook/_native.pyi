"""Types of the extension module (built from ``notebook/src`` by maturin):
the lifecycle library, driven from the kernel."""

from collections.abc import Callable
from typing import Any, Literal, final

from .native_args import SavedNamespace, SessionOptions, Settling

@final
class OperationProgress:
    """Where an operation stands (:meth:`NativeSession.status`)."""

    @property
    def done(self) -> int: ...
    @property
    def finished(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def phase(self) -> str: ...
    @property
    def total(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def best_iteration(self) -> int | None: ...
    @property
    def best_score(self) -> float | None: ...
    @property
    def ended(self) -> bool: ...

@final
class ParsedCell:
    """A ``#pragma`` cell, parsed (:func:`parse_cell`)."""

    @property
    def expr(self) -> str | None: ...
    @property
    def body(self) -> str: ...
    @property
    def readonly(self) -> list[str]: ...
    @property
    def name(self) -> str: ...

def parse_cell(cell: str, name: str) -> ParsedCell:
    """Parses a ``#pragma`` cell, or raises ``ValueError`` saying what is
    wrong, where, and how to fix it."""

# What makes an operation's changes in the namespace: (name, saved value
# or None to delete) pairs, all or none.
Apply = Callable[[list[tuple[str, bytes | None]]], None]

class NativeSession:
    """The lifecycle of one kernel's operations on one store."""

    def __init__(self, options: SessionOptions) -> None:
        """Raises :class:`StoreError` if the store cannot be used."""
    def logs_dir(self) -> str: ...
    def submit(self, cell: ParsedCell, live: SavedNamespace) -> Submitted: ...
    def unfinished(self, identity: str) -> list[str]: ...
    def resume(self, op: str) -> None: ...
    def status(self, op: str) -> OperationProgress:
        """Raises :class:`UnknownOperation` for an operation not of this
        kernel."""
    def wait(self, op: str, timeout: float | None = None) -> bool: ...
    def report_svg(self, op: str) -> str: ...
    def stored_variables(self) -> list[bytes]: ...
    def cancel(self, op: str) -> None: ...
    def extend(self, op: str, more: int, live: SavedNamespace) -> str:
        """Runs ``more`` iterations beyond the end of ``op``, which
        succeeded and was applied, against ``live`` (the variables now)."""
    def suspend(self, op: str, grace_seconds: float) -> None:
        """A preemption notice: nothing new starts, what runs has
        ``grace_seconds`` to finish, a repeat checkpoints its last finished
        iteration; it ends suspended and a later kernel resumes it."""
    def finish(self, op: str, live: SavedNamespace, settling: Settling, apply: Apply) -> Finished:
        """Settles and applies ``op``'s result: its summary and the names
        applied. Raises :class:`NotEnded` if it has not ended, or was
        finished already."""
    def changed_names(self, op: str) -> list[str] | None: ...
    def apply_kept(
        self, op: str, live: SavedNamespace, settling: Settling, apply: Apply
    ) -> Settled: ...
    def kept_values(self, op: str, names: list[str]) -> list[bytes | None]:
        """The saved values of ``names`` in ``op``'s kept result (``None``
        where it has none, or nothing is kept)."""

@final
class OperationUsage:
    """What an operation consumed."""

    @property
    def worker_seconds(self) -> float: ...
    @property
    def iterations_run(self) -> int: ...
    @property
    def work_lost(self) -> int: ...
    @property
    def bytes_checkpointed(self) -> int: ...

@final
class OperationSummary:
    """How an operation ended and what was applied."""

    @property
    def op(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def best_iteration(self) -> int | None: ...
    @property
    def best_score(self) -> float | None: ...
    @property
    def conflicts(self) -> list[str]: ...
    @property
    def failed_iterations(self) -> list[FailedIteration]:
        """Each iteration that failed for good, with its last error."""
    @property
    def usage(self) -> OperationUsage: ...
    @property
    def apply_error(self) -> str | None: ...
    @property
    def stopped_early(self) -> str | None:
        """Why a stop rule (``--patience``, ``--target``) ended it early."""

@final
class FailedIteration:
    """An iteration that failed for good."""

    @property
    def iteration(self) -> int: ...
    @property
    def error(self) -> str:
        """Its last error."""

@final
class Submitted:
    """What ``NativeSession.submit`` did."""

    @property
    def op(self) -> str: ...
    @property
    def how(self) -> Literal["started", "resumed", "running"]: ...

@final
class Finished:
    """What ``NativeSession.finish`` did."""

    @property
    def summary(self) -> OperationSummary: ...
    @property
    def applied(self) -> list[str]: ...

@final
class Settled:
    """What ``NativeSession.apply_kept`` did: the summary once nothing is
    left to settle, else ``None``."""

    @property
    def summary(self) -> OperationSummary | None: ...
    @property
    def applied(self) -> list[str]: ...

@final
class StoredBlob:
    """A blob in the bucket."""

    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def age_seconds(self) -> float: ...

class UnknownOperation(ValueError):
    """The operation is not one of this kernel's."""

class NotEnded(ValueError):
    """The operation has not ended, or it was finished already."""

class StoreError(ValueError):
    """The store cannot be used as given."""

class OperationError(RuntimeError):
    """An operation could not be started, resumed, extended or applied."""

class AlreadyRunning(OperationError):
    """The same cell on the same variables runs already, elsewhere."""

class BucketBlobs:
    """The data blobs of a bucket store (``s3://BUCKET/PREFIX``)."""

    def __init__(self, url: str) -> None: ...
    def head(self, digest: str) -> StoredBlob | None:
        """The blob as the bucket has it, or None."""
    def upload(self, digest: str, path: str) -> None: ...
    def download(self, digest: str, path: str) -> None: ...
    def list(self) -> list[StoredBlob]:
        """Every blob of the bucket."""
    def delete(self, digest: str) -> None: ...

def job_key(spec: str) -> str:
    """What a job is, whichever start of it (its operation, iteration and
    input), read from its spec (JSON)."""

def run_remote_job(spec: str, store: str) -> tuple[str, bytes | None]:
    """Runs a job spec (JSON) in this process (a Ray worker): its report
    (JSON) and the resulting state's snapshot."""

def ray_backend_conformance(dispatcher: Any, capacity: int, store: str) -> str | None:
    """The executor's backend conformance suite against a Ray backend: the
    problem found, if any. Only in the test build (feature ``test-checks``,
    as ``scripts/python-venv`` builds it)."""
