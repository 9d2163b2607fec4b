//! The Python extension module `pragma_notebook._native` (feature
//! `python`, built by maturin): the lifecycle of notebook operations,
//! driven from the kernel by the `pragma_notebook` package.
//!
//! The kernel hands over its namespace as saved variables (names and
//! bytes, pickled in the kernel thread, where the values live) and, when
//! an operation ends, a callable that makes the changes the lifecycle
//! decides on (all or none: if it raises, the result is kept to apply
//! later, with the error in the outcome); everything between
//! (scheduling, checkpoints, selection, resume, conflicts) runs here, on a
//! runtime of its own, without the GIL.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pragma_checkpoint::Store;
use pragma_executor_local::conflict::compare;
use pragma_executor_local::{Config, Executor, FinalStatus, Observer, Outcome};
use pragma_session::{
    Applied, Change, Digests, LiveState, Resolution, Rule, Running, Session, SessionError, Settle,
    StartRequest, StoreLocation, Ticket,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::Notify;

use crate::{Namespace, PythonHost, WorkerConfig, WorkerPool};

mod types;

use types::{
    AlreadyRunning, FailedIteration, Finished, NotEnded, OperationError, OperationProgress,
    OperationSummary, OperationUsage, ParsedCell, SavedNamespace, SessionOptions, Settled,
    Settling, StoreError, Submitted, UnknownOperation,
};

type NotebookSession = Session<PythonHost, Arc<dyn Store>>;

/// A variable's digest: its saved length and CRC-32.
type Digest = (u64, u32);

fn digest(bytes: &[u8]) -> Digest {
    (bytes.len() as u64, crc32fast::hash(bytes))
}

/// The kernel's namespace as the lifecycle sees it: the variables the
/// kernel saved for this call, how the kernel makes changes, and the
/// names changed.
struct KernelLive {
    identity: String,
    vars: Namespace,
    /// Called with the changes, `[(name, saved value or None to delete)]`.
    apply: Option<Py<PyAny>>,
    applied: Mutex<Vec<String>>,
}

#[async_trait]
impl LiveState for KernelLive {
    type State = Namespace;
    type Digest = Digest;

    fn identity(&self) -> String {
        self.identity.clone()
    }

    async fn capture(&self) -> io::Result<(Namespace, Digests<Digest>)> {
        Ok((self.vars.clone(), digests(&self.vars)))
    }

    async fn digests(&self) -> io::Result<Digests<Digest>> {
        Ok(digests(&self.vars))
    }

    async fn digests_of(&self, state: &Namespace) -> io::Result<Digests<Digest>> {
        saved_here(state)?;
        Ok(digests(state))
    }

    async fn apply(&self, result: &Namespace, changes: &[Change]) -> io::Result<()> {
        saved_here(result)?;
        let Some(apply) = &self.apply else {
            return Err(io::Error::other("this call applies nothing"));
        };
        // The kernel makes them (the values live there), all or none.
        Python::attach(|py| {
            let listed: Vec<(&str, Option<Bound<'_, PyBytes>>)> = changes
                .iter()
                .map(|change| match change {
                    Change::Set(name) => (
                        name.as_str(),
                        result.get(name).map(|saved| PyBytes::new(py, saved)),
                    ),
                    Change::Remove(name) => (name.as_str(), None),
                })
                .collect();
            apply.call1(py, (listed,)).map(drop)
        })
        .map_err(|e| io::Error::other(e.to_string()))?;
        self.applied
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend(changes.iter().map(|change| change.name().to_owned()));
        Ok(())
    }
}

impl KernelLive {
    /// The kernel's namespace as saved for one call; changes are made by
    /// calling `apply`.
    fn new(saved: SavedNamespace, apply: Option<Py<PyAny>>) -> PyResult<KernelLive> {
        Ok(KernelLive {
            identity: saved.identity,
            vars: namespace(saved.names, saved.blobs)?,
            apply,
            applied: Mutex::new(Vec::new()),
        })
    }

    /// The names changed so far.
    fn applied(&self) -> PyResult<Vec<String>> {
        Ok(std::mem::take(&mut *self.applied.lock().map_err(failed)?))
    }
}

/// A result whose variables are still only in a worker is not compared or
/// applied: its empty list of variables would read as every one removed.
fn saved_here(state: &Namespace) -> io::Result<()> {
    if state.is_saved() {
        Ok(())
    } else {
        Err(io::Error::other(
            "the result's variables are still in its worker; it is kept to apply later",
        ))
    }
}

fn digests(vars: &Namespace) -> Digests<Digest> {
    vars.vars()
        .map(|(name, bytes)| (name.to_owned(), digest(bytes)))
        .collect()
}

fn namespace(names: Vec<String>, blobs: Vec<Vec<u8>>) -> PyResult<Namespace> {
    if names.len() != blobs.len() {
        return Err(PyValueError::new_err(
            "as many names as saved values are needed",
        ));
    }
    let mut vars = Namespace::new();
    for (name, blob) in names.into_iter().zip(blobs) {
        vars.insert(name, blob);
    }
    Ok(vars)
}

/// An operation of this kernel.
struct Slot {
    ticket: Option<Ticket<Digest>>,
    /// Its status and cancel.
    observer: Observer<Namespace>,
    outcome: Arc<Mutex<Option<Outcome<Namespace>>>>,
    done: Arc<Notify>,
}

/// The lifecycle of one kernel's operations on one store.
#[pyclass(module = "pragma_notebook._native")]
struct NativeSession {
    runtime: tokio::runtime::Runtime,
    session: Arc<NotebookSession>,
    /// The workers: an operation's are stopped once it ends.
    pool: Arc<WorkerPool>,
    logs: std::path::PathBuf,
    ops: Mutex<HashMap<String, Slot>>,
}

/// `op` is not an operation of this kernel.
fn unknown(op: &str) -> PyErr {
    UnknownOperation::new_err(format!("no operation `{op}` in this kernel"))
}

/// An internal failure (a poisoned lock, the runtime): `RuntimeError`.
fn failed(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

/// A lifecycle error as the exception Python code can catch by kind: an
/// operation this kernel does not have, or has not seen end, as
/// [`UnknownOperation`] and [`NotEnded`]; one that runs already as
/// [`AlreadyRunning`]; the rest as [`OperationError`].
fn session_error(e: SessionError) -> PyErr {
    match &e {
        SessionError::Unknown { .. } => UnknownOperation::new_err(e.to_string()),
        SessionError::NotEnded { .. } => NotEnded::new_err(e.to_string()),
        SessionError::AlreadyRunning { .. } => AlreadyRunning::new_err(e.to_string()),
        _ => OperationError::new_err(e.to_string()),
    }
}

#[pymethods]
impl NativeSession {
    /// A session on the store `store` (a directory, or `s3://BUCKET/PREFIX`
    /// as for the `pragma` command), running bodies with `python` (the
    /// kernel's interpreter) in at most `workers` workers; with `ray` (a
    /// `pragma_notebook.ray_backend.Dispatcher`), iterations whose input
    /// is in the store run as Ray tasks instead, at most `workers` at once
    /// (with `follow_cluster`, as many as the cluster has CPUs, read again
    /// as it grows and shrinks), and the workers are Ray actors. An
    /// iteration whose body raised runs again up to `retries` times (a
    /// lost worker is a preemption, with its own budget).
    #[new]
    fn new(py: Python<'_>, options: SessionOptions) -> PyResult<Self> {
        let SessionOptions {
            store,
            python,
            python_path,
            workers,
            ray,
            follow_cluster,
            retries,
        } = options;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(failed)?;
        let mut config = WorkerConfig::new(python);
        config.python_path = python_path.into_iter().map(Into::into).collect();
        config.size = workers.max(1);
        // The object store's client and the executor start on the runtime
        // they run on.
        let (session, pool, logs) = {
            let _entered = runtime.enter();
            let location = store
                .parse()
                .and_then(|spec| StoreLocation::open(&spec))
                .map_err(|e| StoreError::new_err(e.to_string()))?;
            // Workers' output outside their runs goes beside the runs'
            // logs, not into the kernel's (whatever cell runs then).
            config.logs = Some(location.logs());
            // With Ray, the kernel's workers are actors on the cluster.
            let pool = match &ray {
                Some(dispatcher) => WorkerPool::with_spawner(
                    config,
                    Box::new(crate::ray::RayWorkers::new(dispatcher.clone_ref(py))),
                ),
                None => WorkerPool::new(config),
            };
            let host = PythonHost::new(Arc::clone(&pool)).with_logs(location.logs());
            // Finished parallel iterations are recorded a few times a
            // second, as the command line does: each record creates files
            // in the store, and at 50 a second their creation cost a no-op
            // iteration more than its own run; a crash re-runs little more.
            let settings = Config::default()
                .workers(workers.max(1) as u64)
                .retries(retries)
                .record_interval(std::time::Duration::from_millis(100));
            let checkpoints = Arc::clone(&location.checkpoints);
            let executor = match ray {
                Some(dispatcher) => {
                    // Beside Ray's own messages to the kernel
                    // (`Dispatcher.keep_messages_in`).
                    let notes = crate::ray::Notes::in_file(
                        location
                            .logs()
                            .join("workers")
                            .join(format!("{}-ray.err", std::process::id())),
                    );
                    let backend = crate::ray::RayBackend::new(
                        dispatcher,
                        workers as u64,
                        store,
                        follow_cluster,
                        notes,
                    );
                    Executor::with_backend(host, checkpoints, Arc::new(backend), settings)
                }
                None => Executor::new(host, checkpoints, settings),
            };
            (
                Session::new(executor, location.records()),
                pool,
                location.logs(),
            )
        };
        Ok(NativeSession {
            runtime,
            session: Arc::new(session),
            pool,
            logs,
            ops: Mutex::new(HashMap::new()),
        })
    }

    /// The directory of each run's captured output: `OP/ITERATION-ATTEMPT.out`
    /// and `.err`.
    fn logs_dir(&self) -> String {
        self.logs.display().to_string()
    }

    /// Runs (or resumes) `cell` on the saved variables; returns the
    /// operation id and how: `started`, `resumed` (an interrupted run of
    /// the same cell went on from its checkpoint) or `running` (this
    /// kernel runs that cell already: nothing new started).
    fn submit(
        &self,
        py: Python<'_>,
        cell: &ParsedCell,
        live: SavedNamespace,
    ) -> PyResult<Submitted> {
        let live = KernelLive::new(live, None)?;
        let session = Arc::clone(&self.session);
        let request = StartRequest::new(cell.cell.clone(), cell.name.clone());
        let running = py.detach(|| {
            self.runtime
                .block_on(async move { session.start(&request, &live).await })
        });
        let running = match running {
            Ok(running) => running,
            // Followed here already (taken up after a kernel restart).
            Err(SessionError::AlreadyRunning { op, .. }) if self.follows(&op) => {
                return Ok(Submitted { op, how: "running" });
            }
            Err(e) => return Err(session_error(e)),
        };
        let how = if running.resumed {
            "resumed"
        } else {
            "started"
        };
        Ok(Submitted {
            op: self.follow(running)?,
            how,
        })
    }

    /// The operations of the notebook `identity` left unfinished by a
    /// kernel that is gone (restarted, crashed), not followed here yet.
    fn unfinished(&self, py: Python<'_>, identity: String) -> PyResult<Vec<String>> {
        let session = Arc::clone(&self.session);
        let ops = py.detach(|| {
            self.runtime
                .block_on(async { session.unfinished(&identity).await })
        });
        Ok(ops
            .map_err(session_error)?
            .into_iter()
            .filter(|op| !self.follows(op))
            .collect())
    }

    /// Goes on with `op` here, from its last checkpoint (what
    /// `unfinished` lists); followed as a submitted one.
    fn resume(&self, py: Python<'_>, op: String) -> PyResult<()> {
        let session = Arc::clone(&self.session);
        let running = py.detach(|| {
            self.runtime
                .block_on(async { session.resume::<Digest>(&op, None).await })
        });
        self.follow(running.map_err(session_error)?)?;
        Ok(())
    }

    /// Where `op` stands.
    fn status(&self, op: &str) -> PyResult<OperationProgress> {
        let ops = self.ops.lock().map_err(failed)?;
        let slot = ops.get(op).ok_or_else(|| unknown(op))?;
        let ended = slot.outcome.lock().map_err(failed)?.is_some() || slot.ticket.is_none();
        let status = slot.observer.status();
        let progress = status.schedule.progress();
        let phase = match status.schedule {
            _ if ended => "ended",
            pragma_executor_local::Phase::Queued { .. } => "queued",
            pragma_executor_local::Phase::Running { .. } => "running",
            pragma_executor_local::Phase::Suspended { .. } => "suspended",
            pragma_executor_local::Phase::Ended { .. } => "ended",
        };
        Ok(OperationProgress {
            done: progress.done,
            finished: progress.finished,
            failed: progress.failed,
            phase,
            total: progress.total,
            in_flight: progress.in_flight,
            best_iteration: status.best.map(|b| b.iteration),
            best_score: status.best.and_then(|b| b.score),
            ended,
        })
    }

    /// Waits until `op` ends, at most `timeout` seconds; whether it ended.
    #[pyo3(signature = (op, timeout=None))]
    fn wait(&self, py: Python<'_>, op: &str, timeout: Option<f64>) -> PyResult<bool> {
        let (outcome, done) = {
            let ops = self.ops.lock().map_err(failed)?;
            let slot = ops.get(op).ok_or_else(|| unknown(op))?;
            (Arc::clone(&slot.outcome), Arc::clone(&slot.done))
        };
        let ended = || outcome.lock().map(|o| o.is_some()).unwrap_or(true);
        let deadline =
            timeout.map(|t| std::time::Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        py.detach(|| {
            self.runtime.block_on(async {
                while !ended() {
                    let left =
                        deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
                    if left.is_some_and(|l| l.is_zero()) {
                        return;
                    }
                    // Polled too: a notification may come before the wait.
                    let _ = tokio::time::timeout(
                        left.unwrap_or(Duration::from_millis(100))
                            .min(Duration::from_millis(100)),
                        done.notified(),
                    )
                    .await;
                }
            })
        });
        Ok(ended())
    }

    /// The chart of `op`'s candidates and scores, as SVG (what `pragma
    /// report --svg` draws).
    fn report_svg(&self, py: Python<'_>, op: &str) -> PyResult<String> {
        let session = Arc::clone(&self.session);
        let read = py.detach(|| {
            self.runtime.block_on(async {
                let executor = session.executor();
                let summary = executor.summary(op).await?;
                let candidates = executor.candidates(op).await?.collect().await?;
                Ok::<_, pragma_executor_local::ExecError>((summary, candidates))
            })
        });
        let (summary, candidates) = read.map_err(failed)?;
        pragma_chart::svg(&summary, &candidates).map_err(failed)
    }

    /// Every saved variable of every state the store holds (each
    /// checkpoint's state, each result kept to apply later), once each:
    /// what names the data blobs that must stay. Raises if a state cannot
    /// be read, so that nothing is collected on a partial view.
    fn stored_variables(&self, py: Python<'_>) -> PyResult<Vec<Py<PyBytes>>> {
        let session = Arc::clone(&self.session);
        let found = py.detach(|| {
            self.runtime
                .block_on(async { stored_variables(&session).await })
        });
        let found = found.map_err(failed)?;
        Ok(found
            .into_iter()
            .map(|blob| PyBytes::new(py, &blob).unbind())
            .collect())
    }

    /// Cancels `op`: its workers stop, its last checkpoint stays.
    fn cancel(&self, op: &str) -> PyResult<()> {
        let ops = self.ops.lock().map_err(failed)?;
        let slot = ops.get(op).ok_or_else(|| unknown(op))?;
        slot.observer.cancel();
        Ok(())
    }

    /// Runs `more` iterations beyond the end of `op`, which succeeded and
    /// was applied: a repeat goes on from its last state, a parallel
    /// operation runs its next iterations; its result is applied against
    /// the kernel's variables now (`live`). Followed as a submitted one.
    fn extend(
        &self,
        py: Python<'_>,
        op: String,
        more: u64,
        live: SavedNamespace,
    ) -> PyResult<String> {
        let live = KernelLive::new(live, None)?;
        let session = Arc::clone(&self.session);
        let running = py.detach(|| {
            self.runtime
                .block_on(async move { session.extend(&op, more, &live).await })
        });
        self.follow(running.map_err(session_error)?)
    }

    /// A preemption notice for `op` (the kernel is going): nothing new
    /// starts; what runs has `grace_seconds` to finish; a repeat then
    /// checkpoints its last finished iteration. It ends suspended, and a
    /// later kernel resumes it.
    fn suspend(&self, op: &str, grace_seconds: f64) -> PyResult<()> {
        let grace = std::time::Duration::try_from_secs_f64(grace_seconds).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "grace {grace_seconds}: give seconds from 0 up"
            ))
        })?;
        let ops = self.ops.lock().map_err(failed)?;
        let slot = ops.get(op).ok_or_else(|| unknown(op))?;
        slot.observer.suspend(grace);
        Ok(())
    }

    /// Ends `op` against the kernel's variables now (`live`), making the
    /// changes by calling `apply` with them, `[(name, saved value or None
    /// to delete)]`; returns its summary and the names changed. Conflicts
    /// are settled as `settling` says (a rule: `ask`, `take-background`,
    /// `keep-live`; and the per-variable choices).
    fn finish(
        &self,
        py: Python<'_>,
        op: &str,
        live: SavedNamespace,
        settling: Settling,
        apply: Py<PyAny>,
    ) -> PyResult<Finished> {
        // A cancel's best so far is kept for `%pragma apply`.
        let settle = settle(settling)?.keeping_cancelled_best();
        let live = KernelLive::new(live, Some(apply))?;
        let (ticket, outcome) = {
            let mut ops = self.ops.lock().map_err(failed)?;
            let slot = ops.get_mut(op).ok_or_else(|| unknown(op))?;
            let outcome = slot.outcome.lock().map_err(failed)?.take();
            match (slot.ticket.take(), outcome) {
                (Some(ticket), Some(outcome)) => (ticket, outcome),
                (ticket, outcome) => {
                    slot.ticket = ticket;
                    *slot.outcome.lock().map_err(failed)? = outcome;
                    return Err(NotEnded::new_err(format!(
                        "operation {op} has not ended, or was finished already"
                    )));
                }
            }
        };
        let session = Arc::clone(&self.session);
        let summary = py.detach(|| {
            self.runtime.block_on(async {
                // Saved already (a candidate, a checkpoint), unless
                // something changed that: then fetched here.
                if let Some(best) = &outcome.best {
                    let _ = session.executor().host().fetch(&best.state).await;
                }
                session.finish(ticket, outcome, &live, &settle).await
            })
        });
        Ok(Finished {
            summary: OperationSummary::from(&summary),
            applied: live.applied()?,
        })
    }

    /// The variables `op`'s result changed against what it was submitted
    /// with (set, changed or removed), once it has ended with one; `None`
    /// otherwise. The kernel then saves only those (and what refers to
    /// them) to compare with: a variable the operation did not change is
    /// never applied, whatever the notebook did to it.
    fn changed_names(&self, py: Python<'_>, op: &str) -> PyResult<Option<Vec<String>>> {
        let (submitted, outcome) = {
            let ops = self.ops.lock().map_err(failed)?;
            let slot = ops.get(op).ok_or_else(|| unknown(op))?;
            let Some(ticket) = &slot.ticket else {
                return Ok(None);
            };
            (ticket.submitted().clone(), Arc::clone(&slot.outcome))
        };
        let Some(state) = outcome
            .lock()
            .map_err(failed)?
            .as_ref()
            .and_then(|o| o.best.as_ref())
            .map(|best| best.state.clone())
        else {
            return Ok(None);
        };
        let session = Arc::clone(&self.session);
        let fetched = py.detach(|| {
            self.runtime
                .block_on(async { session.executor().host().fetch(&state).await })
        });
        if fetched.is_err() {
            return Ok(None); // compared in full when it is applied
        }
        // What the conflict check would apply were nothing changed live.
        let changed = compare(&submitted, &submitted, &digests(&state)).apply;
        Ok(Some(changed.into_keys().collect()))
    }

    /// The saved values of `names` in `op`'s kept result (what its
    /// conflicts left), each `None` where the result has no such variable;
    /// all `None` if nothing is kept. To show both sides of a conflict.
    fn kept_values<'py>(
        &self,
        py: Python<'py>,
        op: &str,
        names: Vec<String>,
    ) -> PyResult<Vec<Option<Bound<'py, PyBytes>>>> {
        let session = Arc::clone(&self.session);
        let kept = py.detach(|| {
            self.runtime.block_on(async {
                let Some(state) = session.kept_result(op).await.map_err(session_error)? else {
                    return Ok::<_, PyErr>(None);
                };
                saved_here(&state).map_err(failed)?;
                Ok(Some(state))
            })
        })?;
        Ok(names
            .iter()
            .map(|name| {
                kept.as_ref()
                    .and_then(|state| state.get(name))
                    .map(|saved| PyBytes::new(py, saved))
            })
            .collect())
    }

    /// Applies the kept result of `op` (its conflicts left to settle)
    /// against the kernel's variables now; as `finish`.
    fn apply_kept(
        &self,
        py: Python<'_>,
        op: &str,
        live: SavedNamespace,
        settling: Settling,
        apply: Py<PyAny>,
    ) -> PyResult<Settled> {
        let settle = settle(settling)?;
        let live = KernelLive::new(live, Some(apply))?;
        let session = Arc::clone(&self.session);
        let applied = py.detach(|| {
            self.runtime
                .block_on(async { session.apply_kept(op, &live, &settle).await })
        });
        let summary = match applied.map_err(session_error)? {
            Applied::Now(summary) => Some(OperationSummary::from(&*summary)),
            _ => None,
        };
        Ok(Settled {
            summary,
            applied: live.applied()?,
        })
    }
}

