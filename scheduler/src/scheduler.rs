//! The state machine: operations, the pool, and the decisions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::event::{Action, Event, OpId, StartFrom, WorkerId};
use crate::plan::{Budgets, InvalidPlan, Plan};
use crate::status::{Conclusion, FailReason, Phase, Progress, WaitReason};

/// The progress an operation made before it was interrupted, for
/// [`Scheduler::resume`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resume {
    /// Repeat: iterations covered by the last committed checkpoint.
    Repeat {
        /// They run no more; the next starts from that checkpoint.
        iterations_done: u64,
    },
    /// Parallel (or async): iterations recorded as finished, as ranges
    /// (in any order; they may overlap), so that resuming an operation of
    /// millions of iterations costs memory for its gaps, not for them.
    Parallel {
        /// They never run again.
        finished: Vec<std::ops::Range<u64>>,
    },
}

/// After this many starts, an operation that keeps several workers gives
/// one back at each finish while another operation holds none.
const YIELD_AFTER_STARTS: u64 = 64;

/// Decides what runs next, on which worker, and when to checkpoint, for
/// many operations sharing one pool of worker slots.
///
/// Feed it [`Event`]s with [`Scheduler::handle`] and carry out the
/// [`Action`]s it returns. It does no I/O and reads no clock: the same
/// submissions and events always give the same actions. Its whole state is
/// serde-serialisable; a restored snapshot continues exactly where it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduler {
    capacity: u64,
    in_use: u64,
    next_op: u64,
    next_worker: u64,
    ops: BTreeMap<OpId, Operation>,
    /// Operations that have not ended, in order of submission.
    active: BTreeSet<OpId>,
    /// Workers lent to each operation.
    #[serde(default)]
    lent: BTreeMap<OpId, u64>,
    /// Operations that have not ended and hold no worker: each gets one
    /// before any gets more, oldest first.
    #[serde(default)]
    idle: BTreeSet<OpId>,
    /// Which operation holds each lent worker.
    workers: BTreeMap<WorkerId, OpId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Operation {
    plan: Plan,
    budgets: Budgets,
    started: bool,
    outcome: Option<Conclusion>,
    attempts: u64,
    lost: u64,
    failed: u64,
    /// A preemption notice came: nothing starts any more.
    #[serde(default)]
    suspending: bool,
    /// A stop rule was met while a repeat's checkpoint was on its way: it
    /// ends once that is committed, with no iteration started after it.
    #[serde(default)]
    stopping_early: bool,
    state: PlanState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum PlanState {
    Repeat(RepeatState),
    Parallel(ParallelState),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RepeatState {
    period: u64,
    /// Iterations covered by the last committed checkpoint.
    committed: u64,
    /// Iterations finished on the current worker (from `committed` on).
    finished: u64,
    worker: Option<WorkerId>,
    checkpointing: bool,
    /// Per iteration since the last checkpoint: starts, failures, preemptions.
    counts: BTreeMap<u64, Counts>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ParallelState {
    max_workers: Option<u64>,
    /// Iterations from here on have never started (but those in `skip`).
    next_fresh: u64,
    /// A resumed operation's finished iterations from `next_fresh` on:
    /// disjoint ranges in order, passed over as `next_fresh` reaches them.
    #[serde(default)]
    skip: VecDeque<std::ops::Range<u64>>,
    /// How many iterations `skip` holds.
    #[serde(default)]
    skipped: u64,
    /// Iterations to run again, in order.
    retry: VecDeque<u64>,
    in_flight: BTreeMap<WorkerId, u64>,
    succeeded: u64,
    /// Per iteration that has not ended yet: starts, failures, preemptions.
    counts: BTreeMap<u64, Counts>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Counts {
    starts: u32,
    failures: u32,
    preemptions: u32,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new(0)
    }
}

impl Scheduler {
    /// A scheduler over a pool of `capacity` worker slots.
    pub fn new(capacity: u64) -> Self {
        Scheduler {
            capacity,
            in_use: 0,
            next_op: 0,
            next_worker: 0,
            ops: BTreeMap::new(),
            active: BTreeSet::new(),
            lent: BTreeMap::new(),
            idle: BTreeSet::new(),
            workers: BTreeMap::new(),
        }
    }

    /// Submits an operation. It starts at once if the pool has room, and
    /// otherwise waits its turn (first come, first served).
    pub fn submit(
        &mut self,
        plan: Plan,
        budgets: Budgets,
    ) -> Result<(OpId, Vec<Action>), InvalidPlan> {
        plan.validate()?;
        let id = self.add(plan, budgets);
        let mut actions = Vec::new();
        self.fill(&mut actions);
        Ok((id, actions))
    }

    /// Submits an operation that already made progress in an earlier run
    /// (resumed after a crash, from its last checkpoint): finished
    /// iterations are never started again.
    pub fn resume(
        &mut self,
        plan: Plan,
        budgets: Budgets,
        progress: Resume,
    ) -> Result<(OpId, Vec<Action>), InvalidPlan> {
        plan.validate()?;
        let total = plan.iterations();
        let fits = matches!(
            (&plan, &progress),
            (Plan::Repeat { .. }, Resume::Repeat { .. })
                | (Plan::Parallel { .. } | Plan::Async, Resume::Parallel { .. })
        );
        if !fits {
            return Err(InvalidPlan("the progress does not fit the plan's kind"));
        }
        let id = self.add(plan, budgets);
        let mut actions = Vec::new();
        let Some(op) = self.ops.get_mut(&id) else {
            return Ok((id, actions));
        };
        op.started = true;
        let finished = match (&mut op.state, progress) {
            (PlanState::Repeat(repeat), Resume::Repeat { iterations_done }) => {
                repeat.committed = iterations_done.min(total);
                repeat.finished = repeat.committed;
                (repeat.committed == total).then_some(Conclusion::Succeeded)
            }
            (PlanState::Parallel(parallel), Resume::Parallel { finished }) => {
                parallel.skip_finished(finished, total);
                (!parallel.has_pending(total))
                    .then(|| parallel.outcome(FailReason::NoIterationSucceeded))
            }
            _ => None,
        };
        if let Some(outcome) = finished {
            self.end(id, outcome, &mut actions);
        }
        self.fill(&mut actions);
        Ok((id, actions))
    }

    /// Records a new operation, not yet lent any worker.
    fn add(&mut self, plan: Plan, budgets: Budgets) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        let state = match plan {
            Plan::Repeat {
                checkpoint_period, ..
            } => PlanState::Repeat(RepeatState {
                period: checkpoint_period,
                committed: 0,
                finished: 0,
                worker: None,
                checkpointing: false,
                counts: BTreeMap::new(),
            }),
            Plan::Parallel { max_workers, .. } => {
                PlanState::Parallel(ParallelState::new(max_workers))
            }
            Plan::Async => PlanState::Parallel(ParallelState::new(Some(1))),
        };
        self.ops.insert(
            id,
            Operation {
                plan,
                budgets,
                started: false,
                outcome: None,
                attempts: 0,
                lost: 0,
                failed: 0,
                suspending: false,
                stopping_early: false,
                state,
            },
        );
        self.active.insert(id);
        self.idle.insert(id);
        id
    }

    /// Takes in one event and returns what to do about it. Events about a
    /// worker that no operation holds any more are ignored.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        self.handle_into(event, &mut actions);
        actions
    }

    /// As [`handle`](Self::handle), appending the actions to `actions`: a
    /// caller that reuses one vector saves an allocation per event.
    pub fn handle_into(&mut self, event: Event, actions: &mut Vec<Action>) {
        match event {
            Event::SetCapacity(capacity) => self.capacity = capacity,
            Event::Cancel(op) => self.cancel(op, actions),
            Event::StopEarly(op) => self.stop_early(op, actions),
            Event::Suspend(op) => self.suspend(op, actions),
            Event::SuspendNow(op) => self.suspend_now(op, actions),
            Event::IterationFinished(worker) => self.on_worker(worker, Report::Finished, actions),
            Event::IterationFailed(worker) => self.on_worker(worker, Report::Failed, actions),
            Event::CheckpointCommitted(worker) => {
                self.on_worker(worker, Report::Committed, actions)
            }
            Event::CheckpointFailed(worker) => self.on_worker(worker, Report::Failed, actions),
            Event::WorkerLost(worker) => self.on_worker(worker, Report::Lost, actions),
        }
        self.fill(actions);
    }

    /// After a crash of the process that ran the workers: every lent worker
    /// is lost (counted as a preemption), and the operations go on from
    /// their last checkpoints as capacity allows.
    pub fn recover_after_crash(&mut self) -> Vec<Action> {
        let lost: Vec<WorkerId> = self.workers.keys().copied().collect();
        let mut actions = Vec::new();
        for worker in lost {
            self.on_worker(worker, Report::Lost, &mut actions);
        }
        self.fill(&mut actions);
        actions
    }

    /// The pool's size.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Worker slots lent out now.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// The operations, in order of submission.
    pub fn operations(&self) -> impl Iterator<Item = OpId> + '_ {
        self.ops.keys().copied()
    }

    /// The operations that have not ended, in order of submission.
    pub fn unfinished(&self) -> impl Iterator<Item = OpId> + '_ {
        self.active.iter().copied()
    }

    /// The operation that holds a worker.
    pub fn holder(&self, worker: WorkerId) -> Option<OpId> {
        self.workers.get(&worker).copied()
    }

    /// The visible state of an operation (`None` for an unknown id).
    pub fn status(&self, id: OpId) -> Option<Phase> {
        let op = self.ops.get(&id)?;
        let progress = op.progress();
        if let Some(outcome) = op.outcome {
            return Some(Phase::Ended { outcome, progress });
        }
        if op.workers_held() > 0 {
            return Some(Phase::Running { progress });
        }
        let reason = if self.capacity == 0 {
            WaitReason::CapacityZero
        } else {
            let wanted = op.workers_wanted(self.capacity);
            WaitReason::WaitingForWorkers {
                missing: wanted,
                wanted,
                ahead: self
                    .active
                    .range(..id)
                    .filter(|older| self.ops[older].wants_worker())
                    .count() as u64,
            }
        };
        Some(if op.started {
            Phase::Suspended { reason, progress }
        } else {
            Phase::Queued { reason, progress }
        })
    }

    /// Lends free slots to the operations that want workers, oldest first.
    fn fill(&mut self, actions: &mut Vec<Action>) {
        let waiting: Vec<OpId> = self.active.iter().copied().collect();
        for id in waiting {
            while self.in_use < self.capacity && self.ops[&id].wants_worker() {
                self.lend(id, actions);
            }
            if self.in_use >= self.capacity {
                break;
            }
        }
    }

    /// Lends a free slot to `id` and puts it to work.
    fn lend(&mut self, id: OpId, actions: &mut Vec<Action>) {
        let worker = WorkerId(self.next_worker);
        self.next_worker += 1;
        self.in_use += 1;
        self.workers.insert(worker, id);
        *self.lent.entry(id).or_default() += 1;
        self.idle.remove(&id);
        self.grant(id, worker, actions);
    }

    /// Takes `worker` back from the operation it was lent to; that one is
    /// idle if it was its last.
    fn take_back(&mut self, worker: WorkerId) -> Option<OpId> {
        let id = self.workers.remove(&worker)?;
        self.in_use -= 1;
        if let Some(count) = self.lent.get_mut(&id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.lent.remove(&id);
                if self.active.contains(&id) {
                    self.idle.insert(id);
                }
            }
        }
        Some(id)
    }

    /// Puts a newly lent worker to work.
    fn grant(&mut self, id: OpId, worker: WorkerId, actions: &mut Vec<Action>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.started = true;
        match &mut op.state {
            PlanState::Repeat(repeat) => {
                repeat.worker = Some(worker);
                repeat.finished = repeat.committed;
                let from = repeat.rewound_start();
                let iteration = repeat.committed;
                self.start(id, worker, iteration, from, actions);
            }
            PlanState::Parallel(_) => self.start_next_parallel(id, worker, actions),
        }
    }

    /// Starts one iteration, within the operation's cap on attempts.
    fn start(
        &mut self,
        id: OpId,
        worker: WorkerId,
        iteration: u64,
        from: StartFrom,
        actions: &mut Vec<Action>,
    ) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if op.suspending {
            if let PlanState::Parallel(parallel) = &mut op.state {
                // Not started after all: it runs on resume.
                parallel.retry.push_front(iteration);
            }
            self.wind_down(id, worker, actions);
            return;
        }
        if op
            .budgets
            .max_attempts
            .is_some_and(|cap| op.attempts >= cap)
        {
            if let PlanState::Parallel(parallel) = &mut op.state {
                // Not started after all: it is abandoned with the rest.
                parallel.retry.push_front(iteration);
            }
            self.attempts_exhausted(id, worker, actions);
            return;
        }
        op.attempts += 1;
        let counts = match &mut op.state {
            PlanState::Repeat(repeat) => repeat.counts.entry(iteration).or_default(),
            PlanState::Parallel(parallel) => {
                parallel.in_flight.insert(worker, iteration);
                parallel.counts.entry(iteration).or_default()
            }
        };
        counts.starts += 1;
        actions.push(Action::Start {
            op: id,
            worker,
            iteration,
            attempt: counts.starts,
            from,
        });
    }

    fn start_next_parallel(&mut self, id: OpId, worker: WorkerId, actions: &mut Vec<Action>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let PlanState::Parallel(parallel) = &mut op.state else {
            return;
        };
        let total = op.plan.iterations();
        let Some(iteration) = parallel.next_pending(total) else {
            self.release(id, worker, actions);
            return;
        };
        self.start(id, worker, iteration, StartFrom::Submission, actions);
    }

    fn on_worker(&mut self, worker: WorkerId, report: Report, actions: &mut Vec<Action>) {
        let Some(&id) = self.workers.get(&worker) else {
            return; // A late report from a worker the operation gave up.
        };
        if report == Report::Lost {
            self.take_back(worker);
        }
        let is_repeat = matches!(self.ops[&id].state, PlanState::Repeat(_));
        if is_repeat {
            self.on_repeat(id, worker, report, actions);
        } else {
            self.on_parallel(id, worker, report, actions);
        }
    }

    fn on_repeat(&mut self, id: OpId, worker: WorkerId, report: Report, actions: &mut Vec<Action>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let total = op.plan.iterations();
        let budgets = op.budgets;
        let PlanState::Repeat(repeat) = &mut op.state else {
            return;
        };
        // The iteration the report is about: the running one, or the last
        // finished one while its checkpoint is being taken.
        let current = if repeat.checkpointing {
            repeat.finished - 1
        } else {
            repeat.finished
        };
        if op.stopping_early && !(report == Report::Committed && repeat.checkpointing) {
            // The checkpoint it waited for failed, or its worker went: what
            // finished since the last checkpoint is lost, and it stops with
            // what it has.
            op.lost += repeat.finished - repeat.committed;
            self.stop_early_now(id, actions);
            return;
        }
        if report == Report::Failed && op.suspending {
            // With the machine going, every process may get the signal,
            // the body too: not a failure of its own. What finished since
            // the checkpoint is lost (the failed run counts as a run, as
            // any failure's); it suspends, no retry spent.
            op.lost += repeat.finished - repeat.committed;
            repeat.checkpointing = false;
            repeat.finished = repeat.committed;
            self.release(id, worker, actions);
            self.end(id, Conclusion::Suspended, actions);
            return;
        }
        match report {
            Report::Finished if !repeat.checkpointing => {
                repeat.finished += 1;
                let done = repeat.finished;
                if done % repeat.period == 0 || done == total {
                    repeat.checkpointing = true;
                    actions.push(Action::Checkpoint {
                        op: id,
                        worker,
                        iterations_done: done,
                    });
                } else {
                    self.start(id, worker, done, StartFrom::Previous, actions);
                }
            }
            Report::Committed if repeat.checkpointing => {
                repeat.checkpointing = false;
                repeat.committed = repeat.finished;
                let committed = repeat.committed;
                repeat.counts = repeat.counts.split_off(&committed);
                if committed == total || op.stopping_early {
                    self.release(id, worker, actions);
                    self.end(id, Conclusion::Succeeded, actions);
                } else {
                    self.start(id, worker, committed, StartFrom::Previous, actions);
                }
            }
            Report::Failed => {
                op.lost += repeat.finished - repeat.committed;
                let counts = repeat.counts.entry(current).or_default();
                counts.failures += 1;
                let exhausted = counts.failures > budgets.retries;
                repeat.checkpointing = false;
                repeat.finished = repeat.committed;
                if exhausted {
                    op.failed += 1;
                    actions.push(Action::IterationAbandoned {
                        op: id,
                        iteration: current,
                    });
                    self.release(id, worker, actions);
                    self.end(
                        id,
                        Conclusion::Failed(FailReason::IterationFailed { iteration: current }),
                        actions,
                    );
                } else {
                    let from = repeat.rewound_start();
                    let iteration = repeat.committed;
                    self.start(id, worker, iteration, from, actions);
                }
            }
            Report::Lost => {
                // Finished iterations since the checkpoint, and the running one.
                op.lost += repeat.finished - repeat.committed + u64::from(!repeat.checkpointing);
                let counts = repeat.counts.entry(current).or_default();
                counts.preemptions += 1;
                let exhausted = counts.preemptions > budgets.preemptions;
                repeat.checkpointing = false;
                repeat.finished = repeat.committed;
                repeat.worker = None;
                if exhausted {
                    op.failed += 1;
                    actions.push(Action::IterationAbandoned {
                        op: id,
                        iteration: current,
                    });
                    self.end(
                        id,
                        Conclusion::Failed(FailReason::TooManyPreemptions { iteration: current }),
                        actions,
                    );
                }
            }
            // A report that does not fit the phase (a checkpoint commit while
            // an iteration runs): not ours to act on.
            Report::Finished | Report::Committed => {}
        }
        // A suspending repeat that lost its worker has nothing left to run.
        if let Some(op) = self.ops.get(&id)
            && op.suspending
            && op.outcome.is_none()
            && matches!(&op.state, PlanState::Repeat(repeat) if repeat.worker.is_none())
        {
            self.end(id, Conclusion::Suspended, actions);
        }
    }

    fn on_parallel(
        &mut self,
        id: OpId,
        worker: WorkerId,
        report: Report,
        actions: &mut Vec<Action>,
    ) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let budgets = op.budgets;
        let PlanState::Parallel(parallel) = &mut op.state else {
            return;
        };
        let Some(iteration) = parallel.in_flight.remove(&worker) else {
            return;
        };
        let abandoned = match report {
            Report::Finished => {
                parallel.succeeded += 1;
                parallel.counts.remove(&iteration);
                false
            }
            // With the machine going, the body may have had the signal
            // too: no retry spent; it runs again on resume.
            Report::Failed | Report::Committed if op.suspending => {
                op.lost += 1;
                false
            }
            Report::Failed | Report::Committed => {
                let counts = parallel.counts.entry(iteration).or_default();
                counts.failures += 1;
                counts.failures > budgets.retries
            }
            Report::Lost => {
                op.lost += 1;
                let counts = parallel.counts.entry(iteration).or_default();
                counts.preemptions += 1;
                counts.preemptions > budgets.preemptions
            }
        };
        if abandoned {
            parallel.counts.remove(&iteration);
            op.failed += 1;
            actions.push(Action::IterationAbandoned { op: id, iteration });
        } else if report != Report::Finished {
            parallel.retry.push_back(iteration);
        }
        if report != Report::Lost {
            // Keep the worker for the next iteration unless the pool shrank
            // below what is in use (it goes), or an earlier
            // operation waits for one (first come, first served); an
            // operation that has run a while and keeps others hands it to
            // the oldest one that holds none, so that none starves behind a
            // large one.
            let older_waiting = self
                .active
                .range(..id)
                .any(|older| self.ops[older].wants_worker());
            let keeps_others = self.lent.get(&id).is_some_and(|n| *n > 1);
            let yield_to = if keeps_others && self.ops[&id].attempts >= YIELD_AFTER_STARTS {
                self.idle
                    .iter()
                    .find(|waiting| self.ops[waiting].wants_worker())
                    .copied()
            } else {
                None
            };
            if self.in_use > self.capacity || older_waiting {
                self.release(id, worker, actions);
            } else if let Some(waiting) = yield_to {
                self.release(id, worker, actions);
                // Not beyond a pool that shrank meanwhile.
                if self.in_use < self.capacity {
                    self.lend(waiting, actions);
                }
            } else {
                self.start_next_parallel(id, worker, actions);
            }
        }
        self.end_parallel_if_done(id, actions);
    }

    fn end_parallel_if_done(&mut self, id: OpId, actions: &mut Vec<Action>) {
        let Some(op) = self.ops.get(&id) else { return };
        let PlanState::Parallel(parallel) = &op.state else {
            return;
        };
        let total = op.plan.iterations();
        if op.outcome.is_none() && parallel.in_flight.is_empty() {
            if !parallel.has_pending(total) {
                let outcome = parallel.outcome(FailReason::NoIterationSucceeded);
                self.end(id, outcome, actions);
            } else if op.suspending {
                self.end(id, Conclusion::Suspended, actions);
            }
        }
    }

    /// The cap on attempts is reached: nothing more starts. Repeat fails;
    /// parallel abandons what has not run and ends when the rest is done.
    fn attempts_exhausted(&mut self, id: OpId, worker: WorkerId, actions: &mut Vec<Action>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let cap = op.budgets.max_attempts.unwrap_or(op.attempts);
        let total = op.plan.iterations();
        self.release(id, worker, actions);
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        match &mut op.state {
            PlanState::Repeat(_) => {
                self.end(
                    id,
                    Conclusion::Failed(FailReason::AttemptCapReached { attempts: cap }),
                    actions,
                );
            }
            PlanState::Parallel(parallel) => {
                while let Some(iteration) = parallel.next_pending(total) {
                    parallel.counts.remove(&iteration);
                    op.failed += 1;
                    actions.push(Action::IterationAbandoned { op: id, iteration });
                }
                if parallel.in_flight.is_empty() {
                    let outcome = parallel.outcome(FailReason::AttemptCapReached { attempts: cap });
                    self.end(id, outcome, actions);
                }
            }
        }
    }

    /// The operation gives a worker back to the pool.
    fn release(&mut self, id: OpId, worker: WorkerId, actions: &mut Vec<Action>) {
        if self.take_back(worker).is_some() {
            actions.push(Action::Release { op: id, worker });
        }
        if let Some(Operation {
            state: PlanState::Repeat(repeat),
            ..
        }) = self.ops.get_mut(&id)
            && repeat.worker == Some(worker)
        {
            repeat.worker = None;
        }
    }

    fn cancel(&mut self, id: OpId, actions: &mut Vec<Action>) {
        if self.stop_all(id, actions) {
            self.end(id, Conclusion::Cancelled, actions);
        }
    }

    fn suspend(&mut self, id: OpId, actions: &mut Vec<Action>) {
        if !self.active.contains(&id) {
            return;
        }
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.suspending = true;
        // Only what runs now goes on: with nothing running, it ends here.
        let idle = match &op.state {
            PlanState::Repeat(repeat) => repeat.worker.is_none(),
            PlanState::Parallel(parallel) => parallel.in_flight.is_empty(),
        };
        if idle {
            for worker in self.held_by(id) {
                self.release(id, worker, actions);
            }
            self.end(id, Conclusion::Suspended, actions);
        }
    }

    fn suspend_now(&mut self, id: OpId, actions: &mut Vec<Action>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if !op.suspending || op.outcome.is_some() {
            return;
        }
        let lost = match &op.state {
            // Its checkpoint is awaited: it ends once that is committed.
            PlanState::Repeat(repeat) if repeat.checkpointing => return,
            PlanState::Repeat(repeat) => {
                repeat.finished - repeat.committed + u64::from(repeat.worker.is_some())
            }
            PlanState::Parallel(parallel) => parallel.in_flight.len() as u64,
        };
        op.lost += lost;
        if self.stop_all(id, actions) {
            self.end(id, Conclusion::Suspended, actions);
        }
    }

    /// Instead of starting an iteration on `worker`, a suspending
    /// operation winds down: a repeat checkpoints what finished since its
    /// last checkpoint, then lets the worker go and ends; a parallel one
    /// lets the worker go and ends with its last run.
    fn wind_down(&mut self, id: OpId, worker: WorkerId, actions: &mut Vec<Action>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        match &mut op.state {
            PlanState::Repeat(repeat)
                if repeat.finished > repeat.committed && !repeat.checkpointing =>
            {
                repeat.checkpointing = true;
                actions.push(Action::Checkpoint {
                    op: id,
                    worker,
                    iterations_done: repeat.finished,
                });
            }
            PlanState::Repeat(_) => {
                self.release(id, worker, actions);
                self.end(id, Conclusion::Suspended, actions);
            }
            PlanState::Parallel(parallel) => {
                let last = parallel.in_flight.is_empty();
                self.release(id, worker, actions);
                if last {
                    self.end(id, Conclusion::Suspended, actions);
                }
            }
        }
    }

    fn stop_early(&mut self, id: OpId, actions: &mut Vec<Action>) {
        // A repeat's checkpoint on its way (the one a rule was met at, as
        // a rule is judged when a checkpoint commits) is awaited.
        if self.active.contains(&id)
            && let Some(op) = self.ops.get_mut(&id)
            && matches!(&op.state, PlanState::Repeat(repeat) if repeat.checkpointing)
        {
            op.stopping_early = true;
            return;
        }
        self.stop_early_now(id, actions);
    }

    fn stop_early_now(&mut self, id: OpId, actions: &mut Vec<Action>) {
        if !self.stop_all(id, actions) {
            return;
        }
        let kept = self.ops.get(&id).is_some_and(|op| match &op.state {
            PlanState::Repeat(repeat) => repeat.committed > 0,
            PlanState::Parallel(parallel) => parallel.succeeded > 0,
        });
        let outcome = if kept {
            Conclusion::Succeeded
        } else {
            Conclusion::Cancelled
        };
        self.end(id, outcome, actions);
    }

    /// The workers lent to `id`.
    fn held_by(&self, id: OpId) -> Vec<WorkerId> {
        self.workers
            .iter()
            .filter(|&(_, holder)| *holder == id)
            .map(|(&worker, _)| worker)
            .collect()
    }

    /// Stops every worker of the active operation `id` and forgets what
    /// they ran (a repeat goes back to its last checkpoint); false if it
    /// is not active.
    fn stop_all(&mut self, id: OpId, actions: &mut Vec<Action>) -> bool {
        if !self.active.contains(&id) {
            return false;
        }
        for worker in self.held_by(id) {
            self.take_back(worker);
            actions.push(Action::Stop { op: id, worker });
        }
        if let Some(op) = self.ops.get_mut(&id) {
            match &mut op.state {
                PlanState::Repeat(repeat) => {
                    repeat.worker = None;
                    repeat.checkpointing = false;
                    repeat.finished = repeat.committed;
                }
                PlanState::Parallel(parallel) => parallel.in_flight.clear(),
            }
        }
        true
    }

    fn end(&mut self, id: OpId, outcome: Conclusion, actions: &mut Vec<Action>) {
        if let Some(op) = self.ops.get_mut(&id)
            && op.outcome.is_none()
        {
            op.outcome = Some(outcome);
            self.active.remove(&id);
            self.idle.remove(&id);
            actions.push(Action::Finished { op: id, outcome });
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    Finished,
    Failed,
    Committed,
    Lost,
}

impl RepeatState {
    /// Where a run from the last checkpoint starts.
    fn rewound_start(&self) -> StartFrom {
        if self.committed == 0 {
            StartFrom::Submission
        } else {
            StartFrom::Checkpoint {
                iterations_done: self.committed,
            }
        }
    }
}

impl ParallelState {
    fn new(max_workers: Option<u64>) -> Self {
        ParallelState {
            max_workers,
            next_fresh: 0,
            skip: VecDeque::new(),
            skipped: 0,
            retry: VecDeque::new(),
            in_flight: BTreeMap::new(),
            succeeded: 0,
            counts: BTreeMap::new(),
        }
    }

    /// How a parallel operation with nothing left to run ends: it succeeded
    /// if any iteration did.
    fn outcome(&self, otherwise: FailReason) -> Conclusion {
        if self.succeeded > 0 {
            Conclusion::Succeeded
        } else {
            Conclusion::Failed(otherwise)
        }
    }

    /// Takes up a resumed operation's `finished` iterations (those below
    /// `total`): they count as succeeded and are never started.
    fn skip_finished(&mut self, mut finished: Vec<std::ops::Range<u64>>, total: u64) {
        finished.retain(|r| r.start < r.end.min(total));
        finished.sort_unstable_by_key(|r| r.start);
        let mut skip: VecDeque<std::ops::Range<u64>> = VecDeque::with_capacity(finished.len());
        for range in finished {
            let range = range.start..range.end.min(total);
            match skip.back_mut() {
                Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
                _ => skip.push_back(range),
            }
        }
        self.skipped = skip.iter().map(|r| r.end - r.start).sum();
        self.succeeded = self.skipped;
        self.skip = skip;
        self.pass_skipped();
    }

    /// Moves `next_fresh` past the finished iterations it has reached.
    fn pass_skipped(&mut self) {
        while let Some(range) = self.skip.front()
            && range.start <= self.next_fresh
        {
            self.next_fresh = self.next_fresh.max(range.end);
            self.skipped -= range.end - range.start;
            self.skip.pop_front();
        }
    }

    /// Iterations never started and not to be skipped.
    fn fresh_left(&self, total: u64) -> u64 {
        total.saturating_sub(self.next_fresh) - self.skipped
    }

    fn has_pending(&self, total: u64) -> bool {
        !self.retry.is_empty() || self.fresh_left(total) > 0
    }

    fn next_pending(&mut self, total: u64) -> Option<u64> {
        if let Some(iteration) = self.retry.pop_front() {
            return Some(iteration);
        }
        (self.fresh_left(total) > 0).then(|| {
            let iteration = self.next_fresh;
            self.next_fresh += 1;
            self.pass_skipped();
            iteration
        })
    }
}

impl Operation {
    fn workers_held(&self) -> u64 {
        match &self.state {
            PlanState::Repeat(repeat) => u64::from(repeat.worker.is_some()),
            PlanState::Parallel(parallel) => parallel.in_flight.len() as u64,
        }
    }

    /// How many workers the operation could use now in all.
    fn workers_wanted(&self, capacity: u64) -> u64 {
        match &self.state {
            PlanState::Repeat(_) => 1,
            PlanState::Parallel(parallel) => {
                let remaining = parallel.retry.len() as u64
                    + parallel.fresh_left(self.plan.iterations())
                    + parallel.in_flight.len() as u64;
                parallel.max_workers.unwrap_or(capacity).min(remaining)
            }
        }
    }

    fn wants_worker(&self) -> bool {
        if self.outcome.is_some() || self.suspending {
            return false;
        }
        match &self.state {
            PlanState::Repeat(repeat) => repeat.worker.is_none(),
            PlanState::Parallel(parallel) => {
                parallel.has_pending(self.plan.iterations())
                    && parallel
                        .max_workers
                        .is_none_or(|max| (parallel.in_flight.len() as u64) < max)
            }
        }
    }

    fn progress(&self) -> Progress {
        let (done, finished, in_flight) = match &self.state {
            PlanState::Repeat(repeat) => (
                repeat.committed,
                repeat.finished,
                u64::from(repeat.worker.is_some()),
            ),
            PlanState::Parallel(parallel) => (
                parallel.succeeded,
                parallel.succeeded,
                parallel.in_flight.len() as u64,
            ),
        };
        Progress {
            done,
            finished,
            in_flight,
            failed: self.failed,
            attempts: self.attempts,
            lost: self.lost,
            total: self.plan.iterations(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_report_from_a_lost_worker_changes_nothing() {
        let mut s = Scheduler::new(1);
        let (_, actions) = s
            .submit(
                Plan::Parallel {
                    iterations: 2,
                    max_workers: None,
                },
                Budgets::default(),
            )
            .unwrap();
        assert_eq!(actions.len(), 1);
        s.handle(Event::WorkerLost(WorkerId(0)));
        let before = s.clone();
        assert!(s.handle(Event::IterationFinished(WorkerId(0))).is_empty());
        assert_eq!(s, before);
    }
}
