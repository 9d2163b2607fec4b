//! Durability against a machine or a store that goes away mid-operation:
//! the executor's operations on the local store over a file system that
//! loses power after every possible call ([`power_loss`]), and on an object
//! store whose k-th request fails, refused or unanswered, once or for good
//! ([`faulty_store`]). Each time a new executor takes the operation up
//! where the store says it was: it ends with an uninterrupted run's best,
//! nothing a commit reported durable is lost or runs again, a repeat loses
//! at most its checkpoint period, and no data that no checkpoint uses is
//! left in the store.

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

use pragma_checkpoint::{Key, Store};
use pragma_executor_local::{Host, IterationContext, RunError, async_trait};
use tokio::io::{AsyncRead, AsyncWrite};

use super::*;

mod faulty_store;
mod power_loss;

/// The cells every scenario runs, and what a repeat may lose.
const REPEAT: &str = "#pragma repeat --iterations 12 --checkpoint-period 3 --max-by value\nbody";
const PARALLEL: &str = "#pragma parallel --iterations 20 --parallel-runs 3 --max-by value\nbody";
const REPEAT_ITERATIONS: u64 = 12;
const CHECKPOINT_PERIOD: usize = 3;

fn host() -> ScriptedHost {
    ScriptedHost::new()
        .value(4, 40.0)
        .value(7, 70.0)
        .value(9, 70.0)
}

fn start_state() -> MapState {
    MapState::from([("data".to_string(), 1.0)])
}

/// Whether the machine (or its store) is gone.
type Gone = Arc<dyn Fn() -> bool + Send + Sync>;

/// The scripted host on a machine that can go: once it is gone, no body
/// starts and none that ran reports back.
#[derive(Clone)]
struct MachineHost {
    inner: ScriptedHost,
    gone: Gone,
}

