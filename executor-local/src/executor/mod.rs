//! The executor's public face: [`Executor`] (submit, prepare, resume, list
//! and summarise operations), the [`Handle`] of a submitted operation, its
//! [`Config`] and [`ExecError`]. The work itself happens in the
//! coordinator task (`crate::coordinator`); this module records
//! submissions and hands operations over to it.

mod handle;

use std::sync::Arc;

use pragma_checkpoint::{CheckpointLog, Lease, Manifest, Store};
use pragma_parse::Directive;
use pragma_scheduler::Resume;
use tokio::sync::{mpsc, oneshot, watch};

pub use handle::{Handle, Observer};

use crate::config::Config;
use crate::error::ExecError;
use crate::shared::Shared;

use crate::backend::TokioBackend;
use crate::coordinator::{Coordinator, Msg};
use crate::op::selector_of;
use crate::op::{NewOp, RecordedChain};
use crate::persist::candidates::{Candidates, OpenPart, commits_of};
use crate::persist::{CandidatesPart, commit_state, restore_part, whole_record};
use crate::record::{Record, count_of, scheduler_ranges, score_value};
use crate::report::{BestScore, CandidateScore, FinalStatus, OperationSummary, Status, Usage};
use pragma_contract::ExecutionBackend;
use pragma_contract::Host;

/// Runs operations in the background. Cheap to share behind an `Arc`.
///
/// Must be created inside a tokio runtime. Dropping it stops everything at
/// once, as a crash would: the store keeps the last checkpoints, and a new
/// executor on the same store can [`resume`](Executor::resume) them.
pub struct Executor<H: Host, S: Store + 'static> {
    shared: Arc<Shared<H, S>>,
    control: mpsc::UnboundedSender<Msg<H::State>>,
    coordinator: tokio::task::JoinHandle<()>,
    /// Whether [`unfinished`](Executor::unfinished) has cleared what
    /// crashed writers left: once per executor, not at every listing.
    abandoned_removed: std::sync::atomic::AtomicBool,
}

impl<H: Host, S: Store + 'static> Drop for Executor<H, S> {
    fn drop(&mut self) {
        self.coordinator.abort();
    }
}