impl NativeSession {
    /// Whether this kernel follows `op` (it has not been finished here).
    fn follows(&self, op: &str) -> bool {
        self.ops
            .lock()
            .is_ok_and(|ops| ops.get(op).is_some_and(|slot| slot.ticket.is_some()))
    }

    /// Follows a started operation as every host does (its events kept in
    /// the store), in a task of the runtime, keeping its status, cancel and
    /// outcome for this kernel; its id.
    fn follow(&self, running: Running<Namespace, Digest>) -> PyResult<String> {
        let op = running.ticket.op().to_owned();
        let slot = Slot {
            ticket: Some(running.ticket),
            observer: running.handle.observer(),
            outcome: Arc::default(),
            done: Arc::default(),
        };
        let (outcome, done) = (Arc::clone(&slot.outcome), Arc::clone(&slot.done));
        let (session, pool) = (Arc::clone(&self.session), Arc::clone(&self.pool));
        let handle = running.handle;
        let ended_op = op.clone();
        self.runtime.spawn(async move {
            // An executor that stops answering ends the operation as
            // failed, saying why, rather than leaving it running forever.
            let ended = session
                .follow(handle, &mut ())
                .await
                .unwrap_or_else(|error| {
                    Outcome::new(
                        &ended_op,
                        FinalStatus::Failed {
                            reason: format!("the executor stopped following it: {error}"),
                        },
                    )
                });
            if let Ok(mut outcome) = outcome.lock() {
                *outcome = Some(ended);
            }
            done.notify_waiters();
            done.notify_one();
            pool.retire(&ended_op).await;
        });
        self.ops.lock().map_err(failed)?.insert(op.clone(), slot);
        Ok(op)
    }
}

