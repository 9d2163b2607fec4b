//! The executor: submission, the coordinator task, handles, resumption.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Maps keyed by small sequential numbers: ordered maps are cheaper than
/// hashing them.
type ByWorker<V> = BTreeMap<WorkerId, V>;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use pragma_checkpoint::{CheckpointLog, Lease, Manifest, Meta, Part, Store};
use pragma_parse::{Directive, Objective as DirectiveObjective};
use pragma_scheduler::{
    Action, Budgets, Event as SchedulerEvent, OpId, Plan, Resume, Scheduler, StartFrom, WorkerId,
};
use pragma_selector::{Evaluation, Objective, Offer, Selector};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backend::{
    ExecutionBackend, Job, JobOutcome, JobSpec, LocalOutput, RemoteOutput, StateRef, TokioBackend,
};
use crate::host::{Host, IterationContext, RunError, derive_seed};
use crate::record::{BestRecord, CandidateRecord, Record, score_text, score_value};
use crate::report::{
    Best, BestScore, CandidateScore, Event, FinalStatus, OperationSummary, Outcome, Status, Usage,
};

/// How the executor runs operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Worker slots of the default backend (ignored with a custom backend,
    /// which says its own capacity).
    pub workers: u64,
    /// Retries of an iteration whose body failed.
    pub retries: u32,
    /// Re-runs of an iteration whose worker was lost.
    pub preemptions: u32,
    /// The most iteration starts one operation may make (`None`: no cap).
    pub max_attempts: Option<u64>,
    /// Parallel: finished iterations are recorded durably at most this
    /// often (a group commit). A crash loses at most the iterations
    /// finished since the last record; a longer interval costs less.
    pub record_interval: std::time::Duration,
}

impl Default for Config {
    /// As many workers as the machine has cores, 2 retries, 10 preemptions,
    /// records every 20 ms.
    fn default() -> Self {
        Config {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            retries: 2,
            preemptions: 10,
            max_attempts: None,
            record_interval: std::time::Duration::from_millis(20),
        }
    }
}

impl Config {
    /// With `workers` worker slots for the default backend.
    pub fn workers(mut self, workers: u64) -> Self {
        self.workers = workers;
        self
    }

    /// With `retries` retries of an iteration whose body failed.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// With `preemptions` re-runs of an iteration whose worker was lost.
    pub fn preemptions(mut self, preemptions: u32) -> Self {
        self.preemptions = preemptions;
        self
    }

    /// With at most `max_attempts` iteration starts per operation.
    pub fn max_attempts(mut self, max_attempts: Option<u64>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Recording finished parallel iterations at most every `interval`.
    pub fn record_interval(mut self, interval: std::time::Duration) -> Self {
        self.record_interval = interval;
        self
    }
}

/// Why the executor could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The cell's directive is invalid.
    #[error("invalid directive: {0}")]
    Directive(#[from] pragma_parse::ParseError),
    /// Some variables of the state cannot be saved, so the operation cannot
    /// run in the background.
    #[error(
        "cannot run in the background: these variables cannot be saved: {}; remove them or recreate them in the cell",
        .0.join(", ")
    )]
    Unsaveable(Vec<String>),
    /// The checkpoint store failed.
    #[error("checkpoint store: {0}")]
    Store(#[from] pragma_checkpoint::Error),
    /// The host could not snapshot or restore a state.
    #[error("saving or restoring the state: {0}")]
    State(io::Error),
    /// No such operation in the store, or it cannot be resumed.
    #[error("operation `{op}`: {reason}")]
    Operation {
        /// The operation.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// The executor stopped (dropped, crashed) before the operation ended.
    #[error(
        "the executor stopped before the operation ended; resume it with a new executor on the same store"
    )]
    Stopped,
}

/// Runs operations in the background. Cheap to share behind an `Arc`.
///
/// Must be created inside a tokio runtime. Dropping it stops everything at
/// once, as a crash would: the store keeps the last checkpoints, and a new
/// executor on the same store can [`resume`](Executor::resume) them.
pub struct Executor<H: Host, S: Store + 'static> {
    shared: Arc<Shared<H, S>>,
    control: mpsc::UnboundedSender<Msg<H::State>>,
    coordinator: tokio::task::JoinHandle<()>,
}

struct Shared<H, S> {
    host: H,
    log: CheckpointLog<S>,
    backend: Arc<dyn ExecutionBackend>,
    config: Config,
}

impl<H: Host, S: Store + 'static> Drop for Executor<H, S> {
    fn drop(&mut self) {
        self.coordinator.abort();
    }
}

/// A submitted operation: its events, its status, and its outcome.
pub struct Handle<State> {
    op: String,
    events: mpsc::UnboundedReceiver<Event>,
    status: watch::Receiver<Status>,
    done: oneshot::Receiver<Outcome<State>>,
    control: mpsc::UnboundedSender<Msg<State>>,
}

impl<State> Handle<State> {
    /// The operation's id (its name in the store).
    pub fn id(&self) -> &str {
        &self.op
    }

    /// The next event, in order; `None` once the operation has ended and
    /// every event was taken.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The events that are already there, without waiting.
    pub fn try_events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
        events
    }

    /// The status now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Cancels the operation: workers stop at once, the last checkpoint is
    /// kept, nothing is applied. Does nothing once it has ended.
    pub fn cancel(&self) {
        let _ = self.control.send(Msg::Cancel(self.op.clone()));
    }

    /// Waits for the outcome.
    pub async fn wait(self) -> Result<Outcome<State>, ExecError> {
        // Nobody reads the events any more: let the executor stop making them.
        let Handle { done, events, .. } = self;
        drop(events);
        done.await.map_err(|_| ExecError::Stopped)
    }

    /// Waits for the outcome, and gives back the events too.
    pub async fn wait_with_events(mut self) -> Result<(Outcome<State>, Vec<Event>), ExecError> {
        let mut events = Vec::new();
        while let Some(event) = self.events.recv().await {
            events.push(event);
        }
        let outcome = self.done.await.map_err(|_| ExecError::Stopped)?;
        Ok((outcome, events))
    }
}

/// What the coordinator hears.
enum Msg<St> {
    Submit(Box<NewOp<St>>),
    JobDone {
        op: OpId,
        worker: WorkerId,
        output: JobOutcome,
    },
    Evaluated {
        op: OpId,
        worker: WorkerId,
        iterations_done: u64,
        evaluation: Evaluation,
        /// The state that was evaluated, to be committed.
        state: St,
    },
    Committed {
        op: OpId,
        commit: CommitKind,
        result: Result<(u64, u64), CommitFailure>,
    },
    Finalized {
        op: OpId,
        status: FinalStatus,
        best: Option<Best<St>>,
    },
    Cancel(String),
    /// Time for a group commit that was held back.
    Flush(OpId),
}

enum CommitKind {
    Checkpoint {
        worker: WorkerId,
        iterations_done: u64,
    },
    Batch {
        workers: Vec<(WorkerId, u64)>,
        best_iteration: Option<u64>,
        /// Whether the record was full, its entries, and how many
        /// candidates and abandoned iterations it brings up to date.
        written: (bool, usize, usize, usize),
    },
}

/// What one job gives back.
struct JobResult<St> {
    iteration: u64,
    result: Result<St, RunError>,
    evaluation: Option<Evaluation>,
    seconds: f64,
    /// Runs of it cut short elsewhere (a cluster requeued it) before this
    /// one: lost work the scheduler never saw.
    lost_runs: u64,
}

