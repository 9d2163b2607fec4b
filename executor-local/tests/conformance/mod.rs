//! The conformance suites: the in-tree host and backends pass them, and
//! deliberately broken ones fail them.

use std::io;

use async_trait::async_trait;
use pragma_executor_local::conformance::{self, HostSample};
use pragma_executor_local::testkit::{FaultyBackend, MapState, ScriptedHost};
use pragma_executor_local::{
    ExecutionBackend, Host, IterationContext, Job, JobOutcome, RunError, TokioBackend,
};
use pragma_scheduler::WorkerId;
use pragma_selector::Evaluation;
use tokio::io::{AsyncRead, AsyncWrite};

fn sample() -> HostSample<MapState> {
    HostSample::new(
        MapState::from([("value".to_owned(), 1.0)]),
        "body",
        "value",
        |name| name.to_owned(),
    )
}

#[tokio::test]
async fn the_scripted_host_conforms() {
    conformance::host(&ScriptedHost::new(), sample())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_tokio_and_faulty_backends_conform() {
    conformance::backend(&TokioBackend::new(4)).await.unwrap();
    conformance::backend(&TokioBackend::new(1)).await.unwrap();
    conformance::backend(&FaultyBackend::new(8, 0.3, 11))
        .await
        .unwrap();
}

/// The scripted host with one of its duties broken.
struct Broken {
    host: ScriptedHost,
    /// Its snapshots forget every variable.
    forgetful: bool,
    /// It never removes the iteration variable.
    sticky: bool,
    /// It panics scoring an expression it cannot parse.
    panicky: bool,
}

impl Broken {
    fn forgetful() -> Broken {
        Broken {
            host: ScriptedHost::new(),
            forgetful: true,
            sticky: false,
            panicky: false,
        }
    }

    fn sticky() -> Broken {
        Broken {
            host: ScriptedHost::new(),
            forgetful: false,
            sticky: true,
            panicky: false,
        }
    }

    fn panicky() -> Broken {
        Broken {
            host: ScriptedHost::new(),
            forgetful: false,
            sticky: false,
            panicky: true,
        }
    }
}

#[async_trait]
impl Host for Broken {
    type State = MapState;
    async fn run(
        &self,
        body: &str,
        state: &mut MapState,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        self.host.run(body, state, ctx).await
    }
    async fn evaluate(&self, expr: &str, state: &MapState) -> Evaluation {
        if self.panicky && expr.contains('(') {
            panic!("cannot parse `{expr}`");
        }
        self.host.evaluate(expr, state).await
    }
    async fn snapshot(
        &self,
        state: &MapState,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<()> {
        let empty = MapState::new();
        let saved = if self.forgetful { &empty } else { state };
        self.host.snapshot(saved, out).await
    }
    async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<MapState> {
        self.host.restore(input).await
    }
    fn set_iteration_var(&self, state: &mut MapState, name: &str, iteration: u64) {
        self.host.set_iteration_var(state, name, iteration)
    }
    fn remove_iteration_var(&self, state: &mut MapState, name: &str) {
        if !self.sticky {
            self.host.remove_iteration_var(state, name)
        }
    }
}

#[tokio::test]
async fn a_host_whose_snapshots_lose_state_fails() {
    let error = conformance::host(&Broken::forgetful(), sample())
        .await
        .unwrap_err();
    assert!(
        error.0.contains("a restored snapshot scores None"),
        "{error}"
    );
}

#[tokio::test]
async fn a_host_that_keeps_the_iteration_variable_fails() {
    // Round trips fine; only the iteration variable stays.
    let error = conformance::host(&Broken::sticky(), sample())
        .await
        .unwrap_err();
    assert!(error.0.contains("still there after its removal"), "{error}");
}

#[tokio::test]
async fn a_host_reporting_unsaveable_variables_wrongly_fails() {
    let host = ScriptedHost::new().unsaveable(&["f"]);
    let error = conformance::host(&host, sample()).await.unwrap_err();
    assert!(error.0.contains("saveable sample state reports"), "{error}");
}

#[tokio::test]
async fn a_host_that_panics_fails_without_panicking_the_suite() {
    let error = conformance::host(&Broken::panicky(), sample())
        .await
        .unwrap_err();
    assert!(
        error
            .0
            .contains("it panicked checking malformed expressions: cannot parse `(((`"),
        "{error}"
    );
}

/// Runs 2 jobs at once, but loses a slot for good to each job that panics
/// (it gives the slot back only when the job returns).
struct LeaksSlots(tokio::sync::Semaphore);

#[async_trait]
impl ExecutionBackend for LeaksSlots {
    fn capacity(&self) -> u64 {
        2
    }
    async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
        let Ok(slot) = self.0.acquire().await else {
            return JobOutcome::Lost;
        };
        slot.forget();
        let outcome = job.run_here().await;
        self.0.add_permits(1);
        outcome
    }
}

/// Claims 4 slots, but runs one job at a time.
struct OneAtATime(tokio::sync::Mutex<()>);

#[async_trait]
impl ExecutionBackend for OneAtATime {
    fn capacity(&self) -> u64 {
        4
    }
    async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
        let _turn = self.0.lock().await;
        job.run_here().await
    }
}

/// Runs each job in a detached task: dropping `execute` leaves it running.
struct Detached;

#[async_trait]
impl ExecutionBackend for Detached {
    fn capacity(&self) -> u64 {
        2
    }
    async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
        tokio::spawn(job.run_here())
            .await
            .unwrap_or(JobOutcome::Lost)
    }
}

/// Sends a job that must run here elsewhere.
struct Misrouting;

#[async_trait]
impl ExecutionBackend for Misrouting {
    fn capacity(&self) -> u64 {
        1
    }
    async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
        drop(job.into_spec());
        JobOutcome::Remote(pragma_executor_local::RemoteOutput {
            result: Err(RunError::Failed("nowhere".into())),
            evaluation: None,
            seconds: 0.0,
            lost_runs: 0,
        })
    }
}

#[tokio::test]
async fn broken_backends_fail() {
    let serial = conformance::backend(&OneAtATime(Default::default()))
        .await
        .unwrap_err();
    assert!(serial.0.contains("did not all run at once"), "{serial}");
    let detached = conformance::backend(&Detached).await.unwrap_err();
    assert!(detached.0.contains("still runs"), "{detached}");
    let misrouting = conformance::backend(&Misrouting).await.unwrap_err();
    assert!(misrouting.0.contains("was run elsewhere"), "{misrouting}");
}

#[tokio::test]
async fn a_backend_a_panic_breaks_fails() {
    let leaking = conformance::backend(&LeaksSlots(tokio::sync::Semaphore::new(2)))
        .await
        .unwrap_err();
    assert!(
        leaking
            .0
            .contains("after a job that panicked, 2 jobs given at once"),
        "{leaking}"
    );
}