impl<H: Host, S: Store + 'static> Executor<H, S> {
    /// An executor running iterations as tokio tasks, `config.workers` at once.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (its coordinator is a task of the runtime it
    /// is made in): make it inside `#[tokio::main]`, a `#[tokio::test]`, or
    /// after `Runtime::enter`.
    pub fn new(host: H, store: S, config: Config) -> Self {
        let backend = Arc::new(TokioBackend::new(config.workers));
        Executor::with_backend(host, store, backend, config)
    }

    /// An executor running iterations on `backend`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as [`Executor::new`].
    pub fn with_backend(
        host: H,
        store: S,
        backend: Arc<dyn ExecutionBackend>,
        config: Config,
    ) -> Self {
        assert!(
            tokio::runtime::Handle::try_current().is_ok(),
            "pragma_executor_local::Executor must be made inside a tokio runtime (its coordinator \
             is a task of it): make it in `#[tokio::main]` or `#[tokio::test]`, or after \
             `Runtime::enter()`"
        );
        let shared = Arc::new(Shared {
            host,
            log: CheckpointLog::new(store),
            backend,
            config,
        });
        let (control, inbox) = mpsc::unbounded_channel();
        let coordinator = Coordinator::spawn(Arc::clone(&shared), control.clone(), inbox);
        Executor {
            shared,
            control,
            coordinator,
            abandoned_removed: std::sync::atomic::AtomicBool::new(false),
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
        self.record(directive, body, state).await?.start()
    }

    /// Submits in two steps: records the submission durably and returns
    /// its id, and [`Recorded::start`] runs it. In between a host writes
    /// its own records of the operation (what cell, on what state), so
    /// that a crash can never leave durable checkpoints nothing points to.
    /// Dropped without starting, the operation waits in the store as after
    /// [`prepare`](Self::prepare).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pragma_checkpoint::MemoryStore;
    /// use pragma_executor_local::testkit::ScriptedHost;
    /// use pragma_executor_local::{Config, Executor, FinalStatus};
    ///
    /// let host = ScriptedHost::new();
    /// let executor = Executor::new(host.clone(), MemoryStore::new(), Config::default());
    /// let cell = pragma_parse::parse_cell("#pragma repeat --iterations 3 --max-by value\nstep").unwrap();
    /// let recorded = executor.record(cell.directive, cell.body, Default::default()).await.unwrap();
    /// let op = recorded.id().to_owned(); // the host notes it down, durably
    /// assert!(host.runs().is_empty(), "nothing runs yet");
    /// let outcome = recorded.start().unwrap().wait().await.unwrap();
    /// assert_eq!((outcome.op, outcome.status), (op, FinalStatus::Succeeded));
    /// # }
    /// ```
    pub async fn record(
        &self,
        directive: Directive,
        body: &str,
        state: H::State,
    ) -> Result<Recorded<'_, H, S>, ExecError> {
        let (name, lease, body, generation) =
            self.record_submission(&directive, body, &state).await?;
        Ok(Recorded {
            executor: self,
            name,
            directive,
            body,
            lease,
            submission: (Arc::new(state), generation),
        })
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
            directive: directive.clone(),
            body: body.to_string(),
            ended: None,
            iterations_done: 0,
            finished: Vec::new(),
            finished_ranges: Vec::new(),
            selector: selector_of(directive),
            best: None,
            candidates: Vec::new(),
            candidate_count: 0,
            failed: Vec::new(),
            usage: Usage::default(),
            pending_runs: 0,
            started: Vec::new(),
            stopped_early: None,
            since_best: 0,
            extended: false,
        };
        let (generation, _) = commit_state(
            &self.shared,
            &lease,
            &record,
            "submission",
            state,
            &CandidatesPart::default(),
        )
        .await?;
        Ok((name, lease, body, generation))
    }

    /// How many workers an operation of `directive` could use at once: what
    /// its first status says it waits for, until the coordinator says more.
    fn wanted(&self, directive: &Directive) -> u64 {
        let at_once = match directive {
            Directive::Parallel(parallel) => parallel
                .parallel_runs()
                .unwrap_or_else(|| self.shared.backend.capacity()),
            _ => 1,
        };
        at_once.clamp(1, directive.iterations().max(1))
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
        resumed: Option<(Record, RecordedChain)>,
        last_generation: u64,
        skipped: Vec<pragma_checkpoint::Warning>,
    ) -> Result<Handle<H::State>, ExecError> {
        let (events_tx, events) = mpsc::unbounded_channel();
        for warning in skipped {
            let _ = events_tx.send(crate::report::Event::CheckpointSkipped {
                op: name.clone(),
                generation: warning.generation,
                problem: warning.problem,
            });
        }
        let initial = Status {
            schedule: pragma_scheduler::Phase::Queued {
                reason: pragma_scheduler::WaitReason::WaitingForWorkers {
                    missing: self.wanted(&directive),
                    wanted: self.wanted(&directive),
                    ahead: 0,
                },
                progress: pragma_scheduler::Progress {
                    // A parallel one's finished iterations are counted by
                    // the coordinator's first status, a moment later.
                    done: match &progress {
                        Some(Resume::Repeat { iterations_done }) => *iterations_done,
                        _ => 0,
                    },
                    finished: match &progress {
                        Some(Resume::Repeat { iterations_done }) => *iterations_done,
                        _ => 0,
                    },
                    total: directive.iterations(),
                    ..Default::default()
                },
            },
            best: None,
        };
        let (status_tx, status) = watch::channel(initial);
        let (done_tx, done) = oneshot::channel();
        let (record, chain) = resumed.unzip();
        let new = NewOp {
            name: name.clone(),
            directive,
            body,
            lease,
            submission: submission.0,
            submission_generation: submission.1,
            progress,
            record,
            chain,
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

    /// The operations in the store that have not ended (after a crash,
    /// say), or that a preemption notice suspended: each waits to be
    /// [resumed](Self::resume).
    ///
    /// What a restarted host asks first, so the first call of an executor
    /// also removes what writers that are gone left half-written in the
    /// store (a local store's temporary files of a crashed process or an
    /// earlier boot; see [`Store::remove_abandoned`]), of the operations it
    /// lists and of those nothing of which was recorded.
    pub async fn unfinished(&self) -> Result<Vec<String>, ExecError> {
        let first = !self
            .abandoned_removed
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        if first && let Err(e) = self.shared.log.remove_abandoned().await {
            tracing::warn!(error = %e, "what crashed writers left could not be deleted");
        }
        let mut unfinished = Vec::new();
        for op in self.shared.log.operations().await? {
            // One operation whose records cannot be read (a bad block, a
            // permission) hides no other.
            let checkpoints = match self.shared.log.checkpoints(&op).await {
                Ok(checkpoints) => checkpoints,
                Err(e) => {
                    tracing::warn!(op, error = %e, "the operation's records cannot be read");
                    continue;
                }
            };
            if let Some(latest) = checkpoints.last()
                && let Ok(record) = latest.meta_as::<Record>()
                && matches!(record.ended, None | Some(FinalStatus::Suspended))
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
        let (_, record) = self.latest_record(op).await?;
        let total = record.directive.iterations();
        let repeat = matches!(record.directive, Directive::Repeat(_));
        let done = if repeat {
            record.iterations_done
        } else {
            count_of(&record.finished_set())
        };
        let candidate_count = record.candidates_held();
        Ok(OperationSummary {
            op: op.to_owned(),
            directive: record.directive,
            status: record.ended,
            iterations: total,
            done,
            best: record.best.as_ref().map(|b| BestScore {
                iteration: b.iteration,
                score: score_value(&b.score),
            }),
            candidate_count,
            candidates_are_checkpoints: repeat,
            failed_iterations: record.failed,
            usage: record.usage,
            stopped_early: record.stopped_early,
        })
    }

    /// Every candidate of an operation and its score, in the order they
    /// were scored, as its latest record has them: read from the store as
    /// they are asked for, so memory stays flat however many there are.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pragma_checkpoint::MemoryStore;
    /// use pragma_executor_local::testkit::{MapState, ScriptedHost};
    /// use pragma_executor_local::{Config, Executor};
    /// let host = ScriptedHost::new().value(1, 5.0);
    /// let executor = Executor::new(host, MemoryStore::new(), Config::default());
    /// let cell = "#pragma parallel --iterations 3 --max-by value\nbody";
    /// let handle = executor.submit(cell, MapState::new()).await.unwrap();
    /// let outcome = handle.wait().await.unwrap();
    /// let mut candidates = executor.candidates(&outcome.op).await.unwrap();
    /// assert_eq!(candidates.count(), 3);
    /// let mut iterations = Vec::new();
    /// while let Some(candidate) = candidates.next().await {
    ///     iterations.push(candidate.unwrap().iteration);
    /// }
    /// iterations.sort();
    /// assert_eq!(iterations, [0, 1, 2]);
    /// # }
    /// ```
    pub async fn candidates(&self, op: &str) -> Result<Candidates, ExecError> {
        let (checkpoints, record) = self.latest_record(op).await?;
        let Some(latest) = checkpoints.last() else {
            return Err(no_such_operation(op));
        };
        let base = latest.meta_as::<Record>().ok().and_then(|r| r.base);
        let chain = RecordedChain::of(&checkpoints, latest, base);
        let commits = commits_of(op, &checkpoints, &chain.generations())?;
        let shared: Arc<dyn OpenPart> = self.shared.clone();
        Ok(Candidates::new(
            op,
            shared,
            record.candidates.iter().map(CandidateScore::from).collect(),
            commits,
            record.candidates_held(),
        ))
    }

    /// `op`'s usable commits, oldest first, and the whole record as of the
    /// latest.
    async fn latest_record(&self, op: &str) -> Result<(Vec<Manifest>, Record), ExecError> {
        let checkpoints = self.shared.log.checkpoints(op).await?;
        let latest = checkpoints.last().ok_or_else(|| no_such_operation(op))?;
        let record = whole_record(op, &checkpoints, latest)?;
        Ok((checkpoints, record))
    }

    /// Every operation in the store, in order of their ids.
    pub async fn operations(&self) -> Result<Vec<String>, ExecError> {
        Ok(self.shared.log.operations().await?)
    }

    /// Resumes an operation from its last checkpoint (in this process or
    /// after a crash of another): what was finished does not run again.
    /// Earlier executors working on it are fenced out.
    pub async fn resume(&self, op: &str) -> Result<Handle<H::State>, ExecError> {
        self.take_up(op, None).await
    }

    /// Runs `more` iterations beyond the end of the operation `op`, which
    /// succeeded: a repeat goes on from its last state (not its best, which
    /// was applied) for `more` iterations, a parallel operation runs
    /// iterations `N` to `N + more - 1`. Its earlier candidates stay
    /// candidates (the best of all wins), its usage adds up, and its
    /// record says the new number of iterations. An operation that failed,
    /// was cancelled, stopped or suspended, or has not ended, is refused
    /// with what to do instead (resume it, or start it again).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pragma_checkpoint::MemoryStore;
    /// use pragma_executor_local::testkit::{MapState, ScriptedHost};
    /// use pragma_executor_local::{Config, Executor, FinalStatus};
    /// let executor = Executor::new(ScriptedHost::new(), MemoryStore::new(), Config::default());
    /// let cell = "#pragma repeat --iterations 3 --max-by value\nbody";
    /// let first = executor.submit(cell, MapState::new()).await.unwrap().wait().await.unwrap();
    /// let more = executor.extend(&first.op, 2).await.unwrap().wait().await.unwrap();
    /// assert_eq!(more.status, FinalStatus::Succeeded);
    /// // The scripted host's value is the iteration: the last one wins.
    /// assert_eq!(more.best.unwrap().iteration, 4);
    /// # }
    /// ```
    pub async fn extend(&self, op: &str, more: u64) -> Result<Handle<H::State>, ExecError> {
        self.take_up(op, Some(more)).await
    }

    /// `op`'s latest record as loaded, its checkpoints, and its whole
    /// record (the deltas applied).
    async fn latest(
        &self,
        op: &str,
    ) -> Result<(pragma_checkpoint::Loaded, Vec<Manifest>, Record), ExecError> {
        let loaded = self
            .shared
            .log
            .load_latest(op)
            .await?
            .ok_or_else(|| no_such_operation(op))?;
        let checkpoints = self.shared.log.checkpoints(op).await?;
        let record = whole_record(op, &checkpoints, &loaded.manifest)?;
        Ok((loaded, checkpoints, record))
    }

    /// Resumes `op`, or with `extend`, runs that many more iterations of
    /// it once it succeeded.
    async fn take_up(&self, op: &str, extend: Option<u64>) -> Result<Handle<H::State>, ExecError> {
        let problem = |problem: &str| ExecError::Damaged {
            op: op.to_owned(),
            problem: problem.to_owned(),
        };
        if let Some(more) = extend {
            // Refused before the claim: a refusal takes nothing over.
            extended(op, self.latest(op).await?.2, more)?;
        }
        let lease = self.shared.log.claim(op).await?;
        // What a crashed owner left half-committed goes now: no later
        // commit may come to clean it (the operation may have ended).
        if let Err(e) = self.shared.log.remove_leftovers(&lease).await {
            tracing::warn!(op, error = %e, "what interrupted commits left could not be deleted");
        }
        // Read again under the claim: another executor may have gone on.
        let (loaded, checkpoints, mut record) = self.latest(op).await?;
        if let Some(more) = extend {
            record = extended(op, record, more)?;
        }
        let base = loaded
            .manifest
            .meta_as::<Record>()
            .ok()
            .and_then(|r| r.base);
        let chain = RecordedChain::of(&checkpoints, &loaded.manifest, base);
        let directive = record.directive.clone();
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
                finished: scheduler_ranges(&record.finished_set()),
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
            Some((record, chain)),
            generation,
            loaded.warnings,
        )
    }
}

/// A submission recorded durably and not started yet, from
/// [`Executor::record`].
#[must_use = "the operation runs only once started"]
pub struct Recorded<'e, H: Host, S: Store + 'static> {
    executor: &'e Executor<H, S>,
    name: String,
    directive: Directive,
    body: Arc<str>,
    lease: Lease,
    submission: (Arc<H::State>, u64),
}

impl<H: Host, S: Store + 'static> std::fmt::Debug for Recorded<'_, H, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded")
            .field("op", &self.name)
            .field("generation", &self.submission.1)
            .finish_non_exhaustive()
    }
}