/// An operation ready to be handed to the coordinator.
struct NewOp<St> {
    name: String,
    directive: Directive,
    body: Arc<str>,
    lease: Lease,
    submission: Arc<St>,
    submission_generation: u64,
    progress: Option<Resume>,
    record: Option<Record>,
    last_generation: u64,
    events: mpsc::UnboundedSender<Event>,
    status: watch::Sender<Status>,
    done: oneshot::Sender<Outcome<St>>,
}

/// The coordinator's view of one operation.
struct Op<St> {
    name: String,
    directive: Directive,
    body: Arc<str>,
    lease: Lease,
    /// The state at submission, while iterations may start from it (a
    /// repeat lets it go after its first checkpoint: one copy less).
    submission: Option<Arc<St>>,
    selector: Option<Selector>,
    candidates: Vec<CandidateScore>,
    last_error: BTreeMap<u64, String>,
    abandoned: Vec<(u64, String)>,
    finished: BTreeSet<u64>,
    iterations_done: u64,
    last_generation: u64,
    /// The commit that holds the state at submission.
    submission_generation: u64,
    /// The iteration variable's name and the selection expression, shared
    /// with every job.
    var: Arc<str>,
    expr: Option<Arc<str>>,
    /// The operation's name, shared with every job.
    shared_name: Arc<str>,
    best: Option<BestRecord>,
    best_state: Option<St>,
    best_dirty: bool,
    pending: Vec<(WorkerId, u64)>,
    committing: bool,
    /// Parallel records: the last full one, the deltas since, their
    /// entries, and how much of the candidates and abandoned iterations
    /// the records cover.
    full_generation: Option<u64>,
    delta_generations: Vec<u64>,
    delta_entries: usize,
    full_entries: usize,
    recorded_candidates: usize,
    recorded_abandoned: usize,
    /// When the last group commit started, and whether one is waiting
    /// for its turn.
    last_record: Instant,
    flush_scheduled: bool,
    /// Group commits that failed in a row.
    record_failures: u32,
    ending: Option<pragma_scheduler::Outcome>,
    interrupted: Option<(u64, String)>,
    /// Why the operation stopped (its store is full), if it did.
    stopped: Option<String>,
    started: bool,
    usage: Usage,
    usage_before: Usage,
    /// Runs lost where a backend ran jobs (see `JobResult::lost_runs`).
    lost_elsewhere: u64,
    events: mpsc::UnboundedSender<Event>,
    status: watch::Sender<Status>,
    done: Option<oneshot::Sender<Outcome<St>>>,
}

impl<St> Op<St> {
    /// Sends an event, built (from the operation's name) only while the
    /// handle still listens.
    fn emit(&self, event: impl FnOnce(String) -> Event) {
        if !self.events.is_closed() {
            let _ = self.events.send(event(self.name.clone()));
        }
    }

    fn is_repeat(&self) -> bool {
        matches!(self.directive, Directive::Repeat(_))
    }

    fn iteration_var(&self) -> &str {
        &self.var
    }

    fn best_score(&self) -> Option<BestScore> {
        self.best.as_ref().map(|b| BestScore {
            iteration: b.iteration,
            score: score_value(&b.score),
        })
    }

    /// A whole record of the operation.
    fn record(&self, ended: Option<FinalStatus>) -> Record {
        Record {
            finished: self.finished.iter().copied().collect(),
            candidates: self.candidates.iter().map(CandidateRecord::from).collect(),
            failed: self.abandoned.clone(),
            ..self.record_header(ended)
        }
    }

    /// A record without the lists that grow with the iterations.
    fn record_header(&self, ended: Option<FinalStatus>) -> Record {
        Record {
            base: None,
            directive: self.directive.to_string(),
            body: self.body.to_string(),
            ended,
            iterations_done: self.iterations_done,
            finished: Vec::new(),
            selector: self.selector.clone(),
            best: self.best.clone(),
            candidates: Vec::new(),
            failed: Vec::new(),
            usage: self.usage,
        }
    }
}

fn plan_of(directive: &Directive, capacity: u64) -> Plan {
    match directive {
        Directive::Repeat(r) => Plan::Repeat {
            iterations: r.iterations(),
            checkpoint_period: r.checkpoint_period(),
        },
        Directive::Parallel(p) => Plan::Parallel {
            iterations: p.iterations(),
            max_workers: Some(p.parallel_runs().unwrap_or(capacity).max(1)),
        },
        Directive::Async => Plan::Async,
    }
}

fn selector_of(directive: &Directive) -> Option<Selector> {
    directive.select().map(|s| {
        Selector::new(match s.objective() {
            DirectiveObjective::Max => Objective::Max,
            DirectiveObjective::Min => Objective::Min,
        })
    })
}

