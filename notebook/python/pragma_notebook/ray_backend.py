"""The notebook host on a Ray cluster: the kernel's side of the Ray backend.

``%pragma config backend=ray address=ADDRESS`` (or ``config(backend="ray",
address=...)``) makes the kernel a Ray driver. The Rust executor keeps
deciding what runs (scheduling, retries, the preemption budget, the
selection, checkpoints, conflicts, the apply); the iterations whose input
state is in the store (every iteration of a ``parallel`` or ``async`` cell)
run as Ray tasks of one CPU, spread over the nodes, made and followed
through the :class:`Dispatcher` here. A task runs one iteration, or, for
short ones, several of one operation one after another (the Rust side
batches them, at most ``--parallel-runs`` tasks of an operation at once),
so that a task's cost is shared. It runs in a Ray worker process: it loads
the state from the store, which every node must reach (a shared
directory, or ``s3://``), once per process; runs each body and the
selection expression there; and returns the resulting states through
Ray's object store, with their reports, each as it ends (a streaming
generator, a yield per :data:`YIELD_EVERY`). A worker or node lost under
a task costs only the run it had: that run is a preemption, and runs
again wherever Ray has room; the runs the task yielded before are kept,
and those after it are queued again, counted nowhere (those it had not
started, and any it ended since its last yield).

The tasks are submitted by the kernel's supervisor (:class:`_Supervisor`,
a detached actor of no CPU), not by the kernel itself, so that they
outlive a kernel that dies: the supervisor holds their results (in Ray's
object store, never in its own memory), and a new kernel taking the
operation up claims those from it instead of running the iterations again.

Each kernel has its own supervisor, made by it: an actor's tasks belong
to the Ray job that made the actor, and Ray keeps worker processes per
job. A supervisor shared by kernels ran every kernel's iterations in the
first kernel's job, so in any other kernel the iterations and the user's
own Ray tasks took the CPUs' worker processes from each other, each
operation starting new ones (1.5 s for 40 no-op iterations instead of
0.06 s). The supervisor is placed on the kernel's node, not softly
anywhere: it fails only with the kernel, never taking the iterations of a
live kernel with it when another node goes. It lets itself go once its
kernel stopped beating (:data:`ORPHANED_AFTER`) and it holds nothing a
kernel could take up. A supervisor that dies while its kernel lives (an
out-of-memory kill, ``ray.kill``) is replaced at once, and the iterations
it followed are submitted again to the new one: at most one of each of
its tasks was running, so only that counts as a run lost, not as a
preemption.

The kernel's worker interpreters are on the cluster too (:class:`_Worker`
actors, started, called and let go by the Rust pool through the
dispatcher): a ``repeat``'s iterations after the first run in one of
them, on the state the last one left in its memory.
"""

import contextlib
import functools
import hashlib
import json
import logging
import os
import signal
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
# Seconds of iterations a task runs before it yields those that ended
# (see _run_batch): a yield cost about 0.3 ms here, more than a short
# iteration; what ended since the last yield is lost with the task.
YIELD_EVERY = 0.01
# Seconds a supervisor keeps a result its kernel did not take (the kernel
# died), for a new kernel taking the operation up.
KEEP_UNTAKEN = 300.0
# Seconds the kernel gathers the results it took before telling its
# supervisor, in one call: a call per iteration cost the supervisor more
# than following the iteration's task.
RELEASE_EVERY = 0.2
# Seconds between the kernel's beats to its supervisor, and after which a
# supervisor that heard none and holds nothing lets itself go.
BEAT_EVERY = 5.0
ORPHANED_AFTER = 60.0
# What Ray raises for a call to an actor that died (ActorDiedError since
# Ray 2.10 or so; its base class before).
_ACTOR_DIED = getattr(ray.exceptions, "ActorDiedError", ray.exceptions.RayActorError)
# How many times iterations are submitted again after their supervisor
# died under them, before they count as lost (preemptions).
RESUBMITS = 3
# What every supervisor's name starts with (then its runtime environment's
# digest and its kernel's job).
SUPERVISOR = "supervisor-"


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
    from pragma_notebook import _native

    return _native.job_key(spec)


