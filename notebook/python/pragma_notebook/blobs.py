"""Large buffers (a numpy array's data, ...) saved once, by content, apart
from the pickles that name them: what makes a state's cost follow what
changes, not what the namespace holds (see :class:`Blobs`)."""

import array
import contextlib
import ctypes
import hashlib
import mmap
import os
import pickle
import sys
import tempfile
import time
import weakref

import blake3

from . import durable

# Buffers this large or larger are saved apart, by content (see `Blobs`).
LARGE = 1 << 20


def content_digest(view):
    """A buffer's name: its BLAKE3 hash, in hex, computed on all cores
    (a large array is named in a fraction of one pass over it; the GIL is
    let go meanwhile)."""
    return blake3.blake3(memoryview(view).cast("B"), max_threads=blake3.blake3.AUTO).hexdigest()


# Stores written before blobs were named by BLAKE3 named them by the
# SHA-256 of the SHA-256s of their 32 MiB pieces: still read.
_OLD_PIECE = 32 << 20


def _old_content_digest(view):
    view = memoryview(view).cast("B")
    pieces = [view[at : at + _OLD_PIECE] for at in range(0, len(view), _OLD_PIECE)] or [view]
    sums = [hashlib.sha256(piece).digest() for piece in pieces]
    return hashlib.sha256(b"".join(sums)).hexdigest()


class Blobs:
    """Large buffers (a numpy array's data, ...) saved once, by content:
    ``ROOT/AB/DIGEST``. A buffer already there is not written again, so
    data that does not change is paid for once: not at each checkpoint,
    not by a later operation on the same data.

    A blob is named by :func:`content_digest`. It is whole once visible
    (written to a temporary file, synced, renamed into place, its
    directory synced), so it is durable before
    anything that names it is committed. Reading maps it copy-on-write:
    workers share its pages through the page cache, and an array loaded
    from it is writable (a write copies only the pages it touches). Each
    process checks a blob's content against its name once. Saving a buffer
    that is such a mapping, none of whose pages was written (as the kernel
    tells in ``/proc/self/pagemap``), names its blob without reading it."""

    def __init__(self, root):
        self.root = os.path.abspath(root)
        # Bytes this process wrote here (new blobs only).
        self.written = 0
        self._checked = set()
        # Blobs whose name this process made sure is durable.
        self._durable = set()
        # The blobs mapped here, by address: (size, digest, the mapping).
        self._mapped = {}
        # The last mapping of each blob, kept for the next load, in a
        # worker only (see `get` and `keep_mappings`).
        self._keeps = False
        self._kept = {}

    def path(self, digest):
        """Where the blob of ``digest`` is."""
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"`{digest}` is not a blob's name")
        return os.path.join(self.root, digest[:2], digest)

    def put(self, view):
        """Saves ``view`` (a contiguous buffer) unless it is there; its
        digest."""
        digest = self._unwritten(view) or content_digest(view)
        path = self.path(digest)
        if os.path.exists(path):
            # Used again: fresh for the collector's grace period.
            with contextlib.suppress(OSError):
                os.utime(path)
            # Its name is durable before a state names it, whoever wrote
            # it (another process may not have synced it yet): once per
            # blob and process.
            if digest not in self._durable:
                durable.sync_directory(os.path.dirname(path))
                self._durable.add(digest)
            return digest
        directory = os.path.dirname(path)
        durable.make_dirs(directory)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".writing-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(view)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        durable.sync_directory(directory)
        self._durable.add(digest)
        self.written += view.nbytes
        return digest

    def collect(self, named, grace_seconds):
        """Deletes the blobs not in ``named`` (the digests some stored
        state names) that were neither written nor used again in the last
        ``grace_seconds`` (a state being saved right now may name one not
        committed yet), and what an interrupted write left. Returns how
        many files it deleted and their bytes."""
        deadline = time.time() - grace_seconds
        count = freed = 0
        for directory, _, files in os.walk(self.root):
            for name in files:
                path = os.path.join(directory, name)
                if name in named and not name.startswith("."):
                    continue
                try:
                    stat = os.stat(path)
                    if stat.st_mtime >= deadline:
                        continue
                    os.unlink(path)
                except OSError:
                    continue
                count += 1
                freed += stat.st_size
        return count, freed

    def size(self, digest):
        """The size of the blob of ``digest`` (0 if it is not here)."""
        try:
            return os.path.getsize(self.path(digest))
        except OSError:
            return 0

    def keep_mappings(self):
        """Keeps the last mapping of each blob for the next load (see
        :meth:`get`): for a worker, which serves one operation and loads
        its data again at each iteration. Not for the kernel: a mapping
        kept there would hold, for the kernel's life, a file descriptor
        and the disk space of each blob it ever loaded, collected or not."""
        self._keeps = True

    def get(self, digest):
        """The blob of ``digest``, mapped copy-on-write. Where mappings are
        kept (:meth:`keep_mappings`), a later load takes the last one again
        if nothing uses it any more and none of its pages was written, so
        that its pages, already in this process's page tables, are not
        faulted in again (a worker's next iteration on the same data)."""
        kept = self._kept.get(digest)
        if kept is not None and self._unused(kept):
            return pickle.PickleBuffer(kept)
        mapped = self._map(digest)
        if self._keeps and len(mapped):
            self._kept[digest] = mapped
        return pickle.PickleBuffer(mapped)

    def warm(self, digest):
        """Maps the blob of ``digest`` ahead, checked, its pages in this
        process's page tables (see :meth:`get`)."""
        with self.get(digest).raw() as view:
            bytes(view[:: mmap.PAGESIZE])  # one byte of each page

    def _unused(self, mapped):
        # Referred to by `_kept`, the caller's name, this argument and
        # getrefcount's own: by no array.
        if sys.getrefcount(mapped) > 4:
            return False
        address = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
        return not _written_pages(address, len(mapped))

    def _map(self, digest):
        path = self.path(digest)
        try:
            with open(path, "rb") as blob:
                size = os.fstat(blob.fileno()).st_size
                mapped = mmap.mmap(blob.fileno(), size, access=mmap.ACCESS_COPY) if size else b""
        except FileNotFoundError:
            raise pickle.UnpicklingError(
                f"the data blob {digest} is missing from {self.root}: the state that names it"
                " cannot be loaded"
            ) from None
        if digest not in self._checked:
            if content_digest(mapped) != digest and _old_content_digest(mapped) != digest:
                raise pickle.UnpicklingError(
                    f"the data blob {path} is damaged (its content does not match its name):"
                    " delete it, and the next submission of that data writes it again"
                )
            self._checked.add(digest)
        if size:
            address = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
            self._mapped[address] = (size, digest, weakref.ref(mapped))
        return mapped

    def checked(self):
        """The blobs this process checked against their names."""
        return sorted(self._checked)

    def _unwritten(self, view):
        """The digest of the blob ``view`` is a mapping of, if none of its
        pages was written since; else None."""
        if view.readonly or not self._mapped:
            return None
        address = ctypes.addressof(ctypes.c_char.from_buffer(view))
        size, digest, mapping = self._mapped.get(address, (None, None, None))
        if size != view.nbytes or mapping() is None:
            return None
        return digest if not _written_pages(address, size) else None