impl<H: Host, S: Store + 'static> Executor<H, S> {
    /// An executor running iterations as tokio tasks, `config.workers` at once.
    pub fn new(host: H, store: S, config: Config) -> Self {
        let backend = Arc::new(TokioBackend::new(config.workers));
        Executor::with_backend(host, store, backend, config)
    }

    /// An executor running iterations on `backend`.
    pub fn with_backend(
        host: H,
        store: S,
        backend: Arc<dyn ExecutionBackend>,
        config: Config,
    ) -> Self {
        let shared = Arc::new(Shared {
            host,
            log: CheckpointLog::new(store),
            backend,
            config,
        });
        let (control, inbox) = mpsc::unbounded_channel();
        let coordinator = Coordinator {
            shared: Arc::clone(&shared),
            scheduler: Scheduler::new(shared.backend.capacity()),
            ops: BTreeMap::new(),
            by_name: HashMap::new(),
            running: ByWorker::new(),
            worker_states: ByWorker::new(),
            tasks: JoinSet::new(),
            spare_actions: Vec::new(),
            control: control.clone(),
        };
        let coordinator = tokio::spawn(coordinator.run(inbox));
        Executor {
            shared,
            control,
            coordinator,
        }
    }

    /// The host this executor runs bodies with.
    pub fn host(&self) -> &H {
        &self.shared.host
    }

    /// The checkpoint log underneath.
    pub fn log(&self) -> &CheckpointLog<S> {
        &self.shared.log
    }

    /// Submits a cell (directive line, then body) to run on `state`.
    /// Returns once the submission is durable; the operation may wait for
    /// workers.
    pub async fn submit(&self, cell: &str, state: H::State) -> Result<Handle<H::State>, ExecError> {
        let parsed = pragma_parse::parse_cell(cell)?;
        self.submit_parsed(parsed.directive, parsed.body, state)
            .await
    }

    /// Submits an already parsed directive and its body.
    pub async fn submit_parsed(
        &self,
        directive: Directive,
        body: &str,
        state: H::State,
    ) -> Result<Handle<H::State>, ExecError> {
        let (name, lease, body, generation) =
            self.record_submission(&directive, body, &state).await?;
        self.hand_over(
            name,
            directive,
            body,
            lease,
            (Arc::new(state), generation),
            None,
            None,
            generation,
        )
    }

    /// Records a submission durably without running it, and returns the
    /// operation's id: the operation waits in the store until an executor
    /// on the same store [`resume`](Executor::resume)s it, in this process
    /// or another one (a job a cluster starts later, say). Until then its
    /// status is that of an operation stopped before its first iteration.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pragma_checkpoint::MemoryStore;
    /// use pragma_executor_local::{Config, Executor, FinalStatus};
    /// use pragma_executor_local::testkit::ScriptedHost;
    ///
    /// let store = MemoryStore::new();
    /// let host = ScriptedHost::new();
    /// let here = Executor::new(host.clone(), store.clone(), Config::default());
    /// let cell = pragma_parse::parse_cell("#pragma repeat --iterations 3 --max-by value\nstep").unwrap();
    /// let op = here.prepare(cell.directive, cell.body, Default::default()).await.unwrap();
    /// assert!(host.runs().is_empty(), "nothing runs yet");
    ///
    /// // Elsewhere, later: it runs.
    /// let there = Executor::new(host.clone(), store, Config::default());
    /// let outcome = there.resume(&op).await.unwrap().wait().await.unwrap();
    /// assert_eq!(outcome.status, FinalStatus::Succeeded);
    /// assert_eq!(host.runs().len(), 3);
    /// # }
    /// ```
    pub async fn prepare(
        &self,
        directive: Directive,
        body: &str,
        state: H::State,
    ) -> Result<String, ExecError> {
        let (name, _lease, _, _) = self.record_submission(&directive, body, &state).await?;
        Ok(name)
    }

    /// Claims a new operation and commits its submission: the id, the
    /// lease, the body and the submission's generation.
    async fn record_submission(
        &self,
        directive: &Directive,
        body: &str,
        state: &H::State,
    ) -> Result<(String, Lease, Arc<str>, u64), ExecError> {
        let unsaveable = self.shared.host.unsaveable(state);
        if !unsaveable.is_empty() {
            return Err(ExecError::Unsaveable(unsaveable));
        }
        let name = format!("op-{}", uuid::Uuid::new_v4().simple());
        let lease = self.shared.log.claim(&name).await?;
        let body: Arc<str> = Arc::from(body);
        let record = Record {
            base: None,
            directive: directive.to_string(),
            body: body.to_string(),
            ended: None,
            iterations_done: 0,
            finished: Vec::new(),
            selector: selector_of(directive),
            best: None,
            candidates: Vec::new(),
            failed: Vec::new(),
            usage: Usage::default(),
        };
        let (generation, _) =
            commit_state(&self.shared, &lease, &record, "submission", state).await?;
        Ok((name, lease, body, generation))
    }

    #[allow(clippy::too_many_arguments)]
    fn hand_over(
        &self,
        name: String,
        directive: Directive,
        body: Arc<str>,
        lease: Lease,
        submission: (Arc<H::State>, u64),
        progress: Option<Resume>,
        record: Option<Record>,
        last_generation: u64,
    ) -> Result<Handle<H::State>, ExecError> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let initial = Status {
            schedule: pragma_scheduler::Status::Queued {
                reason: pragma_scheduler::WaitReason::CapacityZero,
                progress: pragma_scheduler::Progress::default(),
            },
            best: None,
        };
        let (status_tx, status) = watch::channel(initial);
        let (done_tx, done) = oneshot::channel();
        let new = NewOp {
            name: name.clone(),
            directive,
            body,
            lease,
            submission: submission.0,
            submission_generation: submission.1,
            progress,
            record,
            last_generation,
            events: events_tx,
            status: status_tx,
            done: done_tx,
        };
        self.control
            .send(Msg::Submit(Box::new(new)))
            .map_err(|_| ExecError::Stopped)?;
        Ok(Handle {
            op: name,
            events,
            status,
            done,
            control: self.control.clone(),
        })
    }

    /// The operations in the store that have not ended (after a crash, say).
    pub async fn unfinished(&self) -> Result<Vec<String>, ExecError> {
        let mut unfinished = Vec::new();
        for op in self.shared.log.operations().await? {
            if let Some(latest) = self.shared.log.checkpoints(&op).await?.last()
                && let Ok(record) = latest.meta_as::<Record>()
                && record.ended.is_none()
            {
                unfinished.push(op);
            }
        }
        Ok(unfinished)
    }

    /// What the store says about an operation: its directive, status,
    /// progress, candidates and usage (from its latest record; nothing is
    /// verified or loaded).
    pub async fn summary(&self, op: &str) -> Result<OperationSummary, ExecError> {
        let checkpoints = self.shared.log.checkpoints(op).await?;
        let latest = checkpoints.last().ok_or_else(|| ExecError::Operation {
            op: op.to_owned(),
            reason: "there is no such operation in the store".to_owned(),
        })?;
        let record = whole_record(op, &checkpoints, latest)?;
        let total = record
            .directive
            .parse::<Directive>()
            .map(|d| d.iterations())
            .unwrap_or(0);
        let repeat = record.directive.starts_with("#pragma repeat");
        Ok(OperationSummary {
            op: op.to_owned(),
            directive: record.directive,
            status: record.ended,
            iterations: total,
            done: if repeat {
                record.iterations_done
            } else {
                record.finished.len() as u64
            },
            best: record.best.as_ref().map(|b| BestScore {
                iteration: b.iteration,
                score: score_value(&b.score),
            }),
            candidates: record.candidates.iter().map(CandidateScore::from).collect(),
            candidates_are_checkpoints: repeat,
            failed_iterations: record.failed,
            usage: record.usage,
        })
    }

    /// Every operation in the store, in order of their ids.
    pub async fn operations(&self) -> Result<Vec<String>, ExecError> {
        Ok(self.shared.log.operations().await?)
    }

    /// Resumes an operation from its last checkpoint (in this process or
    /// after a crash of another): what was finished does not run again.
    /// Earlier executors working on it are fenced out.
    pub async fn resume(&self, op: &str) -> Result<Handle<H::State>, ExecError> {
        let problem = |reason: &str| ExecError::Operation {
            op: op.to_owned(),
            reason: reason.to_owned(),
        };
        let lease = self.shared.log.claim(op).await?;
        let loaded = self
            .shared
            .log
            .load_latest(op)
            .await?
            .ok_or_else(|| problem("it has no checkpoint to resume from"))?;
        let checkpoints = self.shared.log.checkpoints(op).await?;
        let record = whole_record(op, &checkpoints, &loaded.manifest)?;
        let directive: Directive =
            record
                .directive
                .parse()
                .map_err(|e: pragma_parse::ParseError| {
                    problem(&format!("its directive does not parse: {e}"))
                })?;
        let first = checkpoints
            .first()
            .cloned()
            .ok_or_else(|| problem("its submission is gone"))?;
        let submission = restore_part(&self.shared, &first, "submission").await?;
        let first_generation = first.generation();
        let progress = match directive {
            Directive::Repeat(_) => Resume::Repeat {
                iterations_done: record.iterations_done,
            },
            _ => Resume::Parallel {
                finished: record.finished.clone(),
            },
        };
        let body: Arc<str> = Arc::from(record.body.as_str());
        // A repeat goes on from its newest state: the latest record may
        // hold none (the final record of a cancelled operation, say).
        let latest = loaded.manifest.generation();
        let generation = match directive {
            Directive::Repeat(_) => checkpoints
                .iter()
                .rev()
                .filter(|m| m.generation() <= latest)
                .find(|m| m.parts().iter().any(|p| p.name == "state"))
                .map_or(latest, Manifest::generation),
            _ => latest,
        };
        self.hand_over(
            op.to_owned(),
            directive,
            body,
            lease,
            (Arc::new(submission), first_generation),
            Some(progress),
            Some(record),
            generation,
        )
    }
}