impl<H: Host, S: Store + 'static> Recorded<'_, H, S> {
    /// The operation's id.
    pub fn id(&self) -> &str {
        &self.name
    }

    /// Runs it.
    pub fn start(self) -> Result<Handle<H::State>, ExecError> {
        let generation = self.submission.1;
        self.executor.hand_over(
            self.name,
            self.directive,
            self.body,
            self.lease,
            self.submission,
            None,
            None,
            generation,
            Vec::new(),
        )
    }
}

/// `op` has no commit in the store.
fn no_such_operation(op: &str) -> ExecError {
    ExecError::UnknownOperation { op: op.to_owned() }
}

/// `record` of `op` made to run `more` iterations beyond its end: refused
/// unless it succeeded.
fn extended(op: &str, mut record: Record, more: u64) -> Result<Record, ExecError> {
    let refuse = |why: &str| ExecError::NotExtendable {
        op: op.to_owned(),
        why: why.to_owned(),
    };
    match &record.ended {
        Some(FinalStatus::Succeeded) => {}
        None => {
            return Err(refuse(
                "it has not ended: wait for it if it runs, or resume it (run it without \
                 extending) if it was interrupted, then extend it",
            ));
        }
        Some(FinalStatus::Cancelled | FinalStatus::Stopped { .. } | FinalStatus::Suspended) => {
            return Err(refuse(
                "it did not finish (cancelled, stopped or suspended): resume it to finish it first",
            ));
        }
        Some(FinalStatus::Failed { .. } | FinalStatus::Interrupted { .. }) => {
            return Err(refuse(
                "it failed, and has no result to go on from; start it again instead",
            ));
        }
    }
    if more == 0 {
        return Err(refuse("extend it by at least 1 iteration"));
    }
    // Beyond what ran: a repeat or parallel operation a stop rule ended
    // early had iterations left that never ran.
    let ran = match record.directive {
        Directive::Repeat(_) => record.iterations_done,
        _ => crate::record::count_of(&record.finished_set()),
    };
    let total = ran
        .checked_add(more)
        .ok_or_else(|| refuse("that many iterations do not fit a 64-bit count"))?;
    record.directive = record
        .directive
        .with_iterations(total)
        .map_err(|e| refuse(&e.to_string()))?;
    record.ended = None;
    record.stopped_early = None;
    // Its stop rules start over: no patience used up, a target met only
    // by a new candidate.
    record.since_best = 0;
    record.extended = true;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pragma_checkpoint::MemoryStore;

    use super::*;
    use crate::persist::commit_record;
    use crate::testkit::{MapState, ScriptedHost};

    /// An operation that an earlier version interrupted, its candidates in
    /// its record's metadata, is resumed: each candidate is counted and
    /// listed once, however the records after it are written.
    #[tokio::test]
    async fn candidates_of_an_earlier_versions_record_count_once_after_a_resume() {
        let store = MemoryStore::new();
        let host = (0..12).fold(ScriptedHost::new(), |host, i| host.value(i, i as f64));
        let host = host.delay(Duration::from_millis(2));
        let config = Config::default()
            .workers(2)
            .record_interval(Duration::from_millis(1));
        let cell = "#pragma parallel --iterations 12 --max-by value\nbody";
        let parsed = pragma_parse::parse_cell(cell).unwrap();
        let op = {
            let executor = Executor::new(host.clone(), store.clone(), config);
            let (op, lease, _, _) = executor
                .record_submission(&parsed.directive, parsed.body, &MapState::new())
                .await
                .unwrap();
            // What an earlier version wrote after iterations 0 and 1.
            let old: Record = serde_json::from_value(serde_json::json!({
                "base": null, "directive": parsed.directive.to_string(),
                "body": parsed.body, "ended": null, "iterations_done": 0,
                "finished": [0, 1], "selector": selector_of(&parsed.directive),
                "best": null, "failed": [], "usage": {},
                "candidates": [
                    {"iteration": 0, "score": "0", "invalid": null},
                    {"iteration": 1, "score": "1", "invalid": null}
                ],
            }))
            .unwrap();
            assert_eq!(old.candidates.len(), 2);
            commit_record(&executor.shared, &lease, &old, &CandidatesPart::default())
                .await
                .unwrap();
            op
        };
        let executor = Executor::new(host.clone(), store.clone(), config);
        let outcome = executor.resume(&op).await.unwrap().wait().await.unwrap();
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        assert_eq!(outcome.candidate_count, 12);
        let mut candidates = executor.candidates(&op).await.unwrap();
        assert_eq!(candidates.count(), 12);
        let mut iterations = Vec::new();
        while let Some(candidate) = candidates.next().await {
            iterations.push(candidate.unwrap().iteration);
        }
        iterations.sort_unstable();
        assert_eq!(iterations, (0..12).collect::<Vec<_>>());
    }
}