# A blob found in a bucket is written again if it is older than this
# (seconds): half the collector's default grace period, so that a blob a
# state is about to name is never one the collector may take.
BUCKET_REFRESH = 1800


class BucketBlobs:
    """Large buffers saved once, by content, in a bucket store
    (``s3://BUCKET/PREFIX``): ``PREFIX/blobs/AB/DIGEST`` in the bucket,
    durable there before anything that names them is committed, and a
    copy of each on this machine (``cache``, a :class:`Blobs`; where that
    cannot be made, a directory of this user's in the temporary one), which
    loading maps as it maps a directory store's blobs (downloaded once
    per machine, checked once per process). A blob the bucket has is not
    written again, unless it is older than :data:`BUCKET_REFRESH`: written
    again, it is fresh for the collector."""

    def __init__(self, url, cache):
        from ._native import BucketBlobs as Bucket

        self.root = url
        try:
            os.makedirs(cache, exist_ok=True)
        except OSError:
            # Not on this machine (a cluster's node): a place of this user's.
            name = hashlib.sha256(url.encode()).hexdigest()[:16]
            cache = os.path.join(tempfile.gettempdir(), f"pragma-blobs-{os.getuid()}", name)
            os.makedirs(cache, mode=0o700, exist_ok=True)
        self.cache = os.path.abspath(cache)
        self._local = Blobs(self.cache)
        self._bucket = Bucket(url)
        # Bytes this process wrote to the bucket.
        self.written = 0
        # Blobs known to be in the bucket and fresh, since (monotonic).
        self._fresh = {}

    def put(self, view):
        """Saves ``view`` (a contiguous buffer) unless the bucket has it;
        its digest."""
        digest = self._local.put(view)
        since = self._fresh.get(digest)
        if since is not None and time.monotonic() - since < BUCKET_REFRESH / 2:
            return digest
        found = self._bucket.head(digest)
        if found is None or found.age_seconds >= BUCKET_REFRESH:
            # What goes to the bucket is what its name says.
            self._local.get(digest)
            self._bucket.upload(digest, self._local.path(digest))
            self.written += view.nbytes
        self._fresh[digest] = time.monotonic()
        return digest

    def get(self, digest):
        """The blob of ``digest``, from this machine's copy (fetched from
        the bucket first if need be), mapped copy-on-write."""
        path = self._local.path(digest)
        if not os.path.exists(path):
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=".writing-")
            os.close(fd)
            try:
                self._bucket.download(digest, temporary)
                os.replace(temporary, path)
            except OSError as error:
                raise pickle.UnpicklingError(
                    f"the data blob {digest} cannot be read from {self.root}: {error}"
                ) from None
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
        return self._local.get(digest)

    def size(self, digest):
        """The size of the blob of ``digest`` (0 if it is not there)."""
        local = self._local.size(digest)
        if local:
            return local
        found = self._bucket.head(digest)
        return found.size if found is not None else 0

    def collect(self, named, grace_seconds):
        """Deletes the blobs of the bucket not in ``named`` that were not
        written in the last ``grace_seconds`` (see :meth:`Blobs.collect`),
        and this machine's copies of them. Returns how many the bucket
        lost and their bytes."""
        count = freed = 0
        for blob in self._bucket.list():
            if blob.digest in named or blob.age_seconds < grace_seconds:
                continue
            self._bucket.delete(blob.digest)
            count += 1
            freed += blob.size
        self._local.collect(named, grace_seconds)
        return count, freed

    def keep_mappings(self):
        """See :meth:`Blobs.keep_mappings`."""
        self._local.keep_mappings()

    def warm(self, digest):
        """Fetches and maps the blob of ``digest`` ahead (see
        :meth:`Blobs.warm`)."""
        self.get(digest)
        self._local.warm(digest)

    def checked(self):
        """The blobs this process checked against their names."""
        return self._local.checked()

    def _unwritten(self, view):
        return self._local._unwritten(view)


