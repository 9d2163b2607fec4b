"""The notebook host on a Ray cluster: the kernel's side of the Ray backend.

``%pragma config backend=ray address=ADDRESS`` (or ``config(backend="ray",
address=...)``) makes the kernel a Ray driver. The Rust executor keeps
deciding what runs (scheduling, retries, the preemption budget, the
selection, checkpoints, conflicts, the apply); each iteration whose input
state is in the store (every iteration of a ``parallel`` or ``async`` cell)
is a call to a runner (a Ray actor of one CPU, kept while it has work),
made and followed through the :class:`Dispatcher` here. It runs in the
runner's Ray worker process: it loads the state from the store, which
every node must reach (a shared directory, or ``s3://``), once per
runner; runs the body and the selection expression there; and returns
the resulting state through Ray's object store, with its report. A
worker or node lost under a task makes its run a preemption: it runs
again wherever Ray has room.

The kernel's worker interpreters are on the cluster too (:class:`_Worker`
actors, started, called and let go by the Rust pool through the
dispatcher): a ``repeat``'s iterations after the first run in one of
them, on the state the last one left in its memory.
"""

import threading
import time

import ray
import ray.exceptions

__all__ = ["Dispatcher"]

# Seconds an idle runner is kept for the next iteration.
LINGER = 1.0


@ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)  # retries are the executor's
class _Runner:
    """A Ray worker process that runs iterations, one at a time: an actor,
    so that each task goes straight to it (a task of its own would wait for
    a worker lease every time)."""

    def run(self, spec, store):
        from pragma_notebook import _native

        return _native.run_remote_job(spec, store)


@ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
class _Worker:
    """One of the kernel's worker interpreters, on the cluster: the
    namespace a run leaves stays in its memory, so that a ``repeat``'s next
    iteration runs on it there (see :mod:`pragma_notebook.worker`)."""

    def handle(self, header, blobs):
        from pragma_notebook import worker

        return worker.handle_kept(header, blobs)


class _Task:
    """A submitted iteration: its result, and the runner it went to."""

    def __init__(self, runner, result):
        self.runner = runner
        self.result = result


class Dispatcher:
    """Submits iterations to the cluster, polls them, cancels them.

    Iterations go to runners (actors of one CPU each) kept from one
    iteration to the next; a runner idle for :data:`LINGER` seconds is let
    go, so that its CPU is the cluster's again between operations. A
    runner whose node or process died is dropped, and so is one whose
    iteration was cancelled (it is killed). ``options``
    are passed to ``ray.init`` (``runtime_env``, ``namespace``, ...); the
    driver's logs stay off by default (``log_to_driver=False``): each run's
    output is kept in its log, as with local workers.
    """

    def __init__(self, address=None, **options):
        options.setdefault("log_to_driver", False)
        if not ray.is_initialized():
            ray.init(address=address, **options)
        # Idle runners, with when each went idle.
        self._idle = []
        self._lock = threading.Lock()
        threading.Thread(target=self._let_go, name="pragma Ray runners", daemon=True).start()

    def _let_go(self):
        while True:
            time.sleep(LINGER / 2)
            now = time.monotonic()
            with self._lock:
                stale = [runner for runner, since in self._idle if now - since > LINGER]
                self._idle = [(r, since) for r, since in self._idle if now - since <= LINGER]
            for runner in stale:
                ray.kill(runner, no_restart=True)

    def capacity(self):
        """How many iterations may run at once: the cluster's CPUs now."""
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def submit(self, spec, store):
        """Submits the job ``spec`` (JSON) on the store ``store``."""
        with self._lock:
            runner = self._idle.pop()[0] if self._idle else None
        if runner is None:
            runner = _Runner.remote()
        return _Task(runner, runner.run.remote(spec, store))

    def poll(self, task, timeout):
        """``None`` while ``task`` runs (waiting at most ``timeout``
        seconds), else ``("done", report, state)`` (the resulting state's
        bytes, or ``None``), ``("lost", why)`` when its worker or node died
        under it, or ``("failed", why)``."""
        ready, _ = ray.wait([task.result], timeout=timeout)
        if not ready:
            return None
        try:
            ended = ("done", *ray.get(task.result))
        except ray.exceptions.RayTaskError as error:
            # The runner lives on (what it ran raised): it is kept.
            ended = "failed", f"the Ray task failed: {error}"
        except ray.exceptions.RayError as error:
            # Its process or node is gone, and the runner with it.
            return "lost", f"{type(error).__name__}: {error}"
        with self._lock:
            self._idle.append((task.runner, time.monotonic()))
        return ended

    def cancel(self, task):
        """Stops ``task`` at once: its runner's process is killed."""
        ray.kill(task.runner, no_restart=True)

    # The kernel's worker interpreters as actors (the Rust pool keeps them,
    # and lets them go).

    def start_worker(self):
        """A new worker actor."""
        return _Worker.remote()

    def call_worker(self, worker, header, blobs):
        """Sends one request (JSON text and blobs) to ``worker``."""
        return worker.handle.remote(header, blobs)

    def poll_worker(self, call, timeout):
        """``None`` while ``call`` runs (waiting at most ``timeout``
        seconds), else its answer: the header (JSON text) and blobs. Raises
        if the worker died under it."""
        ready, _ = ray.wait([call], timeout=timeout)
        return ray.get(call) if ready else None

    def kill_worker(self, worker):
        """Stops ``worker`` at once."""
        ray.kill(worker, no_restart=True)
