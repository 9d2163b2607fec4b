//! The coordinator: one task that owns every operation's state ([`Op`])
//! and the scheduler, and hears everything that happens to them as
//! messages ([`Msg`]), so that nothing in it is locked. It asks the
//! scheduler what to do next and carries out its actions ([`act`]);
//! everything slow (jobs, commits, restores) runs in tasks that report
//! back by message.
//!
//! By concern: [`submit`] takes new and resumed operations in, [`start`]
//! starts jobs, [`results`] takes their results, [`commit`] makes repeat
//! checkpoints and parallel group commits and hears how they went, and
//! [`finish`] ends operations.
//!
//! [`act`]: Coordinator::act

mod commit;
mod finish;
mod msg;
mod results;
mod start;
mod submit;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pragma_checkpoint::Store;
use pragma_scheduler::{Action, Event as SchedulerEvent, OpId, Scheduler, WorkerId};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub(crate) use msg::Msg;

use crate::op::Op;
use crate::report::Status;
use crate::shared::Shared;
use pragma_contract::Host;

/// How often the backend's capacity is read again.
const CAPACITY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The scheduler's worker slots for `backend`: a slot per job it takes
/// at once, `batch` per slot of its capacity (see
/// [`ExecutionBackend::batch`](crate::ExecutionBackend::batch)).
fn slots(backend: &dyn crate::ExecutionBackend) -> u64 {
    backend.capacity().saturating_mul(backend.batch().max(1))
}

impl<St> Op<St> {
    /// Brings its usage up to the scheduler's `progress` of it (see
    /// `UsageCount::refresh`): of its runs in flight, at most one per task
    /// of a `backend` that batches may be running, at most its runs at
    /// once and the backend's capacity.
    fn refresh_usage(
        &mut self,
        progress: Option<pragma_scheduler::Progress>,
        backend: &dyn crate::ExecutionBackend,
    ) {
        self.usage.refresh(progress, self.running_at_most(backend));
    }

    /// How many of its runs in flight may be running at once on
    /// `backend`: for one that batches, one per task, at most its runs at
    /// once and the backend's capacity; else all.
    fn running_at_most(&self, backend: &dyn crate::ExecutionBackend) -> u64 {
        if backend.batch() > 1 {
            self.runs_at_once()
                .unwrap_or(u64::MAX)
                .min(backend.capacity())
        } else {
            u64::MAX
        }
    }
}

/// Says `schedule` in runs, not in the scheduler's slots: a backend that
/// batches has `batch` of them per run, so the workers it waits for are
/// divided by `batch`, and of its iterations in flight (handed over,
/// waiting in a task or running) at most `running` run (see
/// `Op::refresh_usage`): what is said to be in flight never exceeds that.
fn in_runs(schedule: &mut pragma_scheduler::Phase, batch: u64, running: u64) {
    use pragma_scheduler::{Phase, WaitReason};
    let (Phase::Queued { progress, .. }
    | Phase::Running { progress }
    | Phase::Suspended { progress, .. }
    | Phase::Ended { progress, .. }) = schedule;
    progress.in_flight = progress.in_flight.min(running);
    if let Phase::Queued { reason, .. } | Phase::Suspended { reason, .. } = schedule
        && let WaitReason::WaitingForWorkers {
            missing, wanted, ..
        } = reason
        && batch > 1
    {
        *missing = missing.div_ceil(batch);
        *wanted = wanted.div_ceil(batch);
    }
}

/// Tells the coordinator whenever the backend's capacity changes (a
/// cluster that grows or shrinks), reading it every [`CAPACITY_EVERY`],
/// for as long as the coordinator is there.
async fn follow_capacity<H: Host, S: Store + 'static>(
    shared: Arc<Shared<H, S>>,
    coordinator: mpsc::WeakUnboundedSender<Msg<H::State>>,
) {
    let mut told = slots(&*shared.backend);
    loop {
        tokio::time::sleep(CAPACITY_EVERY).await;
        let Some(coordinator) = coordinator.upgrade() else {
            return;
        };
        let capacity = slots(&*shared.backend);
        if capacity != told {
            if coordinator.send(Msg::Capacity(capacity)).is_err() {
                return;
            }
            told = capacity;
        }
    }
}

/// Maps keyed by small sequential numbers: ordered maps are cheaper than
/// hashing them.
type ByWorker<V> = BTreeMap<WorkerId, V>;

/// A job on its way.
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

/// The coordinator task's state.
pub(crate) struct Coordinator<H: Host, S: Store + 'static> {
    shared: Arc<Shared<H, S>>,
    scheduler: Scheduler,
    ops: BTreeMap<OpId, Op<H::State>>,
    by_name: HashMap<String, OpId>,
    running: ByWorker<Running>,
    /// The state each repeat worker goes on from.
    worker_states: ByWorker<H::State>,
    tasks: JoinSet<()>,
    /// An empty vector for the scheduler's actions, reused.
    spare_actions: Vec<Action>,
    control: mpsc::UnboundedSender<Msg<H::State>>,
}