/// The whole record of an operation as of `latest`: a full record as it
/// is, a delta rebuilt from the full record it builds on and the deltas
/// after it.
fn whole_record(
    op: &str,
    checkpoints: &[Manifest],
    latest: &Manifest,
) -> Result<Record, ExecError> {
    let problem = |reason: String| ExecError::Operation {
        op: op.to_owned(),
        reason,
    };
    let parse = |manifest: &Manifest| {
        manifest.meta_as::<Record>().map_err(|e| {
            problem(format!(
                "its checkpoint was not written by this executor: {e}"
            ))
        })
    };
    let record = parse(latest)?;
    let Some(base) = record.base else {
        return Ok(record);
    };
    let full = checkpoints
        .iter()
        .find(|m| m.generation() == base)
        .ok_or_else(|| problem("the full record its latest record builds on is gone".to_owned()))?;
    let mut whole = parse(full)?;
    for manifest in checkpoints
        .iter()
        .filter(|m| m.generation() > base && m.generation() <= latest.generation())
    {
        whole.apply(parse(manifest)?, manifest.generation());
    }
    whole.base = None;
    Ok(whole)
}

/// Streams a state's snapshot into a commit whose meta is `record`.
async fn commit_state<H: Host, S: Store>(
    shared: &Shared<H, S>,
    lease: &Lease,
    record: &Record,
    part: &str,
    state: &H::State,
) -> Result<(u64, u64), ExecError> {
    let meta = Meta::from_serialize(record).map_err(|e| ExecError::State(io::Error::other(e)))?;
    let (mut writer, reader) = tokio::io::duplex(1 << 16);
    let failed = Arc::new(Mutex::new(None));
    let mut reader = GuardedReader {
        inner: reader,
        failed: Arc::clone(&failed),
    };
    let snapshot = async {
        let result = shared.host.snapshot(state, &mut writer).await;
        let result = match result {
            Ok(()) => writer.shutdown().await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result
            && let Ok(mut slot) = failed.lock()
        {
            *slot = Some(e.to_string());
        }
        drop(writer);
        result
    };
    let commit = shared
        .log
        .commit(lease, meta, vec![Part::new(part, &mut reader)]);
    let (snapshot, commit) = tokio::join!(snapshot, commit);
    snapshot.map_err(ExecError::State)?;
    let manifest = commit?;
    Ok((manifest.generation(), manifest.bytes()))
}

/// Commits a record without data.
async fn commit_record<H: Host, S: Store>(
    shared: &Shared<H, S>,
    lease: &Lease,
    record: &Record,
) -> Result<u64, ExecError> {
    let meta = Meta::from_serialize(record).map_err(|e| ExecError::State(io::Error::other(e)))?;
    Ok(shared
        .log
        .commit(lease, meta, Vec::new())
        .await?
        .generation())
}

async fn restore_part<H: Host, S: Store>(
    shared: &Shared<H, S>,
    manifest: &Manifest,
    part: &str,
) -> Result<H::State, ExecError> {
    let mut reader = shared
        .log
        .open_part(manifest, part)
        .await
        .map_err(ExecError::Store)?;
    shared
        .host
        .restore(&mut reader)
        .await
        .map_err(ExecError::State)
}

/// The result of a job that ran elsewhere, its state restored from the
/// store (and the store's copy deleted).
async fn restore_remote<H: Host, S: Store>(
    shared: &Shared<H, S>,
    op: &str,
    iteration: u64,
    remote: RemoteOutput,
) -> JobResult<H::State> {
    let result = match remote.result {
        Err(e) => Err(e),
        Ok(key) => {
            let restored = match shared.log.store().get(&key).await {
                Ok(mut reader) => shared.host.restore(&mut reader).await.map_err(|e| {
                    RunError::Failed(format!(
                        "restoring the result of iteration {iteration} of {op}: {e}"
                    ))
                }),
                Err(e) => Err(RunError::Failed(format!(
                    "reading the result of iteration {iteration} of {op}: {e}"
                ))),
            };
            let _ = shared.log.store().delete(&key).await;
            restored
        }
    };
    let evaluation = match &result {
        Ok(_) => remote.evaluation,
        Err(_) => None,
    };
    JobResult {
        iteration,
        result,
        evaluation,
        seconds: remote.seconds,
        lost_runs: remote.lost_runs,
    }
}

async fn restore_generation<H: Host, S: Store>(
    shared: &Shared<H, S>,
    op: &str,
    generation: u64,
    part: &str,
) -> Result<H::State, ExecError> {
    let manifest = shared.log.load(op, generation).await?;
    restore_part(shared, &manifest, part).await
}

/// A reader that fails at its end if the snapshot that feeds it failed, so
/// a half-written snapshot is never committed.
struct GuardedReader {
    inner: tokio::io::DuplexStream,
    failed: Arc<Mutex<Option<String>>>,
}

impl AsyncRead for GuardedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() == before
            && let Ok(failed) = self.failed.lock()
            && let Some(message) = failed.as_ref()
        {
            return Poll::Ready(Err(io::Error::other(format!(
                "the snapshot failed: {message}"
            ))));
        }
        polled
    }
}

struct Running {
    iteration: u64,
    cancel: CancellationToken,
    task: tokio::task::AbortHandle,
}

impl Drop for Running {
    /// A job outlives neither its entry nor the coordinator (a dropped
    /// executor is a crash: its jobs stop). Jobs are plain tasks rather than
    /// members of the coordinator's `JoinSet`, which costs a little per
    /// iteration.
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Coordinator<H: Host, S: Store + 'static> {
    shared: Arc<Shared<H, S>>,
    scheduler: Scheduler,
    ops: BTreeMap<OpId, Op<H::State>>,
    by_name: HashMap<String, OpId>,
    running: ByWorker<Running>,
    worker_states: ByWorker<H::State>,
    tasks: JoinSet<()>,
    /// An empty vector for the scheduler's actions, reused.
    spare_actions: Vec<Action>,
    control: mpsc::UnboundedSender<Msg<H::State>>,
}