@ray.remote(num_cpus=1, max_retries=0)  # retries are the executor's
def _run_batch(specs, store):
    """Runs iterations one after another (the jobs ``specs``, of one
    operation), yielding their reports, each with its resulting state, as
    they end: a streaming generator, so that what it yielded stays its
    caller's if its process or node is lost after. Those that end within
    :data:`YIELD_EVERY` of the last yield go together. After a state
    larger than :data:`HANDED_OVER` comes that state as an object of its
    own, so that it never passes through the supervisor (see
    :meth:`_Job.ended`)."""
    from pragma_notebook import _native

    with _terminated_between_iterations() as terminated:
        ended, since = [], time.monotonic()
        for spec in specs:
            if terminated:
                break
            report, state = _native.run_remote_job(spec, store)
            big = state is not None and len(state) > HANDED_OVER
            ended.append((report, None if big else state, big))
            if big or time.monotonic() - since >= YIELD_EVERY:
                yield ended
                ended, since = [], time.monotonic()
                if big:
                    yield state
        if ended:
            yield ended


@contextlib.contextmanager
def _terminated_between_iterations():
    """A SIGTERM to the task's worker (``ray stop``, a node drained) ends
    the task after the iteration it runs, not inside its body: that would
    fail the iteration as the body's own ``SystemExit``. Inside, the
    signals received; after, the one received (if any) is delivered to
    Ray's own handler, which ends the worker."""
    received = []
    try:
        previous = signal.signal(signal.SIGTERM, lambda number, frame: received.append(number))
    except ValueError:  # not the main thread: Ray's own handler is not either
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
    if received:
        signal.raise_signal(signal.SIGTERM)


class _Batch:
    """A task running several iterations, and, once it ended, each one's
    outcome (see :meth:`_Job.ended`), taken once for all of them."""

    def __init__(self, stream, size):
        self.stream = stream
        self.size = size
        self._lock = threading.Lock()
        self._outcomes = None
        self.ended_at = None

    def outcome(self, index):
        with self._lock:
            if self._outcomes is None:
                self._outcomes = self._wait()
                self.ended_at = time.monotonic()
        return self._outcomes[index]

    def _wait(self):
        """Each iteration's outcome: those the task yielded before it ended
        are done; if it failed, the first after them shares its failure
        (its process or node lost: a preemption), and those after it run
        again, counted nowhere (``("unstarted", why)``): it had not started
        them, or ended them within :data:`YIELD_EVERY` before it was
        lost."""
        outcomes = []
        stream = iter(self.stream)
        try:
            for ref in stream:
                for report, state, apart in ray.get(ref):
                    if apart:
                        outcomes.append(("done-apart", report, [next(stream)]))
                    else:
                        outcomes.append(("done", report, state))
        except ray.exceptions.TaskCancelledError:
            return self._ended(outcomes, ("failed", "the iteration was cancelled"), None)
        except ray.exceptions.RayTaskError as error:
            return self._ended(outcomes, ("failed", f"the Ray task failed: {error}"), None)
        except ray.exceptions.RayError as error:
            why = f"{type(error).__name__}: {error}"
            return self._ended(outcomes, ("lost", why), ("unstarted", why))
        except StopIteration:
            pass
        # A stream that ends short lost its task after it handed over the
        # object of a large state: that object holds the task's error, and
        # the kernel finds it lost (see `Dispatcher._received`).
        short = ("unstarted", "the Ray task was lost after an iteration before it")
        return self._ended(outcomes, short, None)

    def _ended(self, outcomes, running, after):
        """``outcomes`` completed to the batch's size: the iteration after
        the last one done ended as ``running``, those after it as
        ``after`` (``None``: as ``running``)."""
        left = self.size - len(outcomes)
        if left > 0:
            outcomes = [*outcomes, running, *[after or running] * (left - 1)]
        return outcomes


