//! Iterations to Ray in batches: the iterations of one operation that
//! the executor hands over together run one after another in one Ray
//! task, so that a task's cost (its scheduling, the supervisor's hop,
//! the result's way back: a few milliseconds here) is shared by them
//! rather than paid by each, as Ray's own guidance for tiny tasks says.
//!
//! The executor hands the backend [`BATCH`] jobs per run it may have
//! (see `ExecutionBackend::batch`); here they wait in their operation's
//! queue, and each free lane (a task that may run: at most the cluster's
//! CPUs in all, and at most the operation's `--parallel-runs`) takes its
//! share of them, the operation whose job has waited longest first. How
//! many one task takes follows the operation's last task: about
//! [`TASK_SECONDS`] of work at its pace (and at most [`TASK_BYTES`] of
//! resulting states, at the largest size its tasks returned), so that a
//! slow iteration is a task of its own (the lanes stay balanced, a lost
//! node loses little, and its result is recorded as soon as it would be
//! one by one). The first task of an operation, whose pace is not known,
//! runs one iteration, as does the first after a task that failed or was
//! lost. A task hands each iteration's outcome over as it ends, so a task
//! lost midway loses only the run it had; the iterations it had not
//! started are queued again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use tokio::sync::oneshot;

use super::{
    Ended, POLL_SECONDS, call_dispatcher, call_dispatcher_with, read_polled, stop_off_thread,
};

/// The most iterations one task runs; the executor hands over as many
/// per run.
pub(super) const BATCH: u64 = 32;

/// About how long the iterations of one task take, at their operation's
/// pace.
const TASK_SECONDS: f64 = 0.1;

/// About how many bytes of resulting states one task hands back at most,
/// at the largest size its operation's tasks returned: a batch of large
/// states would crowd the object store.
const TASK_BYTES: f64 = (64 << 20) as f64;

/// The outcome of a job whose task was lost before it started it: it is
/// queued again, not handed to the executor.
const UNSTARTED: &str = "unstarted";

/// How long the first job handed over waits for the others that come
/// with it (the executor hands a batch over job by job).
const GATHER: Duration = Duration::from_millis(1);

/// How long an operation's pace is kept once none of its jobs is left.
const KEEP_PACE: Duration = Duration::from_secs(60);

/// A job waiting for its lane: its spec (JSON), where its outcome goes
/// (closed once the executor dropped the job: a cancel), since when it
/// waits, and the runs of it cut short before, told with its outcome (see
/// `Ended`'s `cut_short`).
struct Queued {
    spec: String,
    done: oneshot::Sender<Ended>,
    since: Instant,
    cut_short: u64,
}

/// The lanes in use, and the jobs waiting for one, by operation.
#[derive(Default)]
struct Lanes {
    ops: HashMap<Arc<str>, OpLanes>,
    /// Tasks running, of every operation.
    running: u64,
    /// A dispatch is coming (the first job handed over waits for the rest).
    gathering: bool,
}

#[derive(Default)]
struct OpLanes {
    queued: VecDeque<Queued>,
    /// Its tasks running.
    running: u64,
    /// Its `--parallel-runs` (`None`: as many as the cluster has room for).
    runs_at_once: Option<u64>,
    /// Seconds per iteration in its last task, Ray's cost included.
    pace: Option<f64>,
    /// Bytes of resulting state per iteration, the most of any of its
    /// tasks.
    state_bytes: f64,
    /// When it last had a task or a job.
    seen: Option<Instant>,
}

impl OpLanes {
    /// How many of its iterations the next task runs, at most.
    fn task_size(&self) -> u64 {
        // What of a batch fits in a task's time, and its bytes.
        let by_bytes = if self.state_bytes > 0.0 {
            (TASK_BYTES / self.state_bytes) as u64
        } else {
            BATCH
        };
        let by_time = match self.pace {
            Some(pace) if pace > 0.0 => (TASK_SECONDS / pace) as u64,
            Some(_) => BATCH,
            None => 1,
        };
        by_time.min(by_bytes).clamp(1, BATCH)
    }

