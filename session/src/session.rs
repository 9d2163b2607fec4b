//! [`Session`]: run or resume, follow, finish and apply operations of one
//! host on one store.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use pragma_checkpoint::Store;
use pragma_executor_local::conflict::{Resolution, Rule, compare};
use pragma_executor_local::{
    ExecError, Executor, FinalStatus, Handle, Host, OperationSummary, Outcome,
};
use pragma_parse::ParsedCell;
use tokio::io::AsyncWriteExt;

use crate::error::SessionError;
use crate::live::{Change, Digests, LiveState};
use crate::records::{Records, RunRecord, run_key};
use crate::runner::{JobQueue, Runner};
use crate::summary::Summary;

/// How conflicts are settled: an explicit choice per variable, and a rule
/// for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    /// Choices by variable name.
    pub choices: BTreeMap<String, Resolution>,
    /// What to do with conflicts no choice settles; [`Rule::Fail`] leaves
    /// them unapplied for the user to settle.
    pub rule: Rule,
    /// Keep a cancelled operation's best so far (nothing applied), so
    /// that [`Session::apply_kept`] applies it when the user asks.
    pub keep_cancelled_best: bool,
}

impl Settle {
    /// Leave every conflict for the user to settle.
    pub fn ask() -> Settle {
        Settle::by_rule(Rule::Fail)
    }

    /// Settle every conflict by `rule`.
    pub fn by_rule(rule: Rule) -> Settle {
        Settle {
            choices: BTreeMap::new(),
            rule,
            keep_cancelled_best: false,
        }
    }

    /// Keeps a cancelled operation's best so far to apply on request.
    pub fn keeping_cancelled_best(mut self) -> Settle {
        self.keep_cancelled_best = true;
        self
    }

    /// Settles the conflict on `name` by `resolution`.
    pub fn choose(mut self, name: impl Into<String>, resolution: Resolution) -> Settle {
        self.choices.insert(name.into(), resolution);
        self
    }
}

impl Default for Settle {
    fn default() -> Settle {
        Settle::ask()
    }
}

/// What to start: a cell, as text, and how it is named to the user.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StartRequest {
    /// The cell: a `#pragma` line, then the body, parsed once by the host
    /// that read it.
    pub cell: ParsedCell,
    /// How the user names the cell (a file, a notebook cell), for records
    /// and messages.
    pub cell_name: String,
    /// Start over instead of resuming an interrupted run.
    pub fresh: bool,
    /// The batch job this runner is, when it runs a whole operation as one
    /// job: an earlier start of the same job is no other runner.
    pub batch_job: Option<String>,
}

impl StartRequest {
    /// Runs `cell`, named `cell_name`, resuming an interrupted run of it on
    /// the same state.
    pub fn new(cell: ParsedCell, cell_name: impl Into<String>) -> StartRequest {
        StartRequest {
            cell,
            cell_name: cell_name.into(),
            fresh: false,
            batch_job: None,
        }
    }

    /// Starts over when `fresh`.
    pub fn fresh(mut self, fresh: bool) -> StartRequest {
        self.fresh = fresh;
        self
    }

    /// This runner is the batch job `job`.
    pub fn in_batch_job(mut self, job: Option<String>) -> StartRequest {
        self.batch_job = job;
        self
    }
}

/// A started (or resumed) operation: its handle to follow, and the ticket
/// that [`Session::finish`] takes once it ends.
#[non_exhaustive]
pub struct Running<State, D> {
    /// The operation's events, status, cancel and outcome.
    pub handle: Handle<State>,
    /// What finishing it needs.
    pub ticket: Ticket<D>,
    /// Whether it resumed an interrupted run (from its last checkpoint).
    pub resumed: bool,
    /// Problems that did not stop it (a record that could not be written),
    /// for the host to show.
    pub warnings: Vec<String>,
}

/// What [`Session::finish`] needs of a started operation.
#[derive(Debug, Clone)]
pub struct Ticket<D> {
    record: RunRecord<D>,
}

impl<D> Ticket<D> {
    /// The operation.
    pub fn op(&self) -> &str {
        &self.record.op
    }

