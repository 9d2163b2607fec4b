//! Operations on a store whose machine loses power after every possible
//! file-system call (the local store on a file system that forgets unsynced
//! writes). Each time the disk is remounted as a new machine could find it
//! and a new executor resumes: the operation ends with the best of an
//! uninterrupted run, nothing a commit reported durable is lost or runs
//! again, and once it ends its store holds no data that no checkpoint
//! uses and no temporary file.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use pragma_checkpoint::LocalStore;
use pragma_checkpoint::testkit::{ForgetfulFileSystem, Survivors};
use pragma_executor_local::{Host, IterationContext, RunError, async_trait};
use tokio::io::{AsyncRead, AsyncWrite};

use super::*;

const ROOT: &str = "/store";

fn host() -> ScriptedHost {
    ScriptedHost::new()
        .value(4, 40.0)
        .value(7, 70.0)
        .value(9, 70.0)
}

/// The scripted host on the machine of `fs`: once its power is lost, no
/// body starts and none that ran reports back (the machine is gone).
#[derive(Debug, Clone)]
struct MachineHost {
    inner: ScriptedHost,
    fs: ForgetfulFileSystem,
}

impl MachineHost {
    async fn gone_unless_powered(&self) {
        if self.fs.power_lost() {
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
        self.gone_unless_powered().await;
        let result = self.inner.run(body, state, ctx).await;
        self.gone_unless_powered().await;
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

fn start_state() -> MapState {
    MapState::from([("data".to_string(), 1.0)])
}

fn store_on(fs: &ForgetfulFileSystem) -> Option<LocalStore> {
    LocalStore::with_file_system(ROOT, Arc::new(fs.clone())).ok()
}

/// What the first machine's executor reported before its power went.
#[derive(Debug, Default)]
struct FirstLife {
    op: Option<String>,
    /// Repeat: the iterations the newest committed checkpoint covers.
    checkpointed: u64,
    /// Parallel: the iterations commits recorded as finished.
    recorded: BTreeSet<u64>,
    outcome: Option<Outcome<MapState>>,
    /// The iterations its bodies ran before the power went.
    runs: Vec<u64>,
}

/// Runs `cell` until it ends or the machine loses power.
async fn first_life(fs: &ForgetfulFileSystem, cell: &str) -> FirstLife {
    let mut life = FirstLife::default();
    let Some(store) = store_on(fs) else {
        return life;
    };
    let host = host();
    let machine = MachineHost {
        inner: host.clone(),
        fs: fs.clone(),
    };
    let executor = Executor::new(machine, store, config(3));
    let Ok(mut handle) = executor.submit(cell, start_state()).await else {
        return life;
    };
    let ran = |host: &ScriptedHost| host.runs().iter().map(|run| run.iteration).collect();
    life.op = Some(handle.id().to_owned());
    let power_lost = async {
        while !fs.power_lost() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::pin!(power_lost);
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
            () = &mut power_lost => {
                life.runs = ran(&host);
                return life;
            }
        }
    }
    life.outcome = handle.wait().await.ok();
    life.runs = ran(&host);
    life
}

/// What the second machine's executor did: its events, outcome and runs.
struct SecondLife {
    events: Vec<Event>,
    outcome: Outcome<MapState>,
    runs: Vec<u64>,
    fs: ForgetfulFileSystem,
    store: LocalStore,
}

/// Remounts, resumes (or starts again, if nothing of it was durable) and
/// runs to the end.
async fn second_life(
    fs: ForgetfulFileSystem,
    cell: &str,
    op: Option<&str>,
    point: &str,
) -> SecondLife {
    let store = store_on(&fs).unwrap_or_else(|| panic!("{point}: the store does not open"));
    let host = host();
    let executor = Executor::new(host.clone(), store.clone(), config(3));
    // A submit the power cut short returned no id: what the store holds
    // unfinished is what a restarted host finds and resumes.
    let unfinished = executor.unfinished().await.unwrap();
    let op = op
        .map(str::to_owned)
        .or_else(|| unfinished.first().cloned());
    let resumable = executor.operations().await.unwrap();
    let handle = match op.filter(|op| resumable.contains(op)) {
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
        fs,
        store,
    }
}

fn summary(outcome: &Outcome<MapState>) -> (FinalStatus, Option<(u64, Option<f64>, MapState)>) {
    (
        outcome.status.clone(),
        outcome
            .best
            .as_ref()
            .map(|b| (b.iteration, b.score, b.state.clone())),
    )
}

/// After the end (and the clean-up a store's owner runs at start-up):
/// every data directory belongs to a checkpoint, and no temporary file is
/// left.
async fn check_nothing_unreferenced(life: &SecondLife, point: &str) {
    life.store.remove_temporary_files().unwrap();
    let op = &life.outcome.op;
    let files = life.fs.files_under(Path::new(ROOT)).unwrap();
    let data = Path::new(ROOT).join("ops").join(op).join("data");
    let data_dirs: BTreeSet<String> = files
        .iter()
        .filter_map(|(path, _)| {
            let dir = path.strip_prefix(&data).ok()?.iter().next()?;
            Some(dir.to_string_lossy().into_owned())
        })
        .collect();
    let checkpoints = pragma_checkpoint::CheckpointLog::new(life.store.clone())
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
        "{point}: data no checkpoint uses: {unused:?}; files: {files:#?}; events: {:#?}",
        life.events
    );
}

/// Loses power after every changing call of `cell`'s uninterrupted run,
/// remounting each crash point's disk several ways.
async fn every_crash_point(cell: &str, repeat: bool, bound: usize) {
    let whole = ForgetfulFileSystem::new();
    let reference = first_life(&whole, cell).await;
    let reference = reference.outcome.expect("the uninterrupted run ends");
    assert_eq!(reference.status, FinalStatus::Succeeded);
    let calls = whole.calls();
    let (mut states, mut most_lost) = (0, 0);
    for k in 0..=calls {
        let fs = ForgetfulFileSystem::new();
        fs.lose_power_after(k);
        let first = first_life(&fs, cell).await;
        fs.lose_power_now();
        let survivors = [
            Survivors::Nothing,
            Survivors::Everything,
            Survivors::Random(k),
        ];
        for survivors in survivors {
            let point = format!("power lost after call {k} of {calls}, {survivors:?} kept");
            let second = second_life(
                fs.after_power_loss(survivors),
                cell,
                first.op.as_deref(),
                &point,
            )
            .await;
            assert_eq!(summary(&second.outcome), summary(&reference), "{point}");
            // Nothing a commit reported durable is lost, and what runs
            // again is within the bound.
            let lost = if repeat {
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
                let expected: Vec<u64> = (resumed_from..12).collect();
                assert_eq!(second.runs, expected, "{point}: the second machine's runs");
                first.runs.iter().filter(|i| **i >= resumed_from).count()
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
            };
            assert!(
                lost <= bound,
                "{point}: {lost} runs lost, more than {bound}"
            );
            most_lost = most_lost.max(lost);
            check_nothing_unreferenced(&second, &point).await;
            states += 1;
        }
    }
    eprintln!(
        "{cell:?}: {} crash points, {states} disks remounted, at most {most_lost} runs of the first machine lost",
        calls + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_survives_power_loss_at_every_call() {
    every_crash_point(
        "#pragma repeat --iterations 12 --checkpoint-period 3 --max-by value\nbody",
        true,
        3,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_operation_survives_power_loss_at_every_call() {
    every_crash_point(
        "#pragma parallel --iterations 20 --parallel-runs 3 --max-by value\nbody",
        false,
        20,
    )
    .await;
}