impl<H: Host, S: Store + 'static> Coordinator<H, S> {
    /// Starts the coordinator of `shared`'s operations, hearing `inbox`
    /// (whose sender is `control`).
    pub(crate) fn spawn(
        shared: Arc<Shared<H, S>>,
        control: mpsc::UnboundedSender<Msg<H::State>>,
        inbox: mpsc::UnboundedReceiver<Msg<H::State>>,
    ) -> tokio::task::JoinHandle<()> {
        let coordinator = Coordinator {
            scheduler: Scheduler::new(slots(&*shared.backend)),
            shared,
            ops: BTreeMap::new(),
            by_name: HashMap::new(),
            running: ByWorker::new(),
            worker_states: ByWorker::new(),
            tasks: JoinSet::new(),
            spare_actions: Vec::new(),
            control,
        };
        tokio::spawn(follow_capacity(
            Arc::clone(&coordinator.shared),
            coordinator.control.downgrade(),
        ));
        tokio::spawn(coordinator.run(inbox))
    }

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
            Msg::Flush(id) => self.flush(id),
            Msg::Capacity(capacity) => self.tell(SchedulerEvent::SetCapacity(capacity)),
            Msg::Cancel(name) => {
                if let Some(&op) = self.by_name.get(&name) {
                    let actions = self.scheduler.handle(SchedulerEvent::Cancel(op));
                    self.act(actions);
                }
            }
            Msg::Suspend(name, grace) => self.suspend(&name, grace),
            Msg::SuspendNow(name) => {
                if let Some(&op) = self.by_name.get(&name) {
                    self.tell(SchedulerEvent::SuspendNow(op));
                }
            }
        }
    }

    /// A held-back group commit's turn has come.
    fn flush(&mut self, id: OpId) {
        if let Some(op) = self.ops.get_mut(&id) {
            op.group.flush_scheduled = false;
        }
        self.commit_batch(id);
        self.finish_if_idle(id);
    }

    /// Tells `event` to the scheduler and carries out what it says.
    fn tell(&mut self, event: SchedulerEvent) {
        let actions = self.scheduler.handle(event);
        self.act(actions);
    }

    /// A preemption notice for `name`: nothing starts any more, and after
    /// `grace` what still runs is stopped.
    fn suspend(&mut self, name: &str, grace: std::time::Duration) {
        let Some(&id) = self.by_name.get(name) else {
            return;
        };
        let Some(op) = self.ops.get(&id) else {
            return;
        };
        if op.ending.is_ending() {
            return;
        }
        op.emit(|op| crate::report::Event::Suspending {
            op,
            grace_seconds: grace.as_secs_f64(),
        });
        self.tell(SchedulerEvent::Suspend(id));
        let control = self.control.clone();
        let name = name.to_owned();
        self.tasks.spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = control.send(Msg::SuspendNow(name));
        });
    }

    /// A stop rule `id` met is told to the scheduler (once), unless the
    /// operation ends anyway.
    fn stop_if_due(&mut self, id: OpId) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if op.ending.is_ending() {
            return;
        }
        let Some(reason) = op.stop.take_due() else {
            return;
        };
        op.emit(|op| crate::report::Event::StoppedEarly { op, reason });
        self.tell(SchedulerEvent::StopEarly(id));
    }

    fn update_status(&self, id: OpId) {
        if let (Some(op), Some(mut schedule)) = (self.ops.get(&id), self.scheduler.status(id)) {
            let backend = &*self.shared.backend;
            in_runs(&mut schedule, backend.batch(), op.running_at_most(backend));
            op.status.send_replace(Status {
                schedule,
                best: op.best_score(),
            });
        }
    }

    /// Carries out the scheduler's actions, then updates the status of
    /// every operation they touched.
    fn act(&mut self, mut actions: Vec<Action>) {
        // Nearly always one operation: no allocation for it.
        let (mut first, mut others): (Option<OpId>, Vec<OpId>) = (None, Vec::new());
        for action in actions.drain(..) {
            let op = self.carry_out(action);
            match first {
                None => first = Some(op),
                Some(f) if f == op => {}
                Some(_) => {
                    if !others.contains(&op) {
                        others.push(op);
                    }
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

    /// Carries out one action; returns the operation it touched.
    fn carry_out(&mut self, action: Action) -> OpId {
        match action {
            Action::Start {
                op,
                worker,
                iteration,
                attempt,
                from,
            } => {
                self.start(op, worker, iteration, attempt, from);
                op
            }
            Action::Checkpoint {
                op,
                worker,
                iterations_done,
            } => {
                self.checkpoint(op, worker, iterations_done);
                op
            }
            Action::Stop { op, worker } => {
                if let Some(running) = self.running.remove(&worker) {
                    running.cancel.cancel();
                    running.task.abort();
                    if let Some(stopped) = self.ops.get_mut(&op) {
                        stopped.attempts.end(running.iteration);
                    }
                }
                self.worker_states.remove(&worker);
                op
            }
            Action::Release { op, worker } => {
                self.worker_states.remove(&worker);
                op
            }
            Action::IterationAbandoned { op, iteration } => {
                if let Some(o) = self.ops.get_mut(&op) {
                    o.progress.abandon(iteration);
                }
                op
            }
            Action::Finished { op, outcome } => {
                if let Some(o) = self.ops.get_mut(&op) {
                    o.ending.outcome = Some(outcome);
                }
                self.finish_if_idle(op);
                op
            }
        }
    }
}