/// Every saved variable of every state in the session's store and its
/// kept results, without repeats.
async fn stored_variables(session: &NotebookSession) -> io::Result<Vec<Arc<[u8]>>> {
    let log = session.executor().log();
    let mut seen = std::collections::HashSet::new();
    let mut found = Vec::new();
    let mut keep = |state: Namespace| {
        for (_, blob) in state.vars() {
            if seen.insert(blob.to_vec()) {
                found.push(Arc::from(blob));
            }
        }
    };
    for op in log.operations().await.map_err(io::Error::other)? {
        for manifest in log.checkpoints(&op).await.map_err(io::Error::other)? {
            if !manifest.parts().iter().any(|part| part.name == "state") {
                continue;
            }
            let mut part = log
                .open_part(&manifest, "state")
                .await
                .map_err(io::Error::other)?;
            keep(crate::host::read_snapshot(&mut part).await?);
        }
        let kept = session.records().kept_result_path(&op);
        if let Ok(mut file) = tokio::fs::File::open(&kept).await {
            keep(crate::host::read_snapshot(&mut file).await?);
        }
    }
    Ok(found)
}

fn settle(settling: Settling) -> PyResult<Settle> {
    let Settling {
        rule,
        take_background,
        keep_live,
    } = settling;
    let mut settle = match rule.as_str() {
        "ask" => Settle::ask(),
        "take-background" => Settle::by_rule(Rule::TakeBackground),
        "keep-live" => Settle::by_rule(Rule::KeepLive),
        other => {
            return Err(PyValueError::new_err(format!(
                "on_conflict `{other}` is not a rule: use take-background, keep-live or ask"
            )));
        }
    };
    for name in take_background {
        settle = settle.choose(name, Resolution::TakeBackground);
    }
    for name in keep_live {
        settle = settle.choose(name, Resolution::KeepLive);
    }
    Ok(settle)
}