    /// The digests of the live state when the operation was submitted:
    /// what a result is compared with to know what it changed.
    pub fn submitted(&self) -> &Digests<D> {
        &self.record.submitted
    }
}

/// Where an operation stands beyond what its checkpoints say.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunState {
    /// A runner runs it now.
    Running(Runner),
    /// Not ended, and nothing runs it: its runner was killed or crashed;
    /// running the same cell on the same state resumes it.
    Stopped,
    /// Ended short of its end (cancelled, or stopped by a full store);
    /// running it again resumes it.
    Resumable,
    /// Ended with a result that waits to be applied (conflicts, or an
    /// error applying it).
    ResultNotApplied,
    /// Ended, and nothing is left to do.
    Ended,
}

/// What [`Session::apply_kept`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Applied {
    /// The result was applied before; nothing was left to do.
    Already,
    /// Applied where settled; the summary's `conflicts` are what is left.
    Now(Box<Summary>),
}

/// The operation lifecycle of one host on one store.
///
/// A host gives it an [`Executor`] (its [`Host`], the store, the backend),
/// the directory of the [records](Records), and, for each call, its
/// [`LiveState`]. See the [crate docs](crate) for a complete embedding.
pub struct Session<H: Host, S: Store + 'static> {
    executor: Executor<H, S>,
    records: Records,
    jobs: Option<Arc<dyn JobQueue>>,
}