impl<H: Host, S: Store + 'static> Coordinator<H, S> {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Msg<H::State>>) {
        while let Some(msg) = inbox.recv().await {
            // Reap finished tasks so the set does not grow.
            while self.tasks.try_join_next().is_some() {}
            self.handle(msg);
        }
    }

    fn handle(&mut self, msg: Msg<H::State>) {
        match msg {
            Msg::Submit(new) => self.submit(*new),
            Msg::JobDone { op, worker, output } => self.job_done(op, worker, output),
            Msg::Evaluated {
                op,
                worker,
                iterations_done,
                evaluation,
                state,
            } => self.evaluated(op, worker, iterations_done, evaluation, state),
            Msg::Committed { op, commit, result } => self.committed(op, commit, result),
            Msg::Finalized { op, status, best } => self.finalized(op, status, best),
            Msg::Flush(id) => {
                if let Some(op) = self.ops.get_mut(&id) {
                    op.flush_scheduled = false;
                }
                self.commit_batch(id);
                self.finish_if_idle(id);
            }
            Msg::Cancel(name) => {
                if let Some(&op) = self.by_name.get(&name) {
                    let actions = self.scheduler.handle(SchedulerEvent::Cancel(op));
                    self.act(actions);
                }
            }
        }
    }

    fn update_status(&self, id: OpId) {
        if let (Some(op), Some(schedule)) = (self.ops.get(&id), self.scheduler.status(id)) {
            op.status.send_replace(Status {
                schedule,
                best: op.best_score(),
            });
        }
    }

    fn submit(&mut self, new: NewOp<H::State>) {
        let config = self.shared.config;
        let budgets = Budgets {
            retries: config.retries,
            preemptions: config.preemptions,
            max_attempts: config.max_attempts,
        };
        let plan = plan_of(&new.directive, self.shared.backend.capacity());
        let var: Arc<str> = Arc::from(new.directive.iteration_var().unwrap_or("iteration"));
        let expr: Option<Arc<str>> = new.directive.select().map(|s| Arc::from(s.expr()));
        let mut op = Op {
            name: new.name.clone(),
            selector: selector_of(&new.directive),
            directive: new.directive,
            body: new.body,
            lease: new.lease,
            submission: Some(new.submission),
            candidates: Vec::new(),
            last_error: BTreeMap::new(),
            abandoned: Vec::new(),
            finished: BTreeSet::new(),
            iterations_done: 0,
            last_generation: new.last_generation,
            submission_generation: new.submission_generation,
            var,
            shared_name: Arc::from(new.name.as_str()),
            expr,
            best: None,
            best_state: None,
            best_dirty: false,
            pending: Vec::new(),
            committing: false,
            full_generation: None,
            delta_generations: Vec::new(),
            delta_entries: 0,
            full_entries: 0,
            recorded_candidates: 0,
            recorded_abandoned: 0,
            record_failures: 0,
            last_record: Instant::now(),
            flush_scheduled: false,
            ending: None,
            interrupted: None,
            stopped: None,
            started: false,
            usage: Usage::default(),
            usage_before: Usage::default(),
            lost_elsewhere: 0,
            events: new.events,
            status: new.status,
            done: Some(new.done),
        };
        if let Some(record) = new.record {
            op.selector = record.selector;
            op.candidates = record.candidates.iter().map(CandidateScore::from).collect();
            op.abandoned = record.failed;
            op.finished = record.finished.into_iter().collect();
            op.iterations_done = record.iterations_done;
            op.best = record.best.map(|mut best| {
                best.generation = best.generation.or(Some(new.last_generation));
                best
            });
            op.usage = record.usage;
            op.usage_before = record.usage;
        }
        let result = match &new.progress {
            Some(progress) => {
                op.emit(|op| Event::Resumed {
                    op,
                    iterations_done: match progress {
                        Resume::Repeat { iterations_done } => *iterations_done,
                        Resume::Parallel { finished } => finished.len() as u64,
                    },
                });
                self.scheduler.resume(
                    plan,
                    budgets,
                    new.progress.clone().unwrap_or(Resume::Parallel {
                        finished: Vec::new(),
                    }),
                )
            }
            None => self.scheduler.submit(plan, budgets),
        };
        let (id, actions) = match result {
            Ok(submitted) => submitted,
            Err(e) => {
                op.emit(|op| Event::Finished {
                    op,
                    status: FinalStatus::Failed {
                        reason: e.to_string(),
                    },
                    best: None,
                });
                return;
            }
        };
        self.by_name.insert(op.name.clone(), id);
        self.ops.insert(id, op);
        if let Some(pragma_scheduler::Status::Queued { reason, .. }) = self.scheduler.status(id)
            && actions.is_empty()
            && let Some(op) = self.ops.get(&id)
        {
            op.emit(|op| Event::Queued {
                op,
                reason: reason.to_string(),
            });
        }
        self.act(actions);
        self.update_status(id);
    }

    fn act(&mut self, mut actions: Vec<Action>) {
        // Nearly always one operation: no allocation for it.
        let (mut first, mut others): (Option<OpId>, Vec<OpId>) = (None, Vec::new());
        let mut touch = |op: OpId| match first {
            None => first = Some(op),
            Some(f) if f == op => {}
            Some(_) => {
                if !others.contains(&op) {
                    others.push(op);
                }
            }
        };
        for action in actions.drain(..) {
            match action {
                Action::Start {
                    op,
                    worker,
                    iteration,
                    attempt,
                    from,
                } => {
                    touch(op);
                    self.start(op, worker, iteration, attempt, from);
                }
                Action::Checkpoint {
                    op,
                    worker,
                    iterations_done,
                } => {
                    touch(op);
                    self.checkpoint(op, worker, iterations_done);
                }
                Action::Stop { op, worker } => {
                    touch(op);
                    if let Some(running) = self.running.remove(&worker) {
                        running.cancel.cancel();
                        running.task.abort();
                    }
                    self.worker_states.remove(&worker);
                }
                Action::Release { op, worker } => {
                    touch(op);
                    self.worker_states.remove(&worker);
                }
                Action::IterationAbandoned { op, iteration } => {
                    touch(op);
                    if let Some(op) = self.ops.get_mut(&op) {
                        let error = op
                            .last_error
                            .remove(&iteration)
                            .unwrap_or_else(|| "preempted too often".into());
                        op.abandoned.push((iteration, error));
                    }
                }
                Action::Finished { op, outcome } => {
                    touch(op);
                    if let Some(o) = self.ops.get_mut(&op) {
                        o.ending = Some(outcome);
                    }
                    self.finish_if_idle(op);
                }
            }
        }
        for op in first.into_iter().chain(others) {
            self.update_status(op);
        }
        // Keep the (now empty) vector for the next event.
        if actions.capacity() > self.spare_actions.capacity() {
            self.spare_actions = actions;
        }
    }

    fn start(&mut self, id: OpId, worker: WorkerId, iteration: u64, attempt: u32, from: StartFrom) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if !op.started {
            op.started = true;
            op.emit(|op| Event::Started { op });
        }
        if attempt > 1 {
            op.emit(|op| Event::Retrying {
                op,
                iteration,
                attempt,
            });
        }
        op.emit(|op| Event::IterationStarted {
            op,
            iteration,
            attempt,
        });
        enum Source<St> {
            Ready(St),
            Load(u64, &'static str),
        }
        let input = match from {
            StartFrom::Submission => Some((op.submission_generation, "submission")),
            StartFrom::Previous if self.worker_states.contains_key(&worker) => None,
            StartFrom::Previous | StartFrom::Checkpoint { .. } => {
                Some((op.last_checkpoint(), "state"))
            }
        };
        let seed = derive_seed(&op.name, iteration);
        let spec = JobSpec {
            op: Arc::clone(&op.shared_name),
            iteration,
            iterations: op.directive.iterations(),
            attempt,
            iteration_var: Arc::clone(&op.var),
            seed,
            body: Arc::clone(&op.body),
            expr: if op.is_repeat() {
                None
            } else {
                op.expr.clone()
            },
            input: input.map(|(generation, part)| StateRef {
                generation,
                part: part.into(),
            }),
        };
        let source = match from {
            StartFrom::Submission => match &op.submission {
                Some(state) => Source::Ready((**state).clone()),
                None => Source::Load(op.submission_generation, "submission"),
            },
            StartFrom::Previous => match self.worker_states.remove(&worker) {
                Some(state) => Source::Ready(state),
                None => Source::Load(op.last_checkpoint(), "state"),
            },
            StartFrom::Checkpoint { .. } => Source::Load(op.last_checkpoint(), "state"),
        };
        let cancel = CancellationToken::new();
        let ctx = IterationContext {
            op: Arc::clone(&op.shared_name),
            iteration,
            attempt,
            iteration_var: Arc::clone(&op.var),
            seed,
            cancel: cancel.clone(),
        };
        let evaluate = if op.is_repeat() {
            None
        } else {
            Some(op.expr.clone())
        };
        let body = Arc::clone(&op.body);
        let name = Arc::clone(&op.shared_name);
        let shared = Arc::clone(&self.shared);
        let job = Job::new(spec, async move {
            let begin = Instant::now();
            let state = match source {
                Source::Ready(state) => Ok(state),
                Source::Load(generation, part) => {
                    restore_generation(&shared, &name, generation, part)
                        .await
                        .map_err(|e| {
                            RunError::Failed(format!("restoring the last checkpoint: {e}"))
                        })
                }
            };
            let (result, evaluation) = match state {
                Err(e) => (Err(e), None),
                Ok(mut state) => {
                    shared
                        .host
                        .set_iteration_var(&mut state, &ctx.iteration_var, iteration);
                    match shared.host.run(&body, &mut state, &ctx).await {
                        Err(e) => (Err(e), None),
                        Ok(()) => {
                            let evaluation = match &evaluate {
                                Some(Some(expr)) => Some(shared.host.evaluate(expr, &state).await),
                                _ => None,
                            };
                            (Ok(state), evaluation)
                        }
                    }
                }
            };
            LocalOutput::new(JobResult {
                iteration,
                result,
                evaluation,
                seconds: begin.elapsed().as_secs_f64(),
                lost_runs: 0,
            })
        });
        let backend = Arc::clone(&self.shared.backend);
        let control = self.control.clone();
        let task = tokio::spawn(async move {
            let output = backend.execute(worker, job).await;
            let _ = control.send(Msg::JobDone {
                op: id,
                worker,
                output,
            });
        });
        self.running.insert(
            worker,
            Running {
                iteration,
                cancel,
                task: task.abort_handle(),
            },
        );
    }

    fn job_done(&mut self, id: OpId, worker: WorkerId, output: JobOutcome) {
        // A job that ran elsewhere left its state in the store: restore it
        // first (the worker stays busy meanwhile), then handle it as any.
        let output = match output {
            JobOutcome::Remote(remote) => {
                if let (Some(running), Some(op)) = (self.running.get(&worker), self.ops.get(&id)) {
                    let shared = Arc::clone(&self.shared);
                    let control = self.control.clone();
                    let (iteration, name) = (running.iteration, op.name.clone());
                    self.tasks.spawn(async move {
                        let output = restore_remote(&shared, &name, iteration, remote).await;
                        let _ = control.send(Msg::JobDone {
                            op: id,
                            worker,
                            output: JobOutcome::Ran(LocalOutput::new(output)),
                        });
                    });
                }
                return;
            }
            JobOutcome::Ran(local) => local.take::<JobResult<H::State>>(),
            _ => None,
        };
        let Some(running) = self.running.remove(&worker) else {
            return; // stopped meanwhile
        };
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let Some(output) = output else {
            op.emit(|op| Event::WorkerLost {
                op,
                iteration: Some(running.iteration),
            });
            self.worker_states.remove(&worker);
            let actions = self.scheduler.handle(SchedulerEvent::WorkerLost(worker));
            self.act(actions);
            return;
        };
        let JobResult {
            iteration,
            result,
            evaluation,
            seconds,
            lost_runs,
        } = output;
        op.usage.worker_seconds += seconds;
        op.lost_elsewhere += lost_runs;
        let event = match result {
            Err(RunError::Cancelled) => return,
            Err(RunError::InteractiveInput(message)) => {
                op.emit(|op| Event::Interrupted {
                    op,
                    iteration,
                    message: message.clone(),
                });
                op.interrupted = Some((iteration, message));
                SchedulerEvent::Cancel(id)
            }
            Err(RunError::Failed(error)) => {
                op.emit(|op| Event::IterationFailed {
                    op,
                    iteration,
                    error: error.clone(),
                });
                op.last_error.insert(iteration, error);
                SchedulerEvent::IterationFailed(worker)
            }
            Ok(state) if op.is_repeat() => {
                op.emit(|op| Event::IterationFinished {
                    op,
                    iteration,
                    score: None,
                    invalid: None,
                });
                self.worker_states.insert(worker, state);
                SchedulerEvent::IterationFinished(worker)
            }
            Ok(mut state) => {
                // Parallel or async: a candidate. Recorded durably before
                // the scheduler hears that it finished.
                let (score, invalid, new_best) = match (&mut op.selector, evaluation) {
                    (Some(selector), Some(evaluation)) => {
                        let offer = selector.offer(iteration, evaluation.clone());
                        let score = match (&offer, &evaluation) {
                            (Offer::Invalid(_), _) => None,
                            (_, Evaluation::Score(s)) => Some(*s),
                            _ => None,
                        };
                        let invalid = match &offer {
                            Offer::Invalid(reason) => Some(reason.to_string()),
                            _ => None,
                        };
                        (score, invalid, offer.is_new_best())
                    }
                    _ => (None, None, true),
                };
                op.candidates.push(CandidateScore {
                    iteration,
                    score,
                    invalid: invalid.clone(),
                });
                op.emit(|op| Event::IterationFinished {
                    op,
                    iteration,
                    score,
                    invalid,
                });
                if new_best {
                    self.shared
                        .host
                        .remove_iteration_var(&mut state, op.iteration_var());
                    op.best = Some(BestRecord {
                        iteration,
                        score: score_text(score),
                        generation: None,
                    });
                    op.best_state = Some(state);
                    op.best_dirty = true;
                }
                // Recorded durably by the next group commit; until then
                // a crash loses it like an unsaved repeat iteration.
                op.pending.push((worker, iteration));
                self.commit_batch(id);
                SchedulerEvent::IterationFinished(worker)
            }
        };
        let mut actions = std::mem::take(&mut self.spare_actions);
        self.scheduler.handle_into(event, &mut actions);
        self.act(actions);
    }

    /// Records finished parallel iterations (and a new best state) in one
    /// commit, unless a commit is already on its way.
    fn commit_batch(&mut self, id: OpId) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if op.committing || op.pending.is_empty() || (op.flush_scheduled && op.ending.is_none()) {
            return;
        }
        refresh_usage(op, self.scheduler.status(id).map(|s| s.progress()));
        // At most one group commit per interval, unless the operation ends.
        let interval = self.shared.config.record_interval;
        let since = op.last_record.elapsed();
        if since < interval && op.ending.is_none() {
            op.flush_scheduled = true;
            let control = self.control.clone();
            self.tasks.spawn(async move {
                tokio::time::sleep(interval - since).await;
                let _ = control.send(Msg::Flush(id));
            });
            return;
        }
        op.last_record = Instant::now();
        op.committing = true;
        let workers = std::mem::take(&mut op.pending);
        // A delta lists what changed since the previous record; a full
        // record everything. A full one is written once the deltas since
        // the last outweigh it a few times over, so the bytes written stay
        // linear in the number of iterations, and full records (and the
        // clean-ups after them) are rare.
        let new_entries = workers.len() + op.candidates.len() - op.recorded_candidates;
        let full = op.full_generation.is_none()
            || op.delta_entries + new_entries > 3 * op.full_entries.max(256);
        let mut record;
        if full {
            record = op.record(None);
            record.finished.extend(workers.iter().map(|(_, i)| *i));
            record.finished.sort_unstable();
        } else {
            record = op.record_header(None);
            record.base = op.full_generation;
            record.finished = workers.iter().map(|(_, i)| *i).collect();
            record.candidates = op.candidates[op.recorded_candidates..]
                .iter()
                .map(CandidateRecord::from)
                .collect();
            record.failed = op.abandoned[op.recorded_abandoned..].to_vec();
        }
        let written = (full, new_entries, op.candidates.len(), op.abandoned.len());
        let best_state = if op.best_dirty {
            op.best_dirty = false;
            op.best_state.clone()
        } else {
            None
        };
        let best_iteration = best_state
            .as_ref()
            .and(op.best.as_ref())
            .map(|b| b.iteration);
        if best_state.is_none()
            && let Some(best) = &mut record.best
            && best.generation.is_none()
        {
            best.generation = Some(op.last_generation);
        }
        // What must survive the clean-up: the submission, the best, and
        // the chain of records since the last full one.
        let mut keep = vec![op.submission_generation];
        if !full {
            keep.extend(op.full_generation);
            keep.extend(op.delta_generations.iter().copied());
        }
        let clean_up = full || best_state.is_some();
        let lease = op.lease.clone();
        let shared = Arc::clone(&self.shared);
        let control = self.control.clone();
        self.tasks.spawn(async move {
            let result = match &best_state {
                Some(state) => commit_state(&shared, &lease, &record, "state", state).await,
                None => commit_record(&shared, &lease, &record)
                    .await
                    .map(|g| (g, 0)),
            };
            let result = if clean_up {
                retain(&shared, &lease, &record, keep, result).await
            } else {
                result.map_err(CommitFailure::from)
            };
            let _ = control.send(Msg::Committed {
                op: id,
                commit: CommitKind::Batch {
                    workers,
                    best_iteration,
                    written,
                },
                result,
            });
        });
    }

    fn checkpoint(&mut self, id: OpId, worker: WorkerId, iterations_done: u64) {
        let Some(op) = self.ops.get(&id) else { return };
        let Some(state) = self.worker_states.get(&worker).cloned() else {
            return;
        };
        let expr = op.expr.clone();
        let shared = Arc::clone(&self.shared);
        let control = self.control.clone();
        self.tasks.spawn(async move {
            let evaluation = match expr {
                Some(expr) => shared.host.evaluate(&expr, &state).await,
                None => Evaluation::Score(0.0),
            };
            let _ = control.send(Msg::Evaluated {
                op: id,
                worker,
                iterations_done,
                evaluation,
                state,
            });
        });
    }

    fn evaluated(
        &mut self,
        id: OpId,
        worker: WorkerId,
        iterations_done: u64,
        evaluation: Evaluation,
        mut state: H::State,
    ) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if !self.worker_states.contains_key(&worker) {
            return; // the worker was lost or stopped meanwhile
        }
        let iteration = iterations_done - 1;
        let mut score = None;
        let mut invalid = None;
        if let Some(selector) = &mut op.selector {
            let offer = selector.offer(iteration, evaluation.clone());
            match (&offer, &evaluation) {
                (Offer::Invalid(reason), _) => invalid = Some(reason.to_string()),
                (_, Evaluation::Score(s)) => score = Some(*s),
                _ => {}
            }
            if offer.is_new_best() {
                op.best = Some(BestRecord {
                    iteration,
                    score: score_text(score),
                    generation: None,
                });
                let mut best = state.clone();
                self.shared
                    .host
                    .remove_iteration_var(&mut best, op.iteration_var());
                op.best_state = Some(best);
            }
        }
        op.candidates.push(CandidateScore {
            iteration,
            score,
            invalid,
        });
        refresh_usage(op, self.scheduler.status(id).map(|s| s.progress()));
        let mut record = op.record(None);
        record.iterations_done = iterations_done;
        op.committing = true;
        let keep = vec![op.submission_generation];
        let lease = op.lease.clone();
        let shared = Arc::clone(&self.shared);
        let control = self.control.clone();
        // The checkpoint holds the state as the next iteration continues
        // from it: the iteration variable stays.
        self.shared
            .host
            .set_iteration_var(&mut state, op.iteration_var(), iteration);
        self.tasks.spawn(async move {
            let result = commit_state(&shared, &lease, &record, "state", &state).await;
            let result = retain(&shared, &lease, &record, keep, result).await;
            let _ = control.send(Msg::Committed {
                op: id,
                commit: CommitKind::Checkpoint {
                    worker,
                    iterations_done,
                },
                result,
            });
        });
    }

    fn committed(
        &mut self,
        id: OpId,
        commit: CommitKind,
        result: Result<(u64, u64), CommitFailure>,
    ) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.committing = false;
        let mut events = Vec::new();
        let mut retry_at_once = true;
        match (commit, result) {
            (
                CommitKind::Checkpoint {
                    worker,
                    iterations_done,
                },
                Ok((generation, bytes)),
            ) => {
                op.iterations_done = iterations_done;
                op.last_generation = generation;
                op.usage.bytes_checkpointed += bytes;
                // Rewinds go to this checkpoint from now on.
                op.submission = None;
                if let Some(best) = &mut op.best
                    && best.generation.is_none()
                {
                    best.generation = Some(generation);
                }
                let score = op.candidates.last().and_then(|c| c.score);
                op.emit(|op| Event::CheckpointCommitted {
                    op,
                    generation,
                    iterations_done,
                    score,
                    recorded: Vec::new(),
                });
                events.push(SchedulerEvent::CheckpointCommitted(worker));
            }
            (
                CommitKind::Checkpoint {
                    worker: _,
                    iterations_done,
                },
                Err(error),
            ) if error.storage_full => {
                // Running on would only lose more work: the operation
                // stops at its last checkpoint, to be resumed when there is
                // room (cancelling frees the worker that waits here).
                op.stopped = Some(format!(
                    "the checkpoint after iteration {} could not be saved: {}",
                    iterations_done - 1,
                    error.message
                ));
                events.push(SchedulerEvent::Cancel(id));
            }
            (
                CommitKind::Checkpoint {
                    worker,
                    iterations_done,
                },
                Err(error),
            ) => {
                op.emit(|op| Event::IterationFailed {
                    op,
                    iteration: iterations_done - 1,
                    error: format!("the checkpoint could not be saved: {error}"),
                });
                op.last_error.insert(iterations_done - 1, error.message);
                events.push(SchedulerEvent::CheckpointFailed(worker));
            }
            (
                CommitKind::Batch {
                    workers,
                    best_iteration,
                    written: (full, entries, candidates, abandoned),
                },
                Ok((generation, bytes)),
            ) => {
                // The scheduler heard of these when they finished.
                op.record_failures = 0;
                if full {
                    op.full_generation = Some(generation);
                    op.delta_generations.clear();
                    op.delta_entries = 0;
                    op.full_entries = op.finished.len() + workers.len() + candidates;
                } else {
                    op.delta_generations.push(generation);
                    op.delta_entries += entries;
                }
                op.recorded_candidates = candidates;
                op.recorded_abandoned = abandoned;
                op.last_generation = generation;
                op.usage.bytes_checkpointed += bytes;
                if let (Some(best), Some(iteration)) = (&mut op.best, best_iteration)
                    && best.iteration == iteration
                    && best.generation.is_none()
                {
                    best.generation = Some(generation);
                }
                op.finished.extend(workers.iter().map(|(_, i)| *i));
                let iterations_done = op.finished.len() as u64;
                op.emit(|op| Event::CheckpointCommitted {
                    op,
                    generation,
                    iterations_done,
                    score: None,
                    recorded: workers.iter().map(|(_, i)| *i).collect(),
                });
            }
            (CommitKind::Batch { mut workers, .. }, Err(error)) => {
                if error.storage_full && op.stopped.is_none() {
                    op.stopped = Some(format!(
                        "finished iterations could not be recorded: {}",
                        error.message
                    ));
                    events.push(SchedulerEvent::Cancel(id));
                }
                // Try again with the next commit; the results stay in memory.
                tracing::warn!(op = %op.name, %error, "finished iterations could not be recorded yet");
                op.best_dirty = op.best.as_ref().is_some_and(|b| b.generation.is_none());
                workers.append(&mut op.pending);
                op.pending = workers;
                op.record_failures += 1;
                retry_at_once = false;
            }
        }
        for event in events {
            let actions = self.scheduler.handle(event);
            self.act(actions);
        }
        // A record that failed is tried again with the next one (the next
        // finished iteration, the flush, the end), not at once: a store
        // that keeps failing would otherwise be asked in a tight loop.
        if retry_at_once {
            self.commit_batch(id);
        }
        self.finish_if_idle(id);
        self.update_status(id);
    }

    /// Ends an operation once the scheduler says so and no commit is on
    /// its way: works out the status and the best state, writes the final
    /// record.
    fn finish_if_idle(&mut self, id: OpId) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let Some(outcome) = op.ending else { return };
        if op.committing || op.done.is_none() {
            return;
        }
        if !op.pending.is_empty() && op.record_failures < 3 && op.stopped.is_none() {
            // Record the last finished iterations first.
            self.commit_batch(id);
            return;
        }
        op.committing = true;
        let status = match (outcome, &op.interrupted) {
            (_, Some((iteration, message))) => FinalStatus::Interrupted {
                iteration: *iteration,
                message: message.clone(),
            },
            (pragma_scheduler::Outcome::Cancelled, None) if op.stopped.is_some() => {
                FinalStatus::Stopped {
                    reason: op.stopped.clone().unwrap_or_default(),
                }
            }
            (pragma_scheduler::Outcome::Cancelled, None) => {
                op.emit(|op| Event::Cancelled { op });
                FinalStatus::Cancelled
            }
            (pragma_scheduler::Outcome::Failed(reason), None) => FinalStatus::Failed {
                reason: reason.to_string(),
            },
            (pragma_scheduler::Outcome::Succeeded, None) => {
                match op.selector.as_ref().map(Selector::result) {
                    Some(Err(none)) => FinalStatus::Failed {
                        reason: none.to_string(),
                    },
                    _ => FinalStatus::Succeeded,
                }
            }
        };
        refresh_usage(op, self.scheduler.status(id).map(|s| s.progress()));
        // Everything finished is on record by now: the end is a delta on
        // the chain of records, not a full record of every candidate again.
        let all_recorded = op.pending.is_empty()
            && op.recorded_candidates == op.candidates.len()
            && op.recorded_abandoned == op.abandoned.len();
        let record = match op.full_generation {
            Some(base) if all_recorded => Record {
                base: Some(base),
                ..op.record_header(Some(status.clone()))
            },
            _ => op.record(Some(status.clone())),
        };
        let best = if status == FinalStatus::Succeeded {
            op.best.clone()
        } else {
            None
        };
        let best_state = op.best_state.take();
        let var = Arc::clone(&op.var);
        let (lease, name) = (op.lease.clone(), op.name.clone());
        let last_generation = op.last_generation;
        let shared = Arc::clone(&self.shared);
        let control = self.control.clone();
        self.tasks.spawn(async move {
            let mut status = status;
            let mut record = record;
            let best = match best {
                None => None,
                Some(best) => {
                    let state = match best_state {
                        Some(state) => Ok(state),
                        None => {
                            let generation = best.generation.unwrap_or(last_generation);
                            restore_generation(&shared, &name, generation, "state")
                                .await
                                .map(|mut state| {
                                    shared.host.remove_iteration_var(&mut state, &var);
                                    state
                                })
                        }
                    };
                    match state {
                        Ok(state) => Some(Best {
                            iteration: best.iteration,
                            score: score_value(&best.score),
                            state,
                        }),
                        Err(e) => {
                            status = FinalStatus::Failed {
                                reason: format!("the best state cannot be restored: {e}"),
                            };
                            record.ended = Some(status.clone());
                            None
                        }
                    }
                }
            };
            // A stopped operation's store holds its last checkpoint as a
            // crash would leave it: no final record, which would count what
            // was never saved (and there is no room for it anyway).
            let stopped = matches!(status, FinalStatus::Stopped { .. });
            if !stopped && let Err(e) = commit_record(&shared, &lease, &record).await {
                tracing::warn!(op = %name, error = %e, "the final record could not be written");
            }
            let _ = control.send(Msg::Finalized {
                op: id,
                status,
                best,
            });
        });
    }

    fn finalized(&mut self, id: OpId, status: FinalStatus, best: Option<Best<H::State>>) {
        let Some(mut op) = self.ops.remove(&id) else {
            return;
        };
        self.by_name.remove(&op.name);
        let best_score = best.as_ref().map(|b| BestScore {
            iteration: b.iteration,
            score: b.score,
        });
        op.emit(|op| Event::Finished {
            op,
            status: status.clone(),
            best: best_score,
        });
        let outcome = Outcome {
            op: op.name.clone(),
            status,
            best,
            candidates: op.candidates.clone(),
            failed_iterations: op.abandoned.clone(),
            usage: op.usage,
        };
        if let Some(schedule) = self.scheduler.status(id) {
            op.status.send_replace(Status {
                schedule,
                best: best_score,
            });
        }
        if let Some(done) = op.done.take() {
            let _ = done.send(outcome);
        }
    }
}

