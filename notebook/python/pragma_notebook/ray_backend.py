"""The notebook host on a Ray cluster: the kernel's side of the Ray backend.

``%pragma config backend=ray address=ADDRESS`` (or ``config(backend="ray",
address=...)``) makes the kernel a Ray driver. The Rust executor keeps
deciding what runs (scheduling, retries, the preemption budget, the
selection, checkpoints, conflicts, the apply); each iteration whose input
state is in the store (every iteration of a ``parallel`` or ``async`` cell)
is a Ray task of one CPU, spread over the nodes, made and followed through
the :class:`Dispatcher` here. It runs in a Ray worker process: it loads
the state from the store, which every node must reach (a shared
directory, or ``s3://``), once per process; runs the body and the
selection expression there; and returns the resulting state through
Ray's object store, with its report. A worker or node lost under a task
makes its run a preemption: it runs again wherever Ray has room.

The tasks are submitted by a supervisor (:class:`_Supervisor`, a detached
actor of no CPU), not by the kernel itself, so that they outlive a kernel
that dies: the supervisor holds their results (in Ray's object store,
never in its own memory), and a new kernel taking the operation up takes
those instead of running the iterations again.

The kernel's worker interpreters are on the cluster too (:class:`_Worker`
actors, started, called and let go by the Rust pool through the
dispatcher): a ``repeat``'s iterations after the first run in one of
them, on the state the last one left in its memory.
"""

import hashlib
import json
import os
import socket
import threading
import time
import uuid

import ray
import ray.exceptions
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

__all__ = ["Dispatcher"]

# The Ray namespace the supervisors are named in.
NAMESPACE = "pragma"
# The largest result (bytes) the supervisor hands over itself; a larger
# one the kernel reads from the object store, not through the supervisor.
HANDED_OVER = 1 << 20
# Seconds a supervisor keeps a result its kernel did not take (the kernel
# died), for a new kernel taking the operation up.
KEEP_UNTAKEN = 300.0
# Seconds the kernel gathers the results it took before telling its
# supervisor, in one call: a call per iteration cost the supervisor more
# than following the iteration's task.
RELEASE_EVERY = 0.2


def check_reachable(address):
    """Fails at once, saying so, if the cluster at ``address`` (or
    ``RAY_ADDRESS``) takes no connection: ``ray.init`` would retry for
    minutes."""
    target = address or os.environ.get("RAY_ADDRESS")
    if not target or target in ("auto", "local"):
        return
    host, _, port = target.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise ConnectionError(
            f"the Ray cluster at {target} cannot be reached: {error}; start it "
            "(`ray start --head`) or give its head node's HOST:PORT "
            "(`%pragma config backend=ray address=HOST:PORT`)"
        ) from None


def job_key(spec):
    """What a job is, whichever start of it: its operation, iteration and
    input (the body and seed follow from them)."""
    job = json.loads(spec)
    return f"{job['op']}/{job['iteration']}/{json.dumps(job['input'], sort_keys=True)}"


@ray.remote(num_cpus=1, max_retries=0, num_returns=2)  # retries are the executor's
def _run_iteration(spec, store):
    """Runs one iteration; returns its report with the resulting state, or,
    for a state larger than :data:`HANDED_OVER`, the report alone and the
    state apart (see :meth:`_Job.ended`)."""
    from pragma_notebook import _native

    report, state = _native.run_remote_job(spec, store)
    if state is not None and len(state) > HANDED_OVER:
        return (report, None, True), state
    return (report, state, False), None


