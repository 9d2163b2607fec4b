//! The lifecycle against a real executor and store: run or resume, one
//! runner per operation, apply with conflicts, the records.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pragma_checkpoint::LocalStore;
use pragma_executor_local::{
    Config, Event, Executor, FinalStatus, Host, IterationContext, RunError,
};
use pragma_selector::Evaluation;
use pragma_session::{
    Applied, Change, Digests, Ending, LiveState, Records, Resolution, Rule, RunRecord, RunState,
    Runner, Session, SessionError, Settle, StartRequest,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

type Vars = BTreeMap<String, i64>;

/// Bodies are `NAME` (add the iteration to NAME) or `NAME slow` (the same,
/// after 30 ms); the score is a variable's value.
struct AddHost;

#[async_trait]
impl Host for AddHost {
    type State = Vars;
    async fn run(
        &self,
        body: &str,
        state: &mut Vars,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        let mut words = body.split_whitespace();
        let name = words.next().unwrap_or("x").to_owned();
        if words.next() == Some("slow") {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        *state.entry(name).or_default() += ctx.iteration as i64;
        Ok(())
    }
    async fn evaluate(&self, expr: &str, state: &Vars) -> Evaluation {
        match state.get(expr) {
            Some(value) => Evaluation::Score(*value as f64),
            None => Evaluation::failed(format!("no variable `{expr}`")),
        }
    }
    async fn snapshot(
        &self,
        state: &Vars,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<()> {
        out.write_all(&serde_json::to_vec(state)?).await
    }
    async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<Vars> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }
    fn set_iteration_var(&self, _: &mut Vars, _: &str, _: u64) {}
    fn remove_iteration_var(&self, _: &mut Vars, _: &str) {}
}

#[derive(Clone)]
struct Live {
    name: String,
    vars: Arc<Mutex<Vars>>,
}

impl Live {
    fn new(vars: &[(&str, i64)]) -> Live {
        Live {
            name: "live".into(),
            vars: Arc::new(Mutex::new(
                vars.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            )),
        }
    }
    fn get(&self, name: &str) -> Option<i64> {
        self.vars.lock().unwrap().get(name).copied()
    }
    fn set(&self, name: &str, value: i64) {
        self.vars.lock().unwrap().insert(name.into(), value);
    }
}

#[async_trait]
impl LiveState for Live {
    type State = Vars;
    type Digest = i64;
    fn identity(&self) -> String {
        self.name.clone()
    }
    async fn capture(&self) -> io::Result<(Vars, Digests<i64>)> {
        let vars = self.vars.lock().unwrap().clone();
        Ok((vars.clone(), vars))
    }
    async fn digests(&self) -> io::Result<Digests<i64>> {
        Ok(self.vars.lock().unwrap().clone())
    }
    async fn digests_of(&self, state: &Vars) -> io::Result<Digests<i64>> {
        Ok(state.clone())
    }
    async fn apply(&self, result: &Vars, changes: &[Change]) -> io::Result<()> {
        let mut live = self.vars.lock().unwrap();
        for change in changes {
            match change {
                Change::Set(name) => live.insert(name.clone(), result[name]),
                Change::Remove(name) => live.remove(name),
            };
        }
        Ok(())
    }
}

/// A session on a directory store: what survives a new session is on disk.
fn session(dir: &std::path::Path) -> Session<AddHost, LocalStore> {
    let store = LocalStore::new(dir.join("store")).unwrap();
    let executor = Executor::new(AddHost, store, Config::default());
    Session::new(executor, Records::new(dir.join("records")))
}

/// Cancels a started operation and finishes it: its last checkpoint stays.
async fn cancel_and_finish(
    session: &Session<AddHost, LocalStore>,
    running: pragma_session::Running<Vars, i64>,
    live: &Live,
) -> pragma_session::Summary {
    running.handle.cancel();
    let outcome = running.handle.wait().await.unwrap();
    session
        .finish(running.ticket, outcome, live, &Settle::ask())
        .await
}

const SLOW_REPEAT: &str = "#pragma repeat --iterations 40 --checkpoint-period 2 --max-by x\nx slow";

#[tokio::test]
async fn a_run_applies_its_best_state_and_records_how_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let session = session(dir.path());
    let live = Live::new(&[("x", 10)]);
    let running = session
        .start(
            &StartRequest::new(
                "#pragma parallel --iterations 5 --max-by x\nx"
                    .parse()
                    .unwrap(),
                "c",
            ),
            &live,
        )
        .await
        .unwrap();
    assert!(!running.resumed);
    let op = running.ticket.op().to_owned();
    let outcome = running.handle.wait().await.unwrap();
    let summary = session
        .finish(running.ticket, outcome, &live, &Settle::ask())
        .await;
    assert_eq!(summary.ending(), Ending::Applied);
    assert_eq!(summary.best.unwrap().iteration, 4);
    assert_eq!(live.get("x"), Some(14));
    assert_eq!(session.records().outcome(&op).as_ref(), Some(&summary));
    let record: RunRecord<i64> = session.records().run(&op).unwrap();
    assert_eq!(record.runner, None, "the runner is released at the end");
    let store_summary = session.executor().summary(&op).await.unwrap();
    assert_eq!(session.run_state(&store_summary), RunState::Ended);
}

/// Starts `SLOW_REPEAT` on `live`, and drops its executor once 4
/// iterations are checkpointed, as a crash would stop it; the operation.
async fn crash_after_a_checkpoint(dir: &std::path::Path, live: &Live) -> String {
    let session = session(dir);
    let mut running = session
        .start(&StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c"), live)
        .await
        .unwrap();
    while let Some(event) = running.handle.next_event().await {
        if matches!(event, Event::CheckpointCommitted { iterations_done, .. } if iterations_done >= 4)
        {
            break;
        }
    }
    running.ticket.op().to_owned()
}

/// Makes the runner on record of `op` a later process with the same pid:
/// one that is gone.
fn runner_gone(session: &Session<AddHost, LocalStore>, op: &str) {
    let mut record: RunRecord<i64> = session.records().run(op).unwrap();
    record.runner = record.runner.map(|r| Runner {
        started: r.started + 1,
        ..r
    });
    session.records().write_run(&record).unwrap();
}

#[tokio::test]
async fn the_same_cell_on_the_same_state_resumes_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let live = Live::new(&[("x", 0)]);
    let op = crash_after_a_checkpoint(dir.path(), &live).await;
    let session = session(dir.path());
    // The crashed runner was this process: while it "lives", a start is
    // refused; a runner that is gone (a later process with its pid) is not.
    let refused = session
        .start(&StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c"), &live)
        .await;
    assert!(
        matches!(&refused, Err(SessionError::AlreadyRunning { op: o, reachable: true, .. }) if *o == op),
        "{:?}",
        refused.err()
    );
    // Its message names the way out for an embedder whose runner crashed
    // in a process that lives on.
    let message = refused.err().unwrap().to_string();
    assert!(message.contains("Session::forget_runner"), "{message}");
    runner_gone(&session, &op);
    let store_summary = session.executor().summary(&op).await.unwrap();
    assert_eq!(session.run_state(&store_summary), RunState::Stopped);

    let running = session
        .start(&StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c"), &live)
        .await
        .unwrap();
    assert!(running.resumed);
    assert_eq!(running.ticket.op(), op);
    let outcome = running.handle.wait().await.unwrap();
    let summary = session
        .finish(running.ticket, outcome, &live, &Settle::ask())
        .await;
    assert_eq!(summary.status, FinalStatus::Succeeded);
    assert_eq!(live.get("x"), Some((0..40).sum()));

    // Ended: the same cell starts a new operation.
    let again = session
        .start(&StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c"), &live)
        .await
        .unwrap();
    assert!(!again.resumed);
    assert_ne!(again.ticket.op(), op);
    again.handle.cancel();
}

#[tokio::test]
async fn an_operation_whose_runner_is_gone_is_listed_and_resumes_by_its_id_alone() {
    let dir = tempfile::tempdir().unwrap();
    let live = Live::new(&[("x", 0)]);
    let op = crash_after_a_checkpoint(dir.path(), &live).await;
    let session = session(dir.path());
    // While its runner (this process) lives, it is neither listed nor taken.
    assert_eq!(
        session.unfinished(&live.identity()).await.unwrap(),
        Vec::<String>::new()
    );
    let refused = session.resume::<i64>(&op, None).await;
    assert!(
        matches!(&refused, Err(SessionError::AlreadyRunning { .. })),
        "{:?}",
        refused.err()
    );
    // A later process with the same pid: the runner is gone.
    runner_gone(&session, &op);
    assert_eq!(
        session.unfinished("another state").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        session.unfinished(&live.identity()).await.unwrap(),
        vec![op.clone()]
    );

    let running = session.resume::<i64>(&op, None).await.unwrap();
    assert!(running.resumed);
    assert_eq!(running.ticket.op(), op);
    // Taken: a start of its cell now finds it running here.
    let refused = session
        .start(&StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c"), &live)
        .await;
    assert!(matches!(&refused, Err(SessionError::AlreadyRunning { op: o, .. }) if *o == op));
    let outcome = running.handle.wait().await.unwrap();
    let summary = session
        .finish(running.ticket, outcome, &live, &Settle::ask())
        .await;
    assert_eq!(summary.status, FinalStatus::Succeeded);
    assert_eq!(live.get("x"), Some((0..40).sum()));
    assert_eq!(
        session.unfinished(&live.identity()).await.unwrap(),
        Vec::<String>::new()
    );
    let ended = session.resume::<i64>(&op, None).await;
    assert!(
        matches!(&ended, Err(SessionError::Ended { .. })),
        "{:?}",
        ended.err()
    );
    // Ended and unindexed: the same cell starts a new operation.
    let again = session
        .start(&StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c"), &live)
        .await
        .unwrap();
    assert!(!again.resumed);
    again.handle.cancel();
}

#[tokio::test]
async fn two_starts_at_the_same_instant_run_one_operation() {
    let dir = tempfile::tempdir().unwrap();
    let live = Live::new(&[("x", 0)]);
    let (first, second) = (session(dir.path()), session(dir.path()));
    let request = StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c");
    let (a, b) = tokio::join!(first.start(&request, &live), second.start(&request, &live));
    let (running, refused) = match (a, b) {
        (Ok(running), Err(refused)) | (Err(refused), Ok(running)) => (running, refused),
        (a, b) => panic!(
            "one start must be refused: {:?} / {:?}",
            a.is_ok(),
            b.is_ok()
        ),
    };
    assert!(
        matches!(&refused, SessionError::AlreadyRunning { op, .. } if op == running.ticket.op()),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("is already running (process "),
        "{refused}"
    );
    running.handle.cancel();
}

#[tokio::test]
async fn a_cancelled_operation_resumes_and_fresh_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let session = session(dir.path());
    let live = Live::new(&[("x", 0)]);
    let request = StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c");
    let running = session.start(&request, &live).await.unwrap();
    let op = running.ticket.op().to_owned();
    let summary = cancel_and_finish(&session, running, &live).await;
    assert_eq!(summary.ending(), Ending::Cancelled);
    assert_eq!(live.get("x"), Some(0), "nothing is applied");
    let store_summary = session.executor().summary(&op).await.unwrap();
    assert_eq!(session.run_state(&store_summary), RunState::Resumable);

    let resumed = session.start(&request, &live).await.unwrap();
    assert!(resumed.resumed && resumed.ticket.op() == op);
    assert_eq!(
        session.records().outcome(&op),
        None,
        "a resumed run has not ended"
    );
    cancel_and_finish(&session, resumed, &live).await;

    let fresh = session
        .start(&request.clone().fresh(true), &live)
        .await
        .unwrap();
    assert!(!fresh.resumed && fresh.ticket.op() != op);
    fresh.handle.cancel();
}

/// Runs a parallel cell on `live` that adds to `notes` (its best: 1 + 2)
/// while the host sets `notes` to 5 and `x` to 7.
async fn conflicting_run(
    session: &Session<AddHost, LocalStore>,
    live: &Live,
    settle: &Settle,
) -> pragma_session::Summary {
    let running = session
        .start(
            &StartRequest::new(
                "#pragma parallel --iterations 3 --max-by notes\nnotes"
                    .parse()
                    .unwrap(),
                "c",
            ),
            live,
        )
        .await
        .unwrap();
    live.set("notes", 5);
    live.set("x", 7);
    let outcome = running.handle.wait().await.unwrap();
    session.finish(running.ticket, outcome, live, settle).await
}

#[tokio::test]
async fn a_conflict_is_left_kept_and_settled_later_each_way() {
    let dir = tempfile::tempdir().unwrap();
    let session = session(dir.path());
    for (resolution, expected) in [
        (Resolution::TakeBackground, 1 + 2),
        (Resolution::KeepLive, 5),
    ] {
        let live = Live::new(&[("notes", 1), ("x", 0)]);
        let summary = conflicting_run(&session, &live, &Settle::ask()).await;
        assert_eq!(summary.ending(), Ending::ConflictsLeft);
        assert_eq!(summary.conflicts, ["notes"]);
        assert_eq!(live.get("notes"), Some(5), "a conflict is left alone");
        assert_eq!(live.get("x"), Some(7), "the live change stays");
        assert!(session.records().has_kept_result(&summary.op));
        let store_summary = session.executor().summary(&summary.op).await.unwrap();
        assert_eq!(
            session.run_state(&store_summary),
            RunState::ResultNotApplied
        );

        // Settling nothing leaves it as it is.
        let applied = session
            .apply_kept(&summary.op, &live, &Settle::ask())
            .await
            .unwrap();
        assert!(matches!(&applied, Applied::Now(s) if s.conflicts == ["notes"]));
        let settle = Settle::ask().choose("notes", resolution);
        let applied = session
            .apply_kept(&summary.op, &live, &settle)
            .await
            .unwrap();
        assert!(
            matches!(&applied, Applied::Now(s) if s.conflicts.is_empty()),
            "{applied:?}"
        );
        assert_eq!(live.get("notes"), Some(expected));
        assert!(!session.records().has_kept_result(&summary.op));
        assert_eq!(
            session.records().outcome(&summary.op).unwrap().ending(),
            Ending::Applied
        );
        let again = session
            .apply_kept(&summary.op, &live, &settle)
            .await
            .unwrap();
        assert_eq!(again, Applied::Already);
    }
}

#[tokio::test]
async fn a_rule_declared_up_front_settles_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let session = session(dir.path());
    for (rule, expected) in [(Rule::TakeBackground, 3), (Rule::KeepLive, 5)] {
        let live = Live::new(&[("notes", 1), ("x", 0)]);
        let summary = conflicting_run(&session, &live, &Settle::by_rule(rule)).await;
        assert_eq!(summary.ending(), Ending::Applied, "{summary:?}");
        assert_eq!(live.get("notes"), Some(expected));
        assert!(!session.records().has_kept_result(&summary.op));
    }
}

#[tokio::test]
async fn applying_what_has_no_result_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let session = session(dir.path());
    let live = Live::new(&[("x", 0)]);
    let unknown = session.apply_kept("op-nope", &live, &Settle::ask()).await;
    assert!(matches!(unknown, Err(SessionError::Unknown { .. })));

    let running = session
        .start(&StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c"), &live)
        .await
        .unwrap();
    let op = running.ticket.op().to_owned();
    let still = session
        .apply_kept(&op, &live, &Settle::ask())
        .await
        .unwrap_err();
    assert_eq!(
        still.to_string(),
        format!("operation {op} is still running")
    );
    cancel_and_finish(&session, running, &live).await;
    let none = session
        .apply_kept(&op, &live, &Settle::ask())
        .await
        .unwrap_err();
    assert_eq!(
        none.to_string(),
        format!("operation {op} ended cancelled: there is no result to apply")
    );
}

#[tokio::test]
async fn a_forgotten_runner_lets_the_operation_resume() {
    let dir = tempfile::tempdir().unwrap();
    let live = Live::new(&[("x", 0)]);
    let op = {
        let session = session(dir.path());
        let running = session
            .start(&StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c"), &live)
            .await
            .unwrap();
        running.ticket.op().to_owned()
    };
    let session = session(dir.path());
    assert!(session.runner(&op).is_some());
    let forgotten = session.forget_runner(&op).unwrap();
    assert_eq!(forgotten.map(|r| r.pid), Some(std::process::id()));
    assert!(session.runner(&op).is_none());
    let running = session
        .start(&StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c"), &live)
        .await
        .unwrap();
    assert!(running.resumed);
    running.handle.cancel();
}

#[tokio::test]
async fn an_unreadable_live_state_is_named() {
    struct Broken;
    #[async_trait]
    impl LiveState for Broken {
        type State = Vars;
        type Digest = i64;
        fn identity(&self) -> String {
            "/data/state".into()
        }
        async fn capture(&self) -> io::Result<(Vars, Digests<i64>)> {
            Err(io::Error::other("model.bin: permission denied"))
        }
        async fn digests(&self) -> io::Result<Digests<i64>> {
            unreachable!()
        }
        async fn digests_of(&self, _: &Vars) -> io::Result<Digests<i64>> {
            unreachable!()
        }
        async fn apply(&self, _: &Vars, _: &[Change]) -> io::Result<()> {
            unreachable!()
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let session = session(dir.path());
    let error = session
        .start(
            &StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c"),
            &Broken,
        )
        .await
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        "cannot read the state `/data/state`: model.bin: permission denied"
    );
    // A bad directive never gets this far: a request holds a parsed cell.
    assert!(
        "#pragma repaet\nx"
            .parse::<pragma_parse::ParsedCell>()
            .is_err()
    );
}

#[tokio::test]
async fn damaged_records_are_named_and_a_new_operation_starts() {
    let dir = tempfile::tempdir().unwrap();
    let live = Live::new(&[("x", 0)]);
    let request = StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c");
    let session = session(dir.path());
    let first = session.start(&request, &live).await.unwrap();
    let op = first.ticket.op().to_owned();
    cancel_and_finish(&session, first, &live).await;

    // The operation's record is garbage: it cannot be resumed, and the
    // warning says which file.
    let record = dir.path().join("records/ops").join(&op).join("run.json");
    std::fs::write(&record, "{not json").unwrap();
    assert!(matches!(
        session.records().try_run::<i64>(&op),
        Err(pragma_session::Damaged { ref path, .. }) if *path == record
    ));
    let second = session.start(&request, &live).await.unwrap();
    assert!(!second.resumed && second.ticket.op() != op);
    assert_eq!(second.warnings.len(), 1, "{:?}", second.warnings);
    assert!(
        second.warnings[0].contains(&format!("{}` is damaged", record.display())),
        "{:?}",
        second.warnings
    );
    let op2 = second.ticket.op().to_owned();
    cancel_and_finish(&session, second, &live).await;

    // The run index is garbage.
    let index = std::fs::read_dir(dir.path().join("records/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    std::fs::write(&index, [0xff, 0xfe]).unwrap();
    let third = session.start(&request, &live).await.unwrap();
    assert!(!third.resumed && third.ticket.op() != op2);
    assert!(
        third.warnings[0].contains("is damaged")
            && third.warnings[0].contains("a new operation starts"),
        "{:?}",
        third.warnings
    );
    third.handle.cancel();
}

#[tokio::test]
async fn a_cancelled_operations_best_so_far_is_kept_and_applied_only_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let session = session(dir.path());
    let live = Live::new(&[("x", 0)]);
    let request = StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c");
    let mut running = session.start(&request, &live).await.unwrap();
    let op = running.ticket.op().to_owned();
    while let Some(event) = running.handle.next_event().await {
        if matches!(event, Event::CheckpointCommitted { .. }) {
            break;
        }
    }
    running.handle.cancel();
    let outcome = running.handle.wait().await.unwrap();
    let summary = session
        .finish(
            running.ticket,
            outcome,
            &live,
            &Settle::ask().keeping_cancelled_best(),
        )
        .await;
    assert_eq!(summary.ending(), Ending::Cancelled);
    let best = summary.best.expect("the best so far is reported");
    assert_eq!(live.get("x"), Some(0), "nothing is applied by itself");

    let applied = session
        .apply_kept(&op, &live, &Settle::ask())
        .await
        .unwrap();
    assert!(matches!(applied, Applied::Now(_)), "{applied:?}");
    // x after iterations 0..=i is 0 + 1 + ... + i.
    let i = best.iteration as i64;
    assert_eq!(live.get("x"), Some(i * (i + 1) / 2));
    // Taken: there is nothing more to apply.
    live.set("x", -1);
    let again = session.apply_kept(&op, &live, &Settle::ask()).await;
    assert!(again.is_err() || matches!(again, Ok(Applied::Already)));
    assert_eq!(live.get("x"), Some(-1));
}

/// Shows nothing; counts what it was told, and cancels the operation at
/// its first checkpoint, as a host's cancel from another task does.
struct Counting {
    events: Vec<Event>,
    ticks: u64,
    cancel: Option<pragma_executor_local::Observer<Vars>>,
}

impl pragma_session::FollowObserver for Counting {
    fn event(&mut self, event: &Event, status: &pragma_executor_local::Status) {
        assert_eq!(status.schedule.progress().total, 40);
        if matches!(event, Event::CheckpointCommitted { .. })
            && let Some(observer) = self.cancel.take()
        {
            observer.cancel();
        }
        self.events.push(event.clone());
    }

    fn tick(&mut self, _status: &pragma_executor_local::Status) {
        self.ticks += 1;
    }
}

#[tokio::test]
async fn following_keeps_the_events_in_the_store_and_a_cancel_from_elsewhere_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let session = session(dir.path());
    let live = Live::new(&[("x", 0)]);
    let running = session
        .start(&StartRequest::new(SLOW_REPEAT.parse().unwrap(), "c"), &live)
        .await
        .unwrap();
    let op = running.ticket.op().to_owned();
    let mut shown = Counting {
        events: Vec::new(),
        ticks: 0,
        cancel: Some(running.handle.observer()),
    };
    let outcome = session.follow(running.handle, &mut shown).await.unwrap();
    assert_eq!(outcome.status, FinalStatus::Cancelled);
    assert!(shown.ticks >= 1, "the first tick comes at once");
    assert!(matches!(shown.events.last(), Some(Event::Finished { .. })));

    // The events file holds every event the observer saw, in order, as
    // JSON lines: what `pragma wait` reads.
    let text = std::fs::read_to_string(session.records().events_path(&op)).unwrap();
    let stored: Vec<Event> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(stored, shown.events);
}