/// Parses a `#pragma` cell (`name` is what errors call it, `In[3]`), or
/// raises `ValueError` with the error rendered as the `pragma` command
/// renders it (what, where, and a suggestion).
#[pyfunction]
fn parse_cell(cell: &str, name: &str) -> PyResult<ParsedCell> {
    let parsed = pragma_parse::ParsedCell::parse(cell)
        .map_err(|e| PyValueError::new_err(e.render(cell, name)))?;
    Ok(ParsedCell {
        cell: parsed,
        name: name.to_owned(),
    })
}

/// The extension module.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<NativeSession>()?;
    module.add_class::<OperationProgress>()?;
    module.add_class::<ParsedCell>()?;
    module.add_class::<OperationSummary>()?;
    module.add_class::<OperationUsage>()?;
    module.add_class::<FailedIteration>()?;
    module.add("AlreadyRunning", module.py().get_type::<AlreadyRunning>())?;
    module.add("OperationError", module.py().get_type::<OperationError>())?;
    module.add_class::<Submitted>()?;
    module.add_class::<Finished>()?;
    module.add_class::<Settled>()?;
    module.add_class::<crate::bucket::StoredBlob>()?;
    module.add(
        "UnknownOperation",
        module.py().get_type::<UnknownOperation>(),
    )?;
    module.add("NotEnded", module.py().get_type::<NotEnded>())?;
    module.add("StoreError", module.py().get_type::<StoreError>())?;
    module.add_class::<crate::bucket::BucketBlobs>()?;
    module.add_function(wrap_pyfunction!(parse_cell, module)?)?;
    module.add_function(wrap_pyfunction!(crate::ray::run_remote_job, module)?)?;
    module.add_function(wrap_pyfunction!(crate::ray::job_key, module)?)?;
    #[cfg(feature = "test-checks")]
    module.add_function(wrap_pyfunction!(
        crate::ray::ray_backend_conformance,
        module
    )?)?;
    Ok(())
}