class _Job:
    """An iteration's task, followed by the supervisor, and since when it
    ended."""

    def __init__(self, refs, token):
        self.report, self.state = refs
        self.token = token
        self.ended_at = None

    def ended(self):
        """Waits for the task to end; its outcome: ``("done", report,
        state)``, ``("failed", why)``, ``("lost", why)``, or, for a state
        larger than :data:`HANDED_OVER`, ``("done-apart", report, [ref])``:
        the kernel reads that state from the object store itself, so that
        the supervisor never holds a copy of it."""
        try:
            report, state, apart = ray.get(self.report)
            if apart:
                outcome = ("done-apart", report, [self.state])
            else:
                outcome = ("done", report, state)
        except ray.exceptions.TaskCancelledError:
            outcome = ("failed", "the iteration was cancelled")
        except ray.exceptions.RayTaskError as error:
            outcome = ("failed", f"the Ray task failed: {error}")
        except ray.exceptions.RayError as error:
            # Its process or node is gone: a preemption.
            outcome = ("lost", f"{type(error).__name__}: {error}")
        self.ended_at = time.monotonic()
        return outcome


# A thread per iteration it follows (a thread waits for a task's result
# sooner than an event loop hands it over).
@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1024)
class _Supervisor:
    """Submits the iterations' tasks for kernels, and holds their results
    until the kernel takes them: a detached actor of no CPU, named after
    the runtime environment its tasks run in, that outlives any kernel."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs = {}
        threading.Thread(target=self._sweep, name="pragma untaken", daemon=True).start()

    def run(self, key, token, spec, store):
        """Runs the job ``spec`` on the store ``store`` (``token`` names
        this start of it); once it ends, its result (see
        :meth:`_Job.ended`)."""
        refs = _run_iteration.options(scheduling_strategy="SPREAD").remote(spec, store)
        job = _Job(refs, token)
        with self._lock:
            self._jobs[key] = job
        return job.ended()

    def held(self, op):
        """The jobs of ``op`` whose results are held or still to come."""
        with self._lock:
            return [key for key in self._jobs if key.startswith(op + "/")]

    def claim(self, key):
        """The result of the job ``key`` once it ends (as :meth:`run`), for
        a kernel that took its operation up; ``None`` if it is not held."""
        with self._lock:
            job = self._jobs.get(key)
        if job is None:
            return None
        result = job.ended()
        self.release(key, job.token)
        return result

    def release(self, key, token):
        """The kernel took the result of the start ``token`` of ``key``:
        it need not be kept (a later start of it is)."""
        self.release_all([(key, token)])

    def release_all(self, taken):
        """:meth:`release` of each ``(key, token)`` of ``taken``."""
        with self._lock:
            for key, token in taken:
                if key in self._jobs and self._jobs[key].token == token:
                    del self._jobs[key]

    def cancel(self, key):
        """Stops the job ``key`` at once: its worker process is killed."""
        with self._lock:
            job = self._jobs.pop(key, None)
        if job is not None:
            ray.cancel(job.report, force=True)

    def _sweep(self):
        # Outcomes no kernel came for.
        while True:
            time.sleep(KEEP_UNTAKEN / 10)
            now = time.monotonic()
            with self._lock:
                for key, job in list(self._jobs.items()):
                    if job.ended_at is not None and now - job.ended_at > KEEP_UNTAKEN:
                        del self._jobs[key]


@ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
class _Worker:
    """One of the kernel's worker interpreters, on the cluster: the
    namespace a run leaves stays in its memory, so that a ``repeat``'s next
    iteration runs on it there (see :mod:`pragma_notebook.worker`)."""

    def handle(self, header, blobs):
        from pragma_notebook import worker

        return worker.handle_kept(header, blobs)


class _Task:
    """A submitted iteration: its outcome to come, the job's key, and the
    token of this start of it (``None``: taken over from a gone kernel)."""

    def __init__(self, outcome, key, token=None):
        self.outcome = outcome
        self.key = key
        self.token = token


class Dispatcher:
    """Submits iterations to the cluster, polls them, cancels them.

    Each iteration is a task, submitted by this kernel's supervisor (see
    the module docs); an iteration that a supervisor runs, or ran, for a
    kernel that died is taken from it, not run again. ``options`` are
    passed to ``ray.init`` (``runtime_env``, ``namespace``, ...); the
    driver's logs stay off by default (``log_to_driver=False``): each run's
    output is kept in its log, as with local workers.
    """

    def __init__(self, address=None, **options):
        options.setdefault("log_to_driver", False)
        if not ray.is_initialized():
            check_reachable(address)
            ray.init(address=address, **options)
        # The tasks run in this kernel's runtime environment: the
        # supervisor is the one for it.
        self._runtime_env = dict(ray.get_runtime_context().runtime_env or {})
        digest = hashlib.sha256(json.dumps(self._runtime_env, sort_keys=True, default=str).encode())
        self._name = f"supervisor-{digest.hexdigest()[:16]}"
        self._supervisor = None
        # The operations whose held jobs were looked for, and those jobs.
        self._looked = set()
        self._held = set()
        self._lock = threading.Lock()
        # The results taken, for the supervisor to let go of (see
        # RELEASE_EVERY).
        self._taken = []
        self._taken_lock = threading.Lock()
        threading.Thread(target=self._release_taken, name="pragma release", daemon=True).start()

    def capacity(self):
        """How many iterations may run at once: the cluster's CPUs now."""
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _supervisor_now(self, again=False):
        if self._supervisor is None or again:
            self._supervisor = _Supervisor.options(
                name=self._name,
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                runtime_env=self._runtime_env or None,
                # Beside the kernel, where the cluster is reached.
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    ray.get_runtime_context().get_node_id(), soft=True
                ),
            ).remote()
        return self._supervisor

    def submit(self, spec, store):
        """Submits the job ``spec`` (JSON) on the store ``store``."""
        key = job_key(spec)
        supervisor = self._supervisor_now()
        op = key.split("/", 1)[0]
        # Submits come from several threads: the operation's others wait
        # for its look to end.
        with self._lock:
            if op not in self._looked:
                self._looked.add(op)
                try:
                    self._held.update(ray.get(supervisor.held.remote(op), timeout=30))
                except ray.exceptions.RayError:
                    supervisor = self._supervisor_now(again=True)
            held = key in self._held
            self._held.discard(key)
        if held:
            return _Task(supervisor.claim.remote(key), key)
        token = uuid.uuid4().hex
        return _Task(supervisor.run.remote(key, token, spec, store), key, token)

    def poll(self, task, timeout):
        """``None`` while ``task`` runs (waiting at most ``timeout``
        seconds), else ``("done", report, state)`` (the resulting state's
        bytes, or ``None``), ``("lost", why)`` when its worker or node died
        under it, or ``("failed", why)``."""
        ready, _ = ray.wait([task.outcome], timeout=timeout)
        if not ready:
            return None
        try:
            outcome = ray.get(task.outcome)
        except ray.exceptions.RayError as error:
            # The supervisor itself is gone (its node died), and what it
            # held: a new one takes the next iterations.
            self._supervisor_now(again=True)
            return "lost", f"the supervisor of the iterations is gone: {error}"
        if outcome is None:
            outcome = ("lost", "the supervisor no longer holds this iteration")
        elif outcome[0] == "done-apart":
            try:
                outcome = ("done", outcome[1], ray.get(outcome[2][0]))
            except ray.exceptions.RayError as error:
                # Its node went with it.
                outcome = ("lost", f"the resulting state is lost: {error}")
        if task.token is not None:
            with self._taken_lock:
                self._taken.append((task.key, task.token))
        return outcome

    def _release_taken(self):
        while True:
            time.sleep(RELEASE_EVERY)
            with self._taken_lock:
                taken, self._taken = self._taken, []
            if taken and self._supervisor is not None:
                try:
                    self._supervisor.release_all.remote(taken)
                except ray.exceptions.RayError:
                    # Gone with its results: nothing is left to let go of.
                    pass

    def cancel(self, task):
        """Stops ``task`` at once (``ray.cancel``, forced)."""
        self._supervisor_now().cancel.remote(task.key)

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
