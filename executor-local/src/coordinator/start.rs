//! Starting a job: its spec (what can travel to another machine), its
//! input state, the same work ready to run here, and the task that hands
//! it to the backend.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use pragma_checkpoint::Store;
use pragma_parse::Directive;
use pragma_scheduler::{OpId, StartFrom, WorkerId};
use tokio_util::sync::CancellationToken;

use super::{Coordinator, Msg, Running};
use crate::job::JobResult;
use crate::op::Op;
use crate::persist::restore_generation;
use crate::report::Event;
use pragma_contract::Host;
use pragma_contract::{
    Job, JobOutcome, JobSpec, LocalOutput, RunError, StateRef, derive_seed, run_iteration,
};

/// Where a job run here takes its input state from.
enum Source<St> {
    /// In memory already.
    Ready(St),
    /// Restored from part `.1` of generation `.0`.
    Load(u64, &'static str),
}

impl<H: Host, S: Store + 'static> Coordinator<H, S> {
    /// Starts attempt `attempt` of `iteration` of `id` on `worker`, from
    /// the state `from` names.
    pub(super) fn start(
        &mut self,
        id: OpId,
        worker: WorkerId,
        iteration: u64,
        attempt: u32,
        from: StartFrom,
    ) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let attempt = op.attempts.start(iteration, attempt);
        op.announce_start(iteration, attempt);
        if op.is_repeat() {
            op.runs_since_checkpoint += 1;
        }
        // The spec names the input in the store unless this worker holds
        // it in memory, which only a run here can use.
        let in_memory =
            matches!(from, StartFrom::Previous) && self.worker_states.contains_key(&worker);
        let spec = op.job_spec(iteration, attempt, from, in_memory);
        let source = match from {
            StartFrom::Submission => match &op.submission {
                Some(state) => Source::Ready((**state).clone()),
                None => Source::Load(op.chain.submission_generation, "submission"),
            },
            StartFrom::Previous => match self.worker_states.remove(&worker) {
                Some(state) => Source::Ready(state),
                None => Source::Load(op.chain.last_checkpoint(), "state"),
            },
            StartFrom::Checkpoint { .. } => Source::Load(op.chain.last_checkpoint(), "state"),
        };
        let cancel = CancellationToken::new();
        let job = self.local_job(spec, source, cancel.clone());
        self.spawn_job(id, worker, iteration, cancel, job);
    }

    /// The job doing `spec`, whose run here starts from `source` and stops
    /// when `cancel` fires.
    fn local_job(&self, spec: JobSpec, source: Source<H::State>, cancel: CancellationToken) -> Job {
        let ctx = spec.context_with(cancel);
        let (body, expr) = (Arc::clone(&spec.body), spec.expr.clone());
        let shared = Arc::clone(&self.shared);
        Job::new(spec, async move {
            let begin = Instant::now();
            let state = match source {
                Source::Ready(state) => Ok(state),
                Source::Load(generation, part) => {
                    restore_generation(&shared, &ctx.op, generation, part)
                        .await
                        .map_err(|e| {
                            RunError::Failed(format!("restoring the last checkpoint: {e}"))
                        })
                }
            };
            let (result, evaluation) =
                run_iteration(&shared.host, state, &body, &ctx, expr.as_deref()).await;
            LocalOutput::new(JobResult {
                iteration: ctx.iteration,
                result,
                evaluation,
                seconds: begin.elapsed().as_secs_f64(),
                lost_runs: 0,
            })
        })
    }

    /// Hands `job` to the backend on `worker`; the result comes back as a
    /// [`Msg::JobDone`].
    fn spawn_job(
        &mut self,
        id: OpId,
        worker: WorkerId,
        iteration: u64,
        cancel: CancellationToken,
        job: Job,
    ) {
        let backend = Arc::clone(&self.shared.backend);
        let control = self.control.clone();
        let task = tokio::spawn(async move {
            let begin = Instant::now();
            // A panic in the backend (or in a job it runs here) fails the
            // iteration: the operation goes on, never waits for a result
            // that cannot come.
            let output = match AssertUnwindSafe(backend.execute(worker, job))
                .catch_unwind()
                .await
            {
                Ok(output) => output,
                Err(panic) => JobOutcome::Ran(LocalOutput::new(JobResult::<H::State> {
                    iteration,
                    result: Err(RunError::from_panic("the execution backend", panic)),
                    evaluation: None,
                    seconds: begin.elapsed().as_secs_f64(),
                    lost_runs: 0,
                })),
            };
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
}

impl<St> Op<St> {
    /// Says that an iteration starts (and, at the first, the operation).
    fn announce_start(&mut self, iteration: u64, attempt: u32) {
        if !self.started {
            self.started = true;
            self.emit(|op| Event::Started { op });
        }
        if attempt > 1 {
            self.emit(|op| Event::Retrying {
                op,
                iteration,
                attempt,
            });
        }
        self.emit(|op| Event::IterationStarted {
            op,
            iteration,
            attempt,
        });
    }

    /// What attempt `attempt` of `iteration` does, starting from `from`
    /// (held `in_memory` by its worker, which no other process can reach).
    fn job_spec(&self, iteration: u64, attempt: u32, from: StartFrom, in_memory: bool) -> JobSpec {
        let input = match from {
            StartFrom::Submission => Some((self.chain.submission_generation, "submission")),
            StartFrom::Previous if in_memory => None,
            StartFrom::Previous | StartFrom::Checkpoint { .. } => {
                Some((self.chain.last_checkpoint(), "state"))
            }
        };
        let mut spec = JobSpec::new(
            Arc::clone(&self.shared_name),
            iteration,
            self.directive.iterations(),
            Arc::clone(&self.body),
        );
        spec.attempt = attempt;
        spec.iteration_var = Arc::clone(&self.var);
        spec.seed = derive_seed(&self.name, iteration);
        spec.expr = self.job_expr();
        spec.input = input.map(|(generation, part)| StateRef {
            generation,
            part: part.into(),
        });
        spec.result_saved = self.result_saved(iteration);
        spec.runs_at_once = self.runs_at_once();
        spec
    }

    /// How many of its iterations may run at once: its `--parallel-runs`,
    /// 1 for a `repeat` or `async`, `None` for as many as there is room for.
    pub(crate) fn runs_at_once(&self) -> Option<u64> {
        match &self.directive {
            Directive::Parallel(parallel) => parallel.parallel_runs().map(|runs| runs.max(1)),
            Directive::Repeat(_) | Directive::Async => Some(1),
        }
    }

    /// Whether the state `iteration` leaves is saved: every candidate is; a
    /// repeat saves its checkpoints (after every period and the last).
    pub(crate) fn result_saved(&self, iteration: u64) -> bool {
        match &self.directive {
            Directive::Repeat(repeat) => {
                let done = iteration + 1;
                done.is_multiple_of(repeat.checkpoint_period().max(1))
                    || done >= repeat.iterations()
            }
            _ => true,
        }
    }
}