impl MachineHost {
    async fn stop_if_gone(&self) {
        if (self.gone)() {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl Host for MachineHost {
    type State = MapState;

    async fn run(
        &self,
        body: &str,
        state: &mut MapState,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        self.stop_if_gone().await;
        let result = self.inner.run(body, state, ctx).await;
        self.stop_if_gone().await;
        result
    }

    async fn evaluate(&self, expr: &str, state: &MapState) -> Evaluation {
        self.inner.evaluate(expr, state).await
    }

    async fn snapshot(
        &self,
        state: &MapState,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<()> {
        self.inner.snapshot(state, out).await
    }

    async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<MapState> {
        self.inner.restore(input).await
    }

    fn set_iteration_var(&self, state: &mut MapState, name: &str, iteration: u64) {
        self.inner.set_iteration_var(state, name, iteration);
    }

    fn remove_iteration_var(&self, state: &mut MapState, name: &str) {
        self.inner.remove_iteration_var(state, name);
    }
}

/// What the first executor reported before its machine went.
#[derive(Debug, Default)]
struct FirstLife {
    op: Option<String>,
    /// Repeat: the iterations the newest committed checkpoint covers.
    checkpointed: u64,
    /// Parallel: the iterations commits recorded as finished.
    recorded: BTreeSet<u64>,
    outcome: Option<Outcome<MapState>>,
    /// The iterations its bodies ran before the machine went.
    runs: Vec<u64>,
}

/// Runs `cell` on `store` until it ends or `gone` says the machine is.
async fn first_life<S: Store + Clone + 'static>(
    store: Option<S>,
    gone: Gone,
    cell: &str,
) -> FirstLife {
    let mut life = FirstLife::default();
    let Some(store) = store else {
        return life;
    };
    let host = host();
    let machine = MachineHost {
        inner: host.clone(),
        gone: Arc::clone(&gone),
    };
    let executor = Executor::new(machine, store, config(3));
    let Ok(mut handle) = executor.submit(cell, start_state()).await else {
        return life;
    };
    let ran = |host: &ScriptedHost| host.runs().iter().map(|run| run.iteration).collect();
    life.op = Some(handle.id().to_owned());
    let went = async {
        while !gone() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::pin!(went);
    loop {
        tokio::select! {
            event = handle.next_event() => match event {
                Some(Event::CheckpointCommitted { iterations_done, recorded, .. }) => {
                    life.checkpointed = life.checkpointed.max(iterations_done);
                    life.recorded.extend(recorded);
                }
                Some(Event::Finished { .. }) | None => break,
                Some(_) => {}
            },
            () = &mut went => {
                life.runs = ran(&host);
                return life;
            }
        }
    }
    life.outcome = handle.wait().await.ok();
    life.runs = ran(&host);
    life
}

/// What the second executor did: its events, outcome and runs.
struct SecondLife {
    events: Vec<Event>,
    outcome: Outcome<MapState>,
    runs: Vec<u64>,
}

/// Takes `cell`'s operation up on `store` as a restarted host does
/// (resumes it, or starts it again if nothing of it was durable) and runs
/// it to the end.
async fn second_life<S: Store + Clone + 'static>(
    store: S,
    cell: &str,
    op: Option<&str>,
    point: &str,
) -> SecondLife {
    let host = host();
    let executor = Executor::new(host.clone(), store, config(3));
    // A submit cut short returned no id: what the store holds unfinished
    // is what a restarted host finds and resumes.
    let unfinished = executor.unfinished().await.unwrap();
    let acknowledged = op;
    let op = op
        .map(str::to_owned)
        .or_else(|| unfinished.first().cloned());
    let known = executor.operations().await.unwrap();
    if let Some(acknowledged) = acknowledged {
        // A submit that returned was durable.
        assert!(
            known.iter().any(|k| k == acknowledged),
            "{point}: the submitted {acknowledged} is gone ({known:?})"
        );
    }
    let handle = match op.filter(|op| known.contains(op)) {
        Some(op) => executor
            .resume(&op)
            .await
            .unwrap_or_else(|e| panic!("{point}: resuming failed: {e}")),
        None => executor.submit(cell, start_state()).await.unwrap(),
    };
    let (outcome, events) = handle
        .wait_with_events()
        .await
        .unwrap_or_else(|e| panic!("{point}: no outcome: {e}"));
    let runs = host.runs().iter().map(|run| run.iteration).collect();
    SecondLife {
        events,
        outcome,
        runs,
    }
}

/// The uninterrupted run's outcome.
async fn reference(cell: &str) -> Outcome<MapState> {
    let never: Gone = Arc::new(|| false);
    let life = first_life(Some(MemoryStore::new()), never, cell).await;
    let outcome = life.outcome.expect("the uninterrupted run ends");
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    outcome
}

/// The checks after the second life; returns the runs of the first life
/// that were lost (ran again, or were never recorded).
fn check_resumed(
    cell: &str,
    reference: &Outcome<MapState>,
    first: &FirstLife,
    second: &SecondLife,
    point: &str,
) -> usize {
    assert_eq!(summary(&second.outcome), summary(reference), "{point}");
    if cell == REPEAT {
        let resumed_from = second
            .events
            .iter()
            .find_map(|e| match e {
                Event::Resumed {
                    iterations_done, ..
                } => Some(*iterations_done),
                _ => None,
            })
            .unwrap_or(0);
        assert!(
            resumed_from >= first.checkpointed,
            "{point}: resumed from {resumed_from}, checkpoint {} was durable",
            first.checkpointed
        );
        let expected: Vec<u64> = (resumed_from..REPEAT_ITERATIONS).collect();
        assert_eq!(second.runs, expected, "{point}: the second life's runs");
        let lost = first.runs.iter().filter(|i| **i >= resumed_from).count();
        assert!(
            lost <= CHECKPOINT_PERIOD,
            "{point}: {lost} runs lost, more than the checkpoint period"
        );
        lost
    } else {
        let again: Vec<u64> = second
            .runs
            .iter()
            .filter(|i| first.recorded.contains(i))
            .copied()
            .collect();
        assert!(
            again.is_empty(),
            "{point}: recorded iterations ran again: {again:?}"
        );
        second
            .runs
            .iter()
            .filter(|i| first.runs.contains(i))
            .count()
    }
}

/// Every data directory of `op` in `store` belongs to one of its
/// checkpoints.
async fn check_nothing_unreferenced<S: Store + Clone>(store: &S, op: &str, point: &str) {
    let data = Key::from_names(["ops", op, "data"]).unwrap();
    let data_dirs: BTreeSet<String> = store
        .list(Some(&data))
        .await
        .unwrap()
        .iter()
        .filter_map(|key| key.names().nth(3).map(str::to_owned))
        .collect();
    let checkpoints = pragma_checkpoint::CheckpointLog::new(store.clone())
        .checkpoints(op)
        .await
        .unwrap();
    let used: BTreeSet<String> = checkpoints
        .iter()
        .map(|m| m.data_dir().to_owned())
        .collect();
    let unused: Vec<&String> = data_dirs.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "{point}: data no checkpoint uses: {unused:?}"
    );
}