impl<H: Host, S: Store + 'static> Session<H, S> {
    /// A session on `executor`, with its records in `records`.
    pub fn new(executor: Executor<H, S>, records: Records) -> Self {
        Session {
            executor,
            records,
            jobs: None,
        }
    }

    /// Asks `jobs` whether runners that are batch jobs still run.
    pub fn with_job_queue(mut self, jobs: Arc<dyn JobQueue>) -> Self {
        self.jobs = Some(jobs);
        self
    }

    /// The executor underneath.
    pub fn executor(&self) -> &Executor<H, S> {
        &self.executor
    }

    /// The records.
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// Follows a started operation to its end, as every host does: its
    /// events appended to the store's events file of the operation (what
    /// `pragma wait`, and a host that takes the operation up later, read),
    /// each shown to `observer` with the status, the status every
    /// [`FOLLOW_TICK`](crate::FOLLOW_TICK) too, and its outcome returned.
    /// Cancel it from anywhere through [`Handle::observer`], then finish it
    /// with [`finish`](Session::finish).
    pub async fn follow(
        &self,
        handle: Handle<H::State>,
        observer: &mut dyn crate::FollowObserver,
    ) -> Result<Outcome<H::State>, ExecError> {
        let events = self.records.events_path(handle.id());
        crate::follow::follow(handle, &events, observer).await
    }

    /// The batch scheduler asked about runners that are jobs, if any.
    pub fn job_queue(&self) -> Option<&dyn JobQueue> {
        self.jobs.as_deref()
    }

    /// Whether `runner` still runs.
    pub fn alive(&self, runner: &Runner) -> bool {
        runner.alive(self.job_queue())
    }

    /// What runs an operation, for messages.
    pub fn describe(&self, runner: &Runner) -> String {
        runner.describe(self.job_queue())
    }

    /// Runs the cell on `live`, or resumes the operation an earlier run of
    /// the same cell on the same state left unfinished (killed, crashed,
    /// cancelled, stopped by a full store). Two starts at once take turns:
    /// the second finds the first running and is refused
    /// ([`SessionError::AlreadyRunning`]).
    pub async fn start<L>(
        &self,
        request: &StartRequest,
        live: &L,
    ) -> Result<Running<H::State, L::Digest>, SessionError>
    where
        L: LiveState<State = H::State>,
    {
        let identity = live.identity();
        let key = run_key(request.cell.text(), &identity);
        let _turn = self.lock_start(&key).await?;
        let mut warnings = Vec::new();
        let resumable = self.resumable(request, &identity, &mut warnings).await;
        let (handle, record, resumed) = match resumable {
            Some(mut record) => {
                record.key = key;
                let handle = self
                    .go_on(&mut record, request.batch_job.clone(), &mut warnings)
                    .await?;
                (handle, record, true)
            }
            None => {
                let (state, submitted) = self.capture(live).await?;
                let cell = &request.cell;
                let recorded = self
                    .executor
                    .record(cell.directive().clone(), cell.body(), state)
                    .await?;
                let record = RunRecord {
                    op: recorded.id().to_owned(),
                    cell: request.cell_name.clone(),
                    state: identity.clone(),
                    submitted,
                    runner: Runner::current(request.batch_job.clone()),
                    key,
                };
                // Durable before its first iteration runs: checkpoints
                // whose run record a crash took could never be resumed.
                if let Err(e) = self
                    .records
                    .write_index(request.cell.text(), &identity, &record.op)
                {
                    warnings.push(format!("cannot remember the run for resuming: {e}"));
                }
                if let Err(e) = self.records.write_run(&record) {
                    warnings.push(format!("cannot record operation {}: {e}", record.op));
                }
                let handle = recorded.start()?;
                return Ok(self.running_recorded(handle, record, false, warnings));
            }
        };
        Ok(self.running(handle, record, resumed, warnings))
    }

    /// Goes on with `op`, left unfinished by a runner that is gone (a
    /// restarted notebook kernel, a killed command), from its last
    /// checkpoint: as [`start`](Session::start) of its cell on its state
    /// would, for a host that knows the operation but not the cell's text.
    /// Refused while its runner still runs, or once it has ended.
    pub async fn resume<D>(
        &self,
        op: &str,
        batch_job: Option<String>,
    ) -> Result<Running<H::State, D>, SessionError>
    where
        D: serde::Serialize + serde::de::DeserializeOwned,
    {
        let record_error = |source| SessionError::Records {
            op: op.to_owned(),
            source,
        };
        let read = || -> Result<RunRecord<D>, SessionError> {
            self.records
                .try_run(op)
                .map_err(|damaged| record_error(io::Error::other(damaged.to_string())))?
                .ok_or_else(|| SessionError::Unknown { op: op.to_owned() })
        };
        let key = read()?.key;
        if key.is_empty() {
            return Err(record_error(io::Error::other(
                "its record does not say which cell it runs: run the cell again to resume it",
            )));
        }
        let _turn = self.lock_start(&key).await?;
        // Read again under the lock: another start may have taken it.
        let mut record = read()?;
        let summary = self.executor.summary(op).await?;
        if let Some(status) = summary.status.as_ref().filter(|s| !s.is_resumable()) {
            return Err(SessionError::Ended {
                op: op.to_owned(),
                status: status.clone(),
            });
        }
        let mut warnings = Vec::new();
        let handle = self.go_on(&mut record, batch_job, &mut warnings).await?;
        Ok(self.running(handle, record, true, warnings))
    }

    /// Runs `more` iterations beyond the end of `op`, which succeeded and
    /// whose result was applied to `live` ([`Executor::extend`]): a repeat
    /// goes on from its last state, a parallel operation runs its next
    /// iterations; the earlier candidates stay candidates. The extension's
    /// result is applied against `live` as it is now (what the first
    /// result made it), so that the first apply is no conflict.
    ///
    /// [`Executor::extend`]: pragma_executor_local::Executor::extend
    pub async fn extend<L>(
        &self,
        op: &str,
        more: u64,
        live: &L,
    ) -> Result<Running<H::State, L::Digest>, SessionError>
    where
        L: LiveState<State = H::State>,
    {
        let record_error = |source| SessionError::Records {
            op: op.to_owned(),
            source,
        };
        let read = || -> Result<RunRecord<L::Digest>, SessionError> {
            self.records
                .try_run(op)
                .map_err(|damaged| record_error(io::Error::other(damaged.to_string())))?
                .ok_or_else(|| SessionError::Unknown { op: op.to_owned() })
        };
        let key = read()?.key;
        let _turn = if key.is_empty() {
            None
        } else {
            Some(self.lock_start(&key).await?)
        };
        let mut record = read()?;
        if let Some(runner) = record.runner.as_ref().filter(|r| self.alive(r)) {
            return Err(SessionError::AlreadyRunning {
                op: op.to_owned(),
                runner: self.describe(runner),
                reachable: runner.here() || runner.batch_job.is_some(),
            });
        }
        let unsettled = self
            .records
            .outcome(op)
            .is_some_and(|outcome| !outcome.conflicts.is_empty() || outcome.apply_error.is_some());
        if unsettled {
            return Err(SessionError::Exec(ExecError::NotExtendable {
                op: op.to_owned(),
                why: "its result is not all applied yet: settle it first (`apply`), then extend it"
                    .to_owned(),
            }));
        }
        record.submitted = live
            .digests()
            .await
            .map_err(|source| SessionError::LiveState {
                state: live.identity(),
                source,
            })?;
        let handle = self.executor.extend(op, more).await?;
        record.runner = Runner::current(None);
        let mut warnings = Vec::new();
        if let Err(e) = self.records.remove_outcome(op) {
            warnings.push(format!("cannot clear the outcome of {op}: {e}"));
        }
        Ok(self.running(handle, record, true, warnings))
    }

    /// The operation [`start`](Session::start) of `request` on `live` ran
    /// last, if there is one: what extending this cell on this state
    /// extends.
    pub fn last_run(&self, request: &StartRequest, live: &impl LiveState) -> Option<String> {
        self.records
            .indexed(request.cell.text(), &live.identity())
            .ok()
            .flatten()
    }

    /// The operations on the live state `identity` that have not ended and
    /// that nothing runs any more (their runner was killed or crashed):
    /// what [`resume`](Session::resume) can go on with.
    pub async fn unfinished(&self, identity: &str) -> Result<Vec<String>, SessionError> {
        Ok(self
            .executor
            .unfinished()
            .await?
            .into_iter()
            .filter(|op| {
                self.records
                    .run::<serde::de::IgnoredAny>(op)
                    .is_some_and(|record| {
                        record.state == identity
                            && !record.key.is_empty()
                            && !record.runner.as_ref().is_some_and(|r| self.alive(r))
                    })
            })
            .collect())
    }

    async fn lock_start(&self, key: &str) -> Result<crate::records::StartLock, SessionError> {
        self.records
            .lock_start(key)
            .await
            .map_err(|source| SessionError::Records {
                op: key.to_owned(),
                source,
            })
    }

    /// Resumes the operation of `record` here, unless another runner still
    /// runs it, and makes this process its runner.
    async fn go_on<D>(
        &self,
        record: &mut RunRecord<D>,
        batch_job: Option<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Handle<H::State>, SessionError> {
        // An earlier start of this very batch job (requeued after its node
        // failed) is no other runner.
        let same_job = |r: &Runner| r.batch_job.is_some() && r.batch_job == batch_job;
        if let Some(runner) = record
            .runner
            .as_ref()
            .filter(|r| !same_job(r) && self.alive(r))
        {
            return Err(SessionError::AlreadyRunning {
                op: record.op.clone(),
                runner: self.describe(runner),
                reachable: runner.here() || runner.batch_job.is_some(),
            });
        }
        let handle = self.executor.resume(&record.op).await?;
        record.runner = Runner::current(batch_job);
        // A cancel's outcome is not the end any more, nor its best so far.
        if let Err(e) = self.records.remove_outcome(&record.op) {
            warnings.push(format!("cannot clear the outcome of {}: {e}", record.op));
        }
        let kept = self.records.kept_result_path(&record.op);
        if let Err(e) = std::fs::remove_file(&kept)
            && e.kind() != io::ErrorKind::NotFound
        {
            warnings.push(format!("cannot clear `{}`: {e}", kept.display()));
        }
        Ok(handle)
    }

    /// Records `record`'s runner and hands the operation to the host.
    fn running<D: serde::Serialize>(
        &self,
        handle: Handle<H::State>,
        record: RunRecord<D>,
        resumed: bool,
        mut warnings: Vec<String>,
    ) -> Running<H::State, D> {
        if let Err(e) = self.records.write_run(&record) {
            warnings.push(format!("cannot record operation {}: {e}", record.op));
        }
        self.running_recorded(handle, record, resumed, warnings)
    }

    /// Hands the operation, whose record is written, to the host.
    fn running_recorded<D>(
        &self,
        handle: Handle<H::State>,
        record: RunRecord<D>,
        resumed: bool,
        warnings: Vec<String>,
    ) -> Running<H::State, D> {
        Running {
            handle,
            ticket: Ticket { record },
            resumed,
            warnings,
        }
    }

    /// The record of the operation that an earlier run of the request's
    /// cell on `identity` left to go on with, if any; a damaged record
    /// starts a new operation, with a warning that names the file.
    async fn resumable<D: serde::de::DeserializeOwned>(
        &self,
        request: &StartRequest,
        identity: &str,
        warnings: &mut Vec<String>,
    ) -> Option<RunRecord<D>> {
        if request.fresh {
            return None;
        }
        let op = match self.records.indexed(request.cell.text(), identity) {
            Ok(op) => op?,
            Err(damaged) => {
                warnings.push(format!("{damaged}; a new operation starts"));
                return None;
            }
        };
        let summary = self.executor.summary(&op).await.ok()?;
        if !summary
            .status
            .as_ref()
            .is_none_or(FinalStatus::is_resumable)
        {
            return None;
        }
        match self.records.try_run(&op) {
            Ok(record) => record,
            Err(damaged) => {
                warnings.push(format!(
                    "the record of operation {op}, {damaged}; a new operation starts (the \
                     damaged one stays in the store)"
                ));
                None
            }
        }
    }

    async fn capture<L: LiveState>(
        &self,
        live: &L,
    ) -> Result<(L::State, Digests<L::Digest>), SessionError> {
        live.capture()
            .await
            .map_err(|source| SessionError::LiveState {
                state: live.identity(),
                source,
            })
    }

    /// Records the cell on `live` as an operation without running it: any
    /// later [`start`](Session::start) of the same cell on a state of the
    /// same identity (another process, a batch job) resumes it. Returns its
    /// id.
    pub async fn prepare<L>(&self, request: &StartRequest, live: &L) -> Result<String, SessionError>
    where
        L: LiveState<State = H::State>,
    {
        let (state, submitted) = self.capture(live).await?;
        let cell = &request.cell;
        let op = self
            .executor
            .prepare(cell.directive().clone(), cell.body(), state)
            .await?;
        let record = RunRecord {
            op: op.clone(),
            cell: request.cell_name.clone(),
            state: live.identity(),
            submitted,
            runner: None,
            key: run_key(request.cell.text(), &live.identity()),
        };
        self.records
            .write_run(&record)
            .and_then(|()| {
                self.records
                    .write_index(request.cell.text(), &live.identity(), &op)
            })
            .map_err(|source| SessionError::Records {
                op: op.clone(),
                source,
            })?;
        Ok(op)
    }

    /// Ends a started operation once its handle gave its outcome: applies
    /// the best state to `live` where `settle` allows, keeps what is left
    /// (conflicts, an apply error) for [`apply_kept`](Session::apply_kept),
    /// records the outcome, and releases the operation's runner.
    pub async fn finish<L>(
        &self,
        ticket: Ticket<L::Digest>,
        outcome: Outcome<H::State>,
        live: &L,
        settle: &Settle,
    ) -> Summary
    where
        L: LiveState<State = H::State>,
    {
        let Ticket { mut record } = ticket;
        let mut warnings = Vec::new();
        // A success stays indexed: a later start of the cell runs a new
        // operation (it has ended), and `extend` finds it.
        if !outcome.status.is_resumable()
            && outcome.status != FinalStatus::Succeeded
            && !record.key.is_empty()
            && let Err(e) = self.records.remove_index_of(&record.key)
        {
            warnings.push(format!("cannot clear the run index of {}: {e}", record.op));
        }
        let summary = Summary::from_outcome(&outcome);
        let best = outcome.best.map(|best| best.state);
        let mut summary = self
            .settle(&record, summary, best.as_ref(), live, settle)
            .await;
        record.runner = None;
        if let Err(e) = self.records.write_run(&record) {
            warnings.push(format!("cannot record operation {}: {e}", record.op));
        }
        summary.warnings.extend(warnings);
        summary
    }

    /// Applies `result` (the best state of an operation that ended as
    /// `summary` says) to `live` as `settle` allows, keeps it where
    /// something is left unapplied, and records the outcome. For hosts
    /// whose operation ended elsewhere (a batch job); [`finish`](Session::finish)
    /// calls it.
    pub async fn settle<L>(
        &self,
        record: &RunRecord<L::Digest>,
        mut summary: Summary,
        result: Option<&H::State>,
        live: &L,
        settle: &Settle,
    ) -> Summary
    where
        L: LiveState<State = H::State>,
    {
        if let (FinalStatus::Succeeded, Some(result)) = (&summary.status, result) {
            match apply_result(live, result, &record.submitted, settle).await {
                Ok(left) => summary.conflicts = left,
                Err(e) => {
                    summary.apply_error = Some(format!(
                        "cannot apply the result to `{}`: {e}",
                        record.state
                    ));
                }
            }
            if (!summary.conflicts.is_empty() || summary.apply_error.is_some())
                && let Err(e) = self.keep(&record.op, result).await
            {
                summary.warnings.push(format!(
                    "cannot keep the result of {} to apply later in `{}`: {e}",
                    record.op,
                    self.records.kept_result_path(&record.op).display()
                ));
            }
        }
        if let (FinalStatus::Cancelled, Some(result), true) =
            (&summary.status, result, settle.keep_cancelled_best)
            && let Err(e) = self.keep(&record.op, result).await
        {
            summary.warnings.push(format!(
                "cannot keep the best so far of {} in `{}`: {e}",
                record.op,
                self.records.kept_result_path(&record.op).display()
            ));
        }
        // A cancelled run's outcome stands until the run is resumed.
        if let Err(e) = self.records.write_outcome(&summary) {
            summary
                .warnings
                .push(format!("cannot record the outcome of {}: {e}", summary.op));
        }
        summary
    }

    /// Applies the kept result of an ended operation to `live` (what its
    /// conflicts or an apply error left, or a cancelled operation's best
    /// so far, kept by [`Settle::keeping_cancelled_best`]), settling
    /// conflicts as `settle` says; what is still left stays kept.
    pub async fn apply_kept<L>(
        &self,
        op: &str,
        live: &L,
        settle: &Settle,
    ) -> Result<Applied, SessionError>
    where
        L: LiveState<State = H::State>,
    {
        let record: RunRecord<L::Digest> = self
            .records
            .run(op)
            .ok_or_else(|| SessionError::Unknown { op: op.to_owned() })?;
        let Some(mut summary) = self.records.outcome(op) else {
            return Err(SessionError::NotEnded {
                op: op.to_owned(),
                running: record.runner.as_ref().is_some_and(|r| self.alive(r)),
            });
        };
        let kept_best =
            summary.status == FinalStatus::Cancelled && self.records.has_kept_result(op);
        if summary.status != FinalStatus::Succeeded && !kept_best {
            return Err(SessionError::NoResult {
                op: op.to_owned(),
                status: summary.status.clone(),
            });
        }
        if !self.records.has_kept_result(op) {
            return Ok(Applied::Already);
        }
        let records_error = |source| SessionError::Records {
            op: op.to_owned(),
            source,
        };
        let result = self.kept(op).await.map_err(records_error)?;
        let left = apply_result(live, &result, &record.submitted, settle)
            .await
            .map_err(|source| SessionError::Apply {
                state: record.state.clone(),
                source,
            })?;
        summary.conflicts = left;
        summary.apply_error = None;
        self.records
            .write_outcome(&summary)
            .map_err(records_error)?;
        if summary.conflicts.is_empty() {
            std::fs::remove_file(self.records.kept_result_path(op)).map_err(records_error)?;
        }
        Ok(Applied::Now(Box::new(summary)))
    }

    /// The kept result of `op` (what its conflicts, an apply error or a
    /// cancel left to apply), if one is kept: what [`apply_kept`] would
    /// take its values from, for a host to show them before it does.
    ///
    /// [`apply_kept`]: Session::apply_kept
    pub async fn kept_result(&self, op: &str) -> Result<Option<H::State>, SessionError> {
        if !self.records.has_kept_result(op) {
            return Ok(None);
        }
        self.kept(op)
            .await
            .map(Some)
            .map_err(|source| SessionError::Records {
                op: op.to_owned(),
                source,
            })
    }

    /// Where `op` stands beyond its checkpoints, given what the store says
    /// of it.
    pub fn run_state(&self, summary: &OperationSummary) -> RunState {
        let runner = self
            .records
            .run::<serde::de::IgnoredAny>(&summary.op)
            .and_then(|record| record.runner)
            .filter(|runner| self.alive(runner));
        match (runner, &summary.status) {
            (Some(runner), _) => RunState::Running(runner),
            (None, None) => RunState::Stopped,
            (None, Some(status)) if status.is_resumable() => RunState::Resumable,
            (None, Some(_)) if self.records.has_kept_result(&summary.op) => {
                RunState::ResultNotApplied
            }
            (None, Some(_)) => RunState::Ended,
        }
    }

    /// The runner of `op` on record, if it still runs.
    pub fn runner(&self, op: &str) -> Option<Runner> {
        self.records
            .run::<serde::de::IgnoredAny>(op)
            .and_then(|record| record.runner)
            .filter(|runner| self.alive(runner))
    }

    /// Forgets the runner on record of `op` without stopping it (its
    /// machine is gone for good), so that a start resumes the operation
    /// here; the runner forgotten, if there was one.
    pub fn forget_runner(&self, op: &str) -> Result<Option<Runner>, SessionError> {
        let mut record: RunRecord<serde_json::Value> = self
            .records
            .run(op)
            .ok_or_else(|| SessionError::Unknown { op: op.to_owned() })?;
        let forgotten = record.runner.take();
        self.records
            .write_run(&record)
            .map_err(|source| SessionError::Records {
                op: op.to_owned(),
                source,
            })?;
        Ok(forgotten)
    }

    /// Keeps `result` for a later apply, as the host snapshots it.
    async fn keep(&self, op: &str, result: &H::State) -> io::Result<()> {
        let path = self.records.kept_result_path(op);
        let parent = path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(parent)?;
        // Streamed to a file beside, then renamed: a big state is not held
        // in memory, and a half-written one is never taken for the result.
        let temporary = tempfile::NamedTempFile::new_in(parent)?;
        let mut file = tokio::fs::File::from_std(temporary.reopen()?);
        self.executor.host().snapshot(result, &mut file).await?;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        temporary.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The kept result of `op`.
    async fn kept(&self, op: &str) -> io::Result<H::State> {
        let path = self.records.kept_result_path(op);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        self.executor.host().restore(&mut file).await
    }
}

/// Applies the result's changes to `live` where `settle` allows; returns
/// the conflicts left unapplied.
async fn apply_result<L: LiveState>(
    live: &L,
    result: &L::State,
    submitted: &Digests<L::Digest>,
    settle: &Settle,
) -> io::Result<Vec<String>> {
    let comparison = compare(
        submitted,
        &live.digests().await?,
        &live.digests_of(result).await?,
    );
    // Conflicts without a choice under `Fail` are left; the rest is settled.
    let (rule, left) = match settle.rule {
        Rule::Fail => (
            Rule::KeepLive,
            comparison
                .conflicts
                .keys()
                .filter(|name| !settle.choices.contains_key(*name))
                .cloned()
                .collect(),
        ),
        rule => (rule, Vec::new()),
    };
    let changes: Vec<Change> = comparison
        .resolve(&settle.choices, rule)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| match value {
            Some(_) => Change::Set(name),
            None => Change::Remove(name),
        })
        .collect();
    if !changes.is_empty() {
        live.apply(result, &changes).await?;
    }
    Ok(left)
}