    /// Lanes it may take now, with `free` lanes left in all.
    fn free_lanes(&self, free: u64) -> u64 {
        self.runs_at_once
            .map_or(free, |runs| free.min(runs.saturating_sub(self.running)))
    }
}

/// The batching part of the Ray backend: jobs in, tasks out.
pub(super) struct Batches {
    lanes: Mutex<Lanes>,
    /// How many tasks may run at once (the cluster's CPUs).
    capacity: Arc<AtomicU64>,
    /// `pragma_notebook.ray_backend.Dispatcher`.
    dispatcher: Arc<Py<PyAny>>,
    /// The store as every node opens it.
    store: String,
}

impl Batches {
    pub(super) fn new(
        dispatcher: Arc<Py<PyAny>>,
        capacity: Arc<AtomicU64>,
        store: String,
    ) -> Batches {
        Batches {
            lanes: Mutex::default(),
            capacity,
            dispatcher,
            store,
        }
    }

    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        // A panic elsewhere leaves the queues as they were.
        self.lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the job `spec` (JSON) of `op`, which runs at most
    /// `runs_at_once` at once; its outcome comes on the receiver once its
    /// task ended. Dropping the receiver drops the job: a task whose jobs
    /// are all dropped is cancelled.
    pub(super) fn queue(
        self: &Arc<Self>,
        op: Arc<str>,
        runs_at_once: Option<u64>,
        spec: String,
    ) -> oneshot::Receiver<Ended> {
        let (done, ended) = oneshot::channel();
        let gather = {
            let mut lanes = self.lanes();
            let op = lanes.ops.entry(op).or_default();
            op.runs_at_once = runs_at_once;
            op.seen = Some(Instant::now());
            op.queued.push_back(Queued {
                spec,
                done,
                since: Instant::now(),
                cut_short: 0,
            });
            !std::mem::replace(&mut lanes.gathering, true)
        };
        if gather {
            let batches = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(GATHER).await;
                batches.lanes().gathering = false;
                batches.dispatch();
            });
        }
        ended
    }

    /// Starts a task on each free lane, with its share of its operation's
    /// queued jobs.
    fn dispatch(self: &Arc<Self>) {
        let capacity = self.capacity.load(Ordering::Relaxed).max(1);
        let mut tasks = Vec::new();
        {
            let mut lanes = self.lanes();
            let Lanes { ops, running, .. } = &mut *lanes;
            // Cancelled while they waited.
            for op in ops.values_mut() {
                op.queued.retain(|job| !job.done.is_closed());
            }
            // The operation whose job has waited longest first: one that
            // keeps handing jobs over does not keep the others waiting.
            let mut waiting: Vec<(Instant, Arc<str>)> = ops
                .iter()
                .filter_map(|(name, op)| Some((op.queued.front()?.since, Arc::clone(name))))
                .collect();
            waiting.sort_unstable();
            for (_, name) in waiting {
                let Some(op) = ops.get_mut(&name) else {
                    continue;
                };
                loop {
                    let free = op.free_lanes(capacity.saturating_sub(*running));
                    if op.queued.is_empty() || free == 0 {
                        break;
                    }
                    // The queue shared over the free lanes, within a task's size.
                    let share = (op.queued.len() as u64).div_ceil(free);
                    let size = share.min(op.task_size()) as usize;
                    let jobs: Vec<Queued> = op.queued.drain(..size).collect();
                    op.running += 1;
                    *running += 1;
                    op.seen = Some(Instant::now());
                    tasks.push((Arc::clone(&name), jobs));
                }
            }
            ops.retain(|_, op| {
                !op.queued.is_empty()
                    || op.running > 0
                    || op.seen.is_some_and(|seen| seen.elapsed() < KEEP_PACE)
            });
        }
        for (op, jobs) in tasks {
            tokio::spawn(Arc::clone(self).run(op, jobs));
        }
    }

    /// Runs `jobs` of `op` as one task, hands each its outcome, and gives
    /// the lane to the next.
    async fn run(self: Arc<Self>, op: Arc<str>, jobs: Vec<Queued>) {
        let begin = Instant::now();
        let ended = self.run_on_ray(&jobs).await;
        let count = jobs.len() as f64;
        let (pace, state_bytes) = match &ended {
            Ok(outcomes) if outcomes.iter().all(|ended| ended.kind == "done") => {
                let bytes: usize = outcomes
                    .iter()
                    .filter_map(|ended| ended.state.as_ref())
                    .map(Vec::len)
                    .sum();
                (
                    Some(begin.elapsed().as_secs_f64() / count),
                    bytes as f64 / count,
                )
            }
            _ => (None, 0.0),
        };
        let mut unstarted = Vec::new();
        match ended {
            Ok(outcomes) => {
                for (mut job, mut outcome) in jobs.into_iter().zip(outcomes) {
                    if outcome.kind == UNSTARTED {
                        job.cut_short += outcome.cut_short;
                        unstarted.push(job);
                    } else {
                        outcome.cut_short += job.cut_short;
                        let _ = job.done.send(outcome);
                    }
                }
            }
            Err(why) => {
                for job in jobs {
                    let _ = job.done.send(Ended::failed(why.clone()));
                }
            }
        }
        {
            let mut lanes = self.lanes();
            lanes.running = lanes.running.saturating_sub(1);
            // It is there while its task runs (see `dispatch`).
            let op = lanes.ops.entry(op).or_default();
            // Never started (their task was lost before): first in line
            // again, as they were, and counted nowhere.
            for job in unstarted.into_iter().rev() {
                op.queued.push_front(job);
            }
            op.running = op.running.saturating_sub(1);
            op.seen = Some(Instant::now());
            // The last task's pace, as it is now: a first task that waited
            // for a worker process to start says little. After a task that
            // failed or lost its node, one iteration again: what one task
            // holds is lost with it.
            op.pace = pace;
            op.state_bytes = op.state_bytes.max(state_bytes);
        }
        self.dispatch();
    }

    /// Submits `jobs` as one task and follows it until it ends; each job's
    /// outcome, in order. A task whose jobs were all dropped meanwhile is
    /// cancelled.
    async fn run_on_ray(&self, jobs: &[Queued]) -> Result<Vec<Ended>, String> {
        let specs: Vec<String> = jobs.iter().map(|job| job.spec.clone()).collect();
        let store = self.store.clone();
        let task: Py<PyAny> = call_dispatcher(&self.dispatcher, "submit_batch", move |py| {
            (specs, store).into_pyobject(py)
        })
        .await
        .map_err(|e| format!("the iteration could not be submitted to Ray: {e}"))?;
        let task = Arc::new(task);
        loop {
            let polled = Arc::clone(&task);
            let answer = call_dispatcher_with(
                &self.dispatcher,
                "poll_batch",
                move |py| (polled.clone_ref(py), POLL_SECONDS).into_pyobject(py),
                read_batch,
            )
            .await
            .map_err(|e| format!("Ray could not say how the iteration went: {e}"))?;
            match answer {
                Some(outcomes) if outcomes.len() == jobs.len() => return Ok(outcomes),
                Some(outcomes) => {
                    return Err(format!(
                        "Ray answered for {} iterations of a task of {}",
                        outcomes.len(),
                        jobs.len()
                    ));
                }
                None if jobs.iter().all(|job| job.done.is_closed()) => {
                    stop_off_thread(&self.dispatcher, "cancel_batch", task, "the Ray task");
                    return Err("the iterations were cancelled".to_owned());
                }
                None => {}
            }
        }
    }
}

/// Reads what `Dispatcher.poll_batch` answers: `None` while the task
/// runs, else each job's outcome (as `Dispatcher.poll_batch` says).
fn read_batch(answer: Bound<'_, PyAny>) -> PyResult<Option<Vec<Ended>>> {
    if answer.is_none() {
        return Ok(None);
    }
    let mut outcomes = Vec::new();
    for outcome in answer.try_iter()? {
        let outcome = read_polled(outcome?)?.ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err("an iteration of the task has no outcome")
        })?;
        outcomes.push(outcome);
    }
    Ok(Some(outcomes))
}
