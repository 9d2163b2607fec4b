//! New and resumed operations: the plan and budgets the scheduler gets,
//! and the operation's first events.

use pragma_checkpoint::Store;
use pragma_parse::Directive;
use pragma_scheduler::{Action, Budgets, OpId, Plan, Resume};

use super::Coordinator;
use crate::op::NewOp;
use crate::op::Op;
use crate::report::{Event, FinalStatus};
use pragma_contract::Host;

/// The scheduler's plan for `directive`.
fn plan_of(directive: &Directive, batch: u64) -> Plan {
    match directive {
        Directive::Repeat(r) => Plan::Repeat {
            iterations: r.iterations(),
            checkpoint_period: r.checkpoint_period(),
        },
        // Without `--parallel-runs`, as many as the backend has room for,
        // now and as its capacity changes; a backend that batches is
        // handed `batch` jobs per run at once (it keeps to the runs).
        Directive::Parallel(p) => Plan::Parallel {
            iterations: p.iterations(),
            max_workers: p
                .parallel_runs()
                .map(|runs| runs.max(1).saturating_mul(batch)),
        },
        Directive::Async => Plan::Async,
    }
}

impl<H: Host, S: Store + 'static> Coordinator<H, S> {
    /// Takes an operation in and schedules it (from where it got, if it
    /// is resumed).
    pub(super) fn submit(&mut self, new: NewOp<H::State>) {
        let plan = plan_of(&new.directive, self.shared.backend.batch().max(1));
        let (op, progress) = Op::new(new);
        let Some((id, actions)) = self.schedule(&op, plan, progress) else {
            return;
        };
        self.by_name.insert(op.name.clone(), id);
        self.ops.insert(id, op);
        self.announce_queued(id, &actions);
        self.act(actions);
        // A resumed operation may have met a rule before it went down.
        self.stop_if_due(id);
        self.update_status(id);
    }

    /// Hands `op`'s plan to the scheduler; `None` if it refuses, which
    /// ends the operation at once.
    fn schedule(
        &mut self,
        op: &Op<H::State>,
        plan: Plan,
        progress: Option<Resume>,
    ) -> Option<(OpId, Vec<Action>)> {
        let config = self.shared.config;
        let budgets = Budgets {
            retries: config.retries,
            preemptions: config.preemptions,
            max_attempts: config.max_attempts,
        };
        let result = match progress {
            Some(progress) => {
                op.emit(|op| Event::Resumed {
                    op,
                    iterations_done: match &progress {
                        Resume::Repeat { iterations_done } => *iterations_done,
                        Resume::Parallel { finished } => {
                            finished.iter().map(|r| r.end - r.start).sum()
                        }
                    },
                });
                self.scheduler.resume(plan, budgets, progress)
            }
            None => self.scheduler.submit(plan, budgets),
        };
        match result {
            Ok(submitted) => Some(submitted),
            Err(e) => {
                op.emit(|op| Event::Finished {
                    op,
                    status: FinalStatus::Failed {
                        reason: e.to_string(),
                    },
                    best: None,
                });
                None
            }
        }
    }

    /// Says why an operation waits, if it waits for workers from the
    /// start.
    fn announce_queued(&self, id: OpId, actions: &[Action]) {
        if let Some(pragma_scheduler::Phase::Queued { reason, .. }) = self.scheduler.status(id)
            && actions.is_empty()
            && let Some(op) = self.ops.get(&id)
        {
            op.emit(|op| Event::Queued {
                op,
                reason: reason.to_string(),
            });
        }
    }
}