/// Brings `op`'s usage up to the scheduler's count of its runs, so that
/// every record carries it (a resume after a crash starts from there).
fn refresh_usage<St>(op: &mut Op<St>, progress: Option<pragma_scheduler::Progress>) {
    if let Some(progress) = progress {
        op.usage.iterations_run =
            op.usage_before.iterations_run + progress.attempts + op.lost_elsewhere;
        op.usage.work_lost = op.usage_before.work_lost + progress.lost + op.lost_elsewhere;
    }
}

impl<St> Op<St> {
    /// The generation of the last repeat checkpoint (0: the submission).
    fn last_checkpoint(&self) -> u64 {
        self.last_generation
    }
}

/// Why a commit failed, and whether it was for want of room.
#[derive(Debug)]
struct CommitFailure {
    message: String,
    storage_full: bool,
}

impl std::fmt::Display for CommitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ExecError> for CommitFailure {
    fn from(error: ExecError) -> Self {
        CommitFailure {
            storage_full: match &error {
                ExecError::State(io) => storage_full(io),
                other => storage_full(other),
            },
            message: error.to_string(),
        }
    }
}

/// Whether `error` comes of a full disk or store, wherever in its chain of
/// causes (a checkpoint write, a snapshot the host streamed).
fn storage_full(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if matches!(
            error.downcast_ref::<pragma_checkpoint::Error>(),
            Some(pragma_checkpoint::Error::StorageFull { .. })
        ) {
            return true;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded
                || io.raw_os_error() == Some(28)
            {
                return true;
            }
            // An error wrapped in an io::Error (a store's, say).
            if let Some(inner) = io.get_ref()
                && storage_full(inner)
            {
                return true;
            }
        }
        cause = error.source();
    }
    false
}

/// Keeps `keep`, the latest and the best; failures to clean up are logged,
/// not fatal.
async fn retain<H: Host, S: Store>(
    shared: &Shared<H, S>,
    lease: &Lease,
    record: &Record,
    mut keep: Vec<u64>,
    committed: Result<(u64, u64), ExecError>,
) -> Result<(u64, u64), CommitFailure> {
    let (generation, bytes) = committed.map_err(CommitFailure::from)?;
    if let Some(best) = &record.best {
        keep.push(best.generation.unwrap_or(generation));
    }
    if let Err(e) = shared.log.retain(lease, &keep).await {
        tracing::warn!(op = lease.op(), error = %e, "old checkpoints could not be deleted");
    }
    Ok((generation, bytes))
}