class _Job:
    """An iteration in a task followed by the supervisor: which of the
    task's iterations it is, and the token of this start of it."""

    def __init__(self, batch, index, token):
        self.batch = batch
        self.index = index
        self.token = token

    @property
    def ended_at(self):
        return self.batch.ended_at

    def ended(self):
        """Waits for its task to end; its outcome: ``("done", report,
        state)``, ``("failed", why)``, ``("lost", why)``, ``("unstarted",
        why)`` (its task was lost before it yielded this one: it runs
        again, counted nowhere), or, for a state larger than
        :data:`HANDED_OVER`, ``("done-apart", report, [ref])``: the kernel
        reads that state from the object store itself, so that the
        supervisor never holds a copy of it."""
        return self.batch.outcome(self.index)


# A thread per iteration it follows (a thread waits for a task's result
# sooner than an event loop hands it over).
@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1024)  # type: ignore[call-overload]  # an actor's option Ray's stubs lack
class _Supervisor:
    """Submits the iterations' tasks for its kernel, and holds their
    results until a kernel takes them: a detached actor of no CPU, named
    after the runtime environment its tasks run in and its kernel's job,
    that outlives its kernel as long as it holds what another could take."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs = {}
        self._beaten = time.monotonic()
        threading.Thread(target=self._sweep, name="pragma untaken", daemon=True).start()

    def beat(self):
        """Its kernel lives."""
        self._beaten = time.monotonic()

    def watch(self):
        """Never answers: its kernel holds the call, which fails the moment
        the supervisor dies (see :meth:`Dispatcher._supervisor_now`)."""
        threading.Event().wait()

    def run(self, keys, tokens, specs, store):
        """Runs the jobs ``specs`` (of one operation, on the store
        ``store``) one after another in one task; ``keys`` name them and
        ``tokens`` these starts of them. Once it ends, each one's result
        (see :meth:`_Job.ended`)."""
        stream = _run_batch.options(scheduling_strategy="SPREAD").remote(specs, store)
        batch = _Batch(stream, len(specs))
        jobs = [_Job(batch, index, token) for index, token in enumerate(tokens)]
        with self._lock:
            self._jobs.update(zip(keys, jobs, strict=False))
        return [job.ended() for job in jobs]

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

    def cancel(self, keys):
        """Stops the jobs ``keys`` at once: their tasks' worker processes
        are killed (with the other iterations those tasks run)."""
        with self._lock:
            jobs = [self._jobs.pop(key, None) for key in keys]
        batches = {id(job.batch): job.batch for job in jobs if job is not None}
        for batch in batches.values():
            ray.cancel(batch.stream, force=True)

    def _sweep(self):
        # Outcomes no kernel came for; then, its kernel gone, itself.
        while True:
            time.sleep(BEAT_EVERY)
            now = time.monotonic()
            with self._lock:
                for key, job in list(self._jobs.items()):
                    if job.ended_at is not None and now - job.ended_at > KEEP_UNTAKEN:
                        del self._jobs[key]
                orphaned = not self._jobs and now - self._beaten > ORPHANED_AFTER
            if orphaned:
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return


@ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
class _Worker:
    """One of the kernel's worker interpreters, on the cluster: the
    namespace a run leaves stays in its memory, so that a ``repeat``'s next
    iteration runs on it there (see :mod:`pragma_notebook.worker`)."""

    def handle(self, header, blobs):
        from pragma_notebook import worker

        return worker.handle_kept(header, blobs)


class _Submitted:
    """Iterations submitted together: their jobs' keys and specs, on the
    store ``store``; the token of each start (``None``: taken over from a
    gone kernel); where their outcomes still come from, each ``(indices,
    ref, supervisor)``: a ref to the outcomes of those jobs, in order, and
    the supervisor that answers it; the supervisors that follow them; and,
    once their supervisor died under them, the outcomes that came before,
    how many times they were submitted again and how many runs were cut
    short."""

    def __init__(self, keys, specs, store, tokens, parts, supervisors):
        self.keys = keys
        self.specs = specs
        self.store = store
        self.tokens = tokens
        self.parts = parts
        self.supervisors = supervisors
        self.outcomes = [None] * len(keys)
        self.resubmits = 0
        self.cut_short = 0


def _with_lost_runs(outcome, runs):
    """The ``("done", report, state)``, ``("failed", why)`` or
    ``("unstarted", why)`` ``outcome`` with ``runs`` more runs of its
    iteration cut short, as its fourth item: counted as runs and lost
    work, never against the preemption budget."""
    kind, report, *rest = outcome
    return (kind, report, rest[0] if rest else None, runs)


class Dispatcher:
    """Submits iterations to the cluster, polls them, cancels them.

    Iterations are submitted in batches (see the module docs), as tasks
    made by this kernel's supervisor; an iteration that a supervisor runs,
    or ran, for a kernel that died is taken from it, not run again. ``options`` are
    passed to ``ray.init`` (``runtime_env``, ``namespace``, ...); the
    driver's logs stay off by default (``log_to_driver=False``): each run's
    output is kept in its log, as with local workers.
    """

    def __init__(self, address=None, **options):
        options.setdefault("log_to_driver", False)
        # Ray's INFO lines ("Connecting to existing Ray cluster...") would
        # show in the cell that connects.
        options.setdefault("logging_level", logging.WARNING)
        if not ray.is_initialized():
            check_reachable(address)
            ray.init(address=address, **options)
        # The tasks run in this kernel's runtime environment and job: the
        # supervisor is this kernel's own (see the module docs).
        context = ray.get_runtime_context()
        self._runtime_env = dict(context.runtime_env or {})
        digest = hashlib.sha256(json.dumps(self._runtime_env, sort_keys=True, default=str).encode())
        self._name = f"{SUPERVISOR}{digest.hexdigest()[:16]}-{context.get_job_id()}"
        self._supervisor = None
        # Its call to `watch`, which fails once the supervisor is dead.
        self._watch = None
        self._supervisor_lock = threading.Lock()
        # The operations whose held jobs were looked for, and those jobs,
        # each with the supervisor (a gone kernel's) that holds it.
        self._looked = set()
        self._held = {}
        self._lock = threading.Lock()
        # The results taken, for the supervisor to let go of (see
        # RELEASE_EVERY).
        self._taken = []
        self._taken_lock = threading.Lock()
        threading.Thread(target=self._release_taken, name="pragma release", daemon=True).start()

    def keep_messages_in(self, path):
        """Ray's messages to this kernel ("A worker died or was killed while
        executing a task ...", an out-of-memory kill, an autoscaler error)
        are written to ``path`` instead of the cell that runs at the time.

        Ray's driver prints them from a thread of its own to
        ``sys.stdout``, which in a kernel is whatever cell runs then; Ray
        has no setting for it, so its module's printer is wrapped. (A Ray
        without that printer prints them as before.) The driver's copies of
        the workers' own output (``ray.log_to_driver=True``) are bound at
        ``ray.init`` and print as Ray prints them."""
        module = ray._private.worker
        printer = getattr(module, "print_to_stdstream", None)
        if printer is None:
            return
        printer = getattr(printer, "__wrapped__", printer)
        os.makedirs(os.path.dirname(path), exist_ok=True)

        @functools.wraps(printer)
        def kept(data, ignore_prefix=False):
            # The error listener's messages name the raylet as their process.
            if data.get("pid") != "raylet":
                return printer(data, ignore_prefix=ignore_prefix)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            with open(path, "a", encoding="utf-8") as log:
                for line in data.get("lines", []):
                    log.write(f"[{stamp}] {line}" + ("" if line.endswith("\n") else "\n"))
            return None

        module.print_to_stdstream = kept

    def capacity(self):
        """How many iterations may run at once: the cluster's CPUs now."""
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _supervisor_now(self, dead=None):
        """This kernel's supervisor: a new one if it has none yet, or if
        the one it had died (it is ``dead``, or its :meth:`_Supervisor.watch`
        call ended), so that no iteration is sent to a dead one."""
        with self._supervisor_lock:
            gone = (
                self._supervisor is None
                or self._supervisor is dead
                or bool(ray.wait([self._watch], timeout=0)[0])
            )
            if not gone:
                return self._supervisor
            # An actor class (ray.remote), which Ray's stubs do not say here.
            self._supervisor = _Supervisor.options(  # type: ignore[attr-defined]
                name=self._name,
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                runtime_env=self._runtime_env or None,
                # On the kernel's node, and nowhere else: it goes only with
                # the kernel.
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    ray.get_runtime_context().get_node_id(), soft=False
                ),
            ).remote()
            self._watch = self._supervisor.watch.remote()
            return self._supervisor

    def _held_for(self, op):
        """The jobs of ``op`` that supervisors hold (this kernel's, and
        those of kernels gone before), each with its supervisor."""
        held = {}
        names = [
            entry["name"]
            for entry in ray.util.list_named_actors(all_namespaces=True)
            if entry["namespace"] == NAMESPACE and entry["name"].startswith(SUPERVISOR)
        ]
        for name in names:
            try:
                supervisor = ray.get_actor(name, namespace=NAMESPACE)
                for key in ray.get(supervisor.held.remote(op), timeout=30):
                    held[key] = supervisor
            except (ray.exceptions.RayError, ValueError):
                continue  # gone meanwhile, with what it held
        return held

    def submit_batch(self, specs, store):
        """Submits the jobs ``specs`` (JSON, of one operation) on the store
        ``store``, to run one after another in one task; a job a supervisor
        holds from a kernel that died is claimed from it instead."""
        keys = [job_key(spec) for spec in specs]
        supervisor = self._supervisor_now()
        op = keys[0].split("/", 1)[0]
        # Submits come from several threads: the operation's others wait
        # for its look to end.
        with self._lock:
            if op not in self._looked:
                self._looked.add(op)
                self._held.update(self._held_for(op))
            holders = [self._held.pop(key, None) for key in keys]
        held = [holder is not None for holder in holders]
        parts = [
            ([index], holder.claim.remote(keys[index]), holder)
            for index, holder in enumerate(holders)
            if holder is not None
        ]
        tokens = [None if held[index] else uuid.uuid4().hex for index in range(len(keys))]
        fresh = [index for index in range(len(keys)) if not held[index]]
        if fresh:
            run = supervisor.run.remote(
                [keys[i] for i in fresh],
                [tokens[i] for i in fresh],
                [specs[i] for i in fresh],
                store,
            )
            parts.append((fresh, run, supervisor))
        supervisors = {id(s): s for s in [supervisor, *filter(None, holders)]}
        return _Submitted(keys, specs, store, tokens, parts, list(supervisors.values()))

    def poll_batch(self, submitted, timeout):
        """``None`` while the iterations ``submitted`` run (waiting at most
        ``timeout`` seconds), else the outcome of each: ``("done", report,
        state)`` (the resulting state's bytes, or ``None``), ``("lost",
        why)`` when its worker or node died under it, ``("unstarted",
        why)`` when that happened before it ran (or before its result was
        handed over), or ``("failed", why)``. Iterations whose supervisor
        died under them are submitted again (at most :data:`RESUBMITS`
        times): the runs cut short are told as the fourth item of one that
        is done, else failed, else unstarted (carried to its next start)."""
        refs = [ref for _, ref, _ in submitted.parts]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if len(ready) < len(refs):
            return None
        outcomes = submitted.outcomes
        gone = []
        for indices, ref, supervisor in submitted.parts:
            try:
                got = ray.get(ref)
            except _ACTOR_DIED as error:
                if submitted.resubmits < RESUBMITS:
                    gone.append((indices, supervisor))
                    continue
                self._supervisor_now(dead=supervisor)
                got = [("lost", f"the supervisor of the iterations is gone: {error}")] * len(
                    indices
                )
            except ray.exceptions.RayError as error:
                got = [("lost", f"the supervisor of the iterations failed: {error}")] * len(indices)
            if not isinstance(got, list):
                got = [got]  # a claim's
            for index, outcome in zip(indices, got, strict=False):
                outcomes[index] = self._received(outcome)
        if gone:
            self._submit_again(submitted, gone)
            return None
        if submitted.cut_short:
            # On one that is done, or else failed, or else unstarted (its
            # next start tells them; a lost one counts as lost work anyway).
            told = next(
                (
                    i
                    for kind in ("done", "failed", "unstarted")
                    for i, outcome in enumerate(outcomes)
                    if outcome[0] == kind
                ),
                None,
            )
            if told is not None:
                outcomes[told] = _with_lost_runs(outcomes[told], submitted.cut_short)
        with self._taken_lock:
            self._taken.extend(
                (key, token)
                for key, token in zip(submitted.keys, submitted.tokens, strict=False)
                if token is not None
            )
        return outcomes

    def _submit_again(self, submitted, gone):
        """Submits again, to this kernel's supervisor (a new one if that
        was the one that died), the iterations of ``submitted`` whose
        supervisor died under them: ``gone``, each part's indices and its
        supervisor."""
        submitted.resubmits += 1
        # A task runs its iterations one after another: at most one of each
        # was running; those after it never started, and cost nothing. Those
        # before it, whose results went with it, are not known here (about
        # a tenth of a second's work: see batches.rs), and not counted.
        submitted.cut_short += len(gone)
        for _, dead in gone:
            self._supervisor_now(dead=dead)
        supervisor = self._supervisor_now()
        indices = sorted(index for part, _ in gone for index in part)
        for index in indices:
            submitted.tokens[index] = uuid.uuid4().hex
        run = supervisor.run.remote(
            [submitted.keys[i] for i in indices],
            [submitted.tokens[i] for i in indices],
            [submitted.specs[i] for i in indices],
            submitted.store,
        )
        submitted.parts = [(indices, run, supervisor)]
        submitted.supervisors.append(supervisor)

    def _received(self, outcome):
        """What the kernel makes of one iteration's outcome from the
        supervisor: a state kept apart is read from the object store."""
        if outcome is None:
            return ("lost", "the supervisor no longer holds this iteration")
        if outcome[0] == "done-apart":
            try:
                return ("done", outcome[1], ray.get(outcome[2][0]))
            except ray.exceptions.RayError as error:
                # Its node went with it.
                return ("lost", f"the resulting state is lost: {error}")
        return outcome

    def _release_taken(self):
        beaten = 0.0
        while True:
            time.sleep(RELEASE_EVERY)
            with self._taken_lock:
                taken, self._taken = self._taken, []
            # Not after the kernel let go of Ray: a call would start it anew.
            if self._supervisor is None or not ray.is_initialized():
                continue
            try:
                # One that died is replaced now, not when the next
                # iterations are sent to it.
                supervisor = self._supervisor_now()
                if taken:
                    supervisor.release_all.remote(taken)
                if time.monotonic() - beaten > BEAT_EVERY:
                    beaten = time.monotonic()
                    supervisor.beat.remote()
            except ray.exceptions.RayError:
                # Gone with its results: nothing is left to let go of.
                pass

    def cancel_batch(self, submitted):
        """Stops the iterations ``submitted`` at once (``ray.cancel``,
        forced), wherever they are followed."""
        for supervisor in submitted.supervisors:
            supervisor.cancel.remote(submitted.keys)

    # The kernel's worker interpreters as actors (the Rust pool keeps them,
    # and lets them go).

    def start_worker(self):
        """A new worker actor."""
        return _Worker.remote()  # type: ignore[attr-defined]  # an actor class

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