_BLOB_STORES: dict[str, Blobs | BucketBlobs] = {}


def blob_stores():
    """The blob stores this process used: ``(root, cache, checked
    digests)`` each (see :func:`blob_store`)."""
    return [
        (root, getattr(store, "cache", None), store.checked())
        for root, store in _BLOB_STORES.items()
    ]


def blob_store(root, cache=None):
    """The blobs of ``root`` (a directory, or a bucket store's URL with
    this machine's copies in ``cache``: :class:`BucketBlobs`), one per
    process (it remembers the blobs it checked)."""
    if "://" not in root:
        root = os.path.abspath(root)
    if root not in _BLOB_STORES:
        _BLOB_STORES[root] = Blobs(root) if "://" not in root else BucketBlobs(root, cache)
    return _BLOB_STORES[root]


class Held:
    """Large buffers named by content but kept in memory, not saved: for a
    state saved only to be compared (the notebook's namespace at the end
    of an operation). Loading takes them from here, else from ``blobs``."""

    def __init__(self, blobs=None):
        self._blobs = blobs
        self._held = {}

    def put(self, view):
        digest = content_digest(view)
        self._held.setdefault(digest, view)
        return digest

    def get(self, digest):
        if digest in self._held:
            return pickle.PickleBuffer(self._held[digest])
        if self._blobs is None:
            raise pickle.UnpicklingError(f"no data blob {digest} here")
        return self._blobs.get(digest)


def _written_pages(address, size):
    """Whether a page of the private file mapping at ``address`` was
    written (copied on write: present and anonymous, or swapped out), as
    ``/proc/self/pagemap`` tells; True where it cannot tell."""
    page = mmap.PAGESIZE
    first, last = address // page, (address + size - 1) // page
    try:
        with open("/proc/self/pagemap", "rb") as pagemap:
            pagemap.seek(first * 8)
            raw = pagemap.read((last - first + 1) * 8)
    except OSError:
        return True
    if len(raw) != (last - first + 1) * 8:
        return True
    present, swapped, file_page = 1 << 63, 1 << 62, 1 << 61
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        # At a checkpoint of a large state this runs for each array: in
        # numpy, a fraction of a millisecond per 100 MB, not tens of them.
        entries = numpy.frombuffer(raw, dtype=numpy.uint64)
        copied = (entries & numpy.uint64(present | file_page)) == numpy.uint64(present)
        return bool(((entries & numpy.uint64(swapped)) != 0).any() or copied.any())
    entries = array.array("Q", raw)
    return any(e & swapped or (e & present and not e & file_page) for e in entries)
