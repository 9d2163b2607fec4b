//! The coordinator's view of one operation, [`Op`], in parts that each
//! keep one concern: how far it got ([`Progress`]), the selection of the
//! best ([`Selection`]), the chain of records in the store
//! ([`RecordChain`]), the group commit of finished parallel iterations
//! ([`GroupCommit`]), what it used ([`UsageCount`]) and how it ends
//! ([`Ending`]). Only the coordinator task touches an `Op`, so none of it
//! is locked.

mod attempts;
mod chain;
mod ending;
mod group;
mod progress;
mod selection;
mod stop_rules;
mod usage;

use std::sync::Arc;

use pragma_checkpoint::Lease;
use pragma_parse::Directive;
use pragma_scheduler::Resume;
use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use attempts::Attempts;
pub(crate) use chain::{Batch, RecordChain, RecordedChain, Written};
pub(crate) use ending::Ending;
pub(crate) use group::GroupCommit;
pub(crate) use progress::Progress;
pub(crate) use selection::{Judged, Selection, selector_of};
pub(crate) use stop_rules::StopRules;
pub(crate) use usage::UsageCount;

use crate::record::Record;
use crate::report::{BestScore, Event, Outcome, Status};

/// The coordinator's view of one operation.
pub(crate) struct Op<St> {
    pub(crate) name: String,
    pub(crate) directive: Directive,
    pub(crate) body: Arc<str>,
    pub(crate) lease: Lease,
    /// The state at submission, while iterations may start from it (a
    /// repeat lets it go after its first checkpoint: one copy less).
    pub(crate) submission: Option<Arc<St>>,
    /// The iteration variable's name and the selection expression, shared
    /// with every job.
    pub(crate) var: Arc<str>,
    pub(crate) expr: Option<Arc<str>>,
    /// The operation's name, shared with every job.
    pub(crate) shared_name: Arc<str>,
    /// Whether its first iteration started (and `Event::Started` was sent).
    pub(crate) started: bool,
    pub(crate) progress: Progress,
    pub(crate) selection: Selection<St>,
    pub(crate) chain: RecordChain,
    pub(crate) group: GroupCommit,
    pub(crate) usage: UsageCount,
    /// The directive's stop rules (`--patience`, `--target`).
    pub(crate) stop: StopRules,
    /// A repeat's runs since its last checkpoint (see
    /// `Record::pending_runs`).
    pub(crate) runs_since_checkpoint: u64,
    /// Which start of its iteration each run is, across resumes.
    pub(crate) attempts: Attempts,
    /// When a record last went to the store (a repeat records its usage
    /// between checkpoints at most once per record interval).
    pub(crate) last_record: std::time::Instant,
    /// Taken by every commit of the operation while it writes, so that
    /// they reach the store one after the other; it holds the generation
    /// of the latest full record in the store (a repeat's usage record
    /// made before a checkpoint that went first is stale, and is dropped).
    pub(crate) commit_turn: Arc<tokio::sync::Mutex<u64>>,
    pub(crate) ending: Ending<St>,
    events: mpsc::UnboundedSender<Event>,
    pub(crate) status: watch::Sender<Status>,
}

impl<St> Op<St> {
    /// The operation `new` describes, taken up where its record left off
    /// if it is resumed; with the progress to resume the schedule from.
    pub(crate) fn new(new: NewOp<St>) -> (Op<St>, Option<Resume>) {
        let NewOp {
            name,
            directive,
            body,
            lease,
            submission,
            submission_generation,
            progress,
            record,
            last_generation,
            chain,
            events,
            status,
            done,
        } = new;
        let var: Arc<str> = Arc::from(directive.iteration_var().unwrap_or("iteration"));
        let expr: Option<Arc<str>> = directive.select().map(|s| Arc::from(s.expr()));
        let mut op = Op {
            shared_name: Arc::from(name.as_str()),
            name,
            selection: Selection::new(selector_of(&directive)),
            stop: StopRules::of(&directive),
            directive,
            body,
            lease,
            submission: Some(submission),
            var,
            expr,
            started: false,
            progress: Progress::default(),
            commit_turn: Arc::new(tokio::sync::Mutex::new(
                chain.as_ref().map_or(submission_generation, |c| c.full),
            )),
            chain: RecordChain::new(submission_generation, last_generation, chain),
            group: GroupCommit::new(),
            usage: UsageCount::default(),
            runs_since_checkpoint: 0,
            attempts: Attempts::default(),
            last_record: std::time::Instant::now(),
            ending: Ending::new(done),
            events,
            status,
        };
        if let Some(record) = record {
            op.resume_from(record);
        }
        (op, progress)
    }

    /// Takes up what the operation's last record says.
    fn resume_from(&mut self, record: Record) {
        if !record.candidates.is_empty() {
            self.chain.resumed_with_candidates_in_metadata();
        }
        self.selection.resume_from(
            record.selector.clone(),
            record.candidate_count,
            &record.candidates,
            record.best.clone(),
            self.chain.last_generation,
        );
        self.progress.finished = record.finished_set();
        self.progress.finished_count = crate::record::count_of(&self.progress.finished);
        self.progress.abandoned = record.failed;
        self.progress.iterations_done = record.iterations_done;
        self.usage.resume_from(record.usage, record.pending_runs);
        self.attempts = Attempts::resumed(&record.started);
        let best = record
            .best
            .as_ref()
            .map(|best| (best.iteration, crate::record::score_value(&best.score)));
        if record.extended {
            self.stop.restart(best.map(|(iteration, _)| iteration));
        } else {
            self.stop.resume(best, record.since_best);
        }
    }

    /// Sends an event, built (from the operation's name) only while the
    /// handle still listens.
    pub(crate) fn emit(&self, event: impl FnOnce(String) -> Event) {
        if !self.events.is_closed() {
            let _ = self.events.send(event(self.name.clone()));
        }
    }

    pub(crate) fn is_repeat(&self) -> bool {
        matches!(self.directive, Directive::Repeat(_))
    }

    pub(crate) fn iteration_var(&self) -> &str {
        &self.var
    }

    pub(crate) fn best_score(&self) -> Option<BestScore> {
        self.selection.best_score()
    }

    /// The selection expression a job scores its result with: only
    /// candidates are scored there (a repeat scores its checkpoints).
    pub(crate) fn job_expr(&self) -> Option<Arc<str>> {
        if self.is_repeat() {
            None
        } else {
            self.expr.clone()
        }
    }
}

/// An operation ready to be handed to the coordinator.
pub(crate) struct NewOp<St> {
    pub(crate) name: String,
    pub(crate) directive: Directive,
    pub(crate) body: Arc<str>,
    pub(crate) lease: Lease,
    pub(crate) submission: Arc<St>,
    pub(crate) submission_generation: u64,
    /// Where the schedule resumes from, if it does.
    pub(crate) progress: Option<Resume>,
    /// The record to take up, if the operation is resumed.
    pub(crate) record: Option<Record>,
    pub(crate) last_generation: u64,
    /// A resumed operation's chain of records: its full record and the
    /// deltas after it that hold candidates.
    pub(crate) chain: Option<RecordedChain>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) status: watch::Sender<Status>,
    pub(crate) done: oneshot::Sender<Outcome<St>>,
}
