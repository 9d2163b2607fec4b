//! The notebook host against real Python workers: the executor's cells on
//! a namespace, the Host conformance suite, interactive input, unsaveable
//! variables, a worker killed mid-iteration, cancel, where output goes.

use std::time::{Duration, Instant};

use pragma_checkpoint::MemoryStore;
use pragma_executor_local::conformance::{self, HostSample};
use pragma_executor_local::{Config, Executor, FinalStatus, Host, IterationContext, Outcome};
use pragma_notebook::{Namespace, PythonHost, WorkerConfig, WorkerPool};
use pragma_selector::Evaluation;

/// The interpreter of the tests: `PRAGMA_TEST_PYTHON` (`.ci/run` makes a
/// venv with cloudpickle in `target/`), or `python3`.
fn python() -> String {
    std::env::var("PRAGMA_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether the tests' interpreter has cloudpickle (functions, lambdas and
/// classes defined in a notebook need it); under CI it must.
fn has_cloudpickle() -> bool {
    let found = std::process::Command::new(python())
        .args(["-c", "import cloudpickle"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "under CI the cloudpickle tests must run: .ci/run sets PRAGMA_TEST_PYTHON to a venv that has it"
        );
        eprintln!(
            "\n*** SKIPPED: cloudpickle is not installed for {} ***\n",
            python()
        );
    }
    found
}

fn host(size: usize) -> PythonHost {
    let mut workers = WorkerConfig::new(python());
    workers
        .python_path
        .push(concat!(env!("CARGO_MANIFEST_DIR"), "/python").into());
    workers.size = size;
    PythonHost::new(WorkerPool::new(workers))
}

fn context() -> IterationContext {
    IterationContext::new("op-test", 0)
}

/// A namespace made by running `code` in a worker.
async fn namespace(host: &PythonHost, code: &str) -> Namespace {
    let mut state = Namespace::new();
    host.run(code, &mut state, &context()).await.unwrap();
    state
}

async fn run(host: PythonHost, cell: &str, state: Namespace) -> Outcome<Namespace> {
    let executor = Executor::new(
        host,
        MemoryStore::new(),
        Config::default().workers(2).retries(2),
    );
    executor
        .submit(cell, state)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap()
}

async fn score(host: &PythonHost, expr: &str, state: &Namespace) -> Option<f64> {
    match host.evaluate(expr, state).await {
        Evaluation::Score(score) => Some(score),
        Evaluation::Invalid(_) => None,
    }
}

#[tokio::test]
async fn the_python_host_conforms() {
    let host = host(2);
    let state = namespace(&host, "import math\nx = 3.0\nnames = ['a', 'b']").await;
    let sample = HostSample::new(state, "x = math.sqrt(x) + 1", "x + len(names)", |name| {
        name.to_owned()
    });
    conformance::host(&host, sample).await.unwrap();
}

#[tokio::test]
async fn functions_lambdas_and_classes_defined_in_the_notebook_travel_by_cloudpickle() {
    if !has_cloudpickle() {
        return;
    }
    let host = host(1);
    let state = namespace(
        &host,
        "square = lambda v: v * v\ndef twice(v):\n    return 2 * v\nclass Box:\n    def __init__(self, v):\n        self.v = v\nb = Box(3)",
    )
    .await;
    let cell = "#pragma repeat --iterations 2 --max-by \"b.v\"\nb = Box(twice(square(b.v)))";
    let best = run(host.clone(), cell, state).await.best.unwrap();
    // 3 -> 18 -> 648.
    assert_eq!(score(&host, "b.v", &best.state).await, Some(648.0));
}

#[tokio::test]
async fn a_repeat_cell_keeps_its_best_checkpoint_and_modules_come_back_by_name() {
    let host = host(1);
    let state = namespace(&host, "import math\nhistory = []").await;
    let cell = "#pragma repeat --iterations 6 --checkpoint-period 2 --max-by \"-abs(history[-1] - 3)\"\n\
                history = history + [iteration]\nroot = math.sqrt(iteration)";
    let outcome = run(host.clone(), cell, state).await;
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    let best = outcome.best.unwrap();
    // Checkpoints after iterations 1, 3 and 5: the one at 3 scores best.
    assert_eq!((best.iteration, best.score), (3, Some(0.0)));
    assert_eq!(score(&host, "len(history)", &best.state).await, Some(4.0));
    assert_eq!(
        score(&host, "math.pi", &best.state).await,
        Some(std::f64::consts::PI)
    );
    assert!(
        best.state.get("iteration").is_none(),
        "the iteration variable is gone"
    );
}

#[tokio::test]
async fn a_parallel_cell_with_an_iteration_variable_gives_the_best_state_without_it() {
    let host = host(2);
    let cell = "#pragma parallel --iterations 8 --iteration-var i --min-by \"abs(y - 10)\"\ny = i * i\nseen_seed = __import__('random').random()";
    let outcome = run(host.clone(), cell, Namespace::new()).await;
    let best = outcome.best.unwrap();
    assert_eq!(best.iteration, 3);
    assert_eq!(score(&host, "y", &best.state).await, Some(9.0));
    assert!(best.state.get("i").is_none());
    // The seed is the executor's: the same iteration draws the same number.
    let again = run(host.clone(), cell, Namespace::new()).await;
    assert_ne!(again.op, outcome.op);
    let drawn = score(&host, "seen_seed", &best.state).await.unwrap();
    assert!((0.0..1.0).contains(&drawn));
}

#[tokio::test]
async fn workers_persist_so_imports_are_paid_once_per_worker() {
    let host = host(1);
    let cell = "#pragma repeat --iterations 5 --max-by \"len(pids)\"\nimport os\npids = pids + [os.getpid()]";
    let state = namespace(&host, "pids = []").await;
    let best = run(host.clone(), cell, state).await.best.unwrap();
    assert_eq!(
        score(&host, "len(set(pids))", &best.state).await,
        Some(1.0),
        "one worker ran every iteration"
    );
}

#[tokio::test]
async fn input_interrupts_the_operation_naming_the_iteration() {
    let cell = "#pragma parallel --iterations 3 --max-by x\nx = 1\nif iteration == 1:\n    name = input('name? ')";
    let outcome = run(host(2), cell, Namespace::new()).await;
    match outcome.status {
        FinalStatus::Interrupted { iteration, message } => {
            assert_eq!(iteration, 1);
            assert!(message.contains("input() was called"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(outcome.best.is_none(), "nothing is applied");
}

#[tokio::test]
async fn a_body_that_leaves_an_unsaveable_variable_names_it_with_its_type() {
    let cell = "#pragma repeat --iterations 1 --max-by x\nx = 1\nf = open('/dev/null')";
    let outcome = run(host(1), cell, Namespace::new()).await;
    let (_, error) = outcome
        .failed_iterations
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("{outcome:?}"));
    assert!(
        error.contains("The following variables cannot be serialized: f (TextIOWrapper)"),
        "{error}"
    );
}

#[tokio::test]
async fn a_worker_killed_mid_iteration_costs_only_that_run() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("killed-once");
    let cell = format!(
        "#pragma parallel --iterations 4 --max-by x\nimport os\nx = iteration\n\
         if iteration == 2 and not os.path.exists({flag:?}):\n    open({flag:?}, 'w').close()\n    os.kill(os.getpid(), 9)"
    );
    let outcome = run(host(2), &cell, Namespace::new()).await;
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    assert!(flag.exists(), "the worker was killed once");
    assert_eq!(outcome.best.unwrap().iteration, 3);
    assert_eq!(outcome.usage.iterations_run, 5, "iteration 2 ran again");
    // A preemption, not a failure of the body: the run is lost work.
    assert_eq!(outcome.usage.work_lost, 1);
    assert!(outcome.failed_iterations.is_empty());
}

#[tokio::test]
async fn cancel_stops_a_long_body_within_a_second() {
    let host = host(1);
    let executor = Executor::new(host, MemoryStore::new(), Config::default().workers(1));
    let handle = executor
        .submit(
            "#pragma repeat --iterations 2 --max-by x\nimport time\ntime.sleep(60)\nx = 1",
            Namespace::new(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let begin = Instant::now();
    handle.cancel();
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status, FinalStatus::Cancelled);
    assert!(
        begin.elapsed() < Duration::from_secs(5),
        "{:?}",
        begin.elapsed()
    );
}

#[tokio::test]
async fn an_expression_that_fails_or_gives_nan_is_an_invalid_candidate() {
    let host = host(1);
    let state = namespace(&host, "x = float('nan')").await;
    assert_eq!(score(&host, "x", &state).await.map(f64::is_nan), Some(true));
    match host.evaluate("undefined_name + 1", &state).await {
        Evaluation::Invalid(reason) => {
            assert!(reason.to_string().contains("NameError"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_repeat_pickles_its_namespace_only_at_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("counted.py"),
        "class Counted:\n    def __init__(self, log):\n        self.n, self.log = 0, log\n\
         \x20   def __getstate__(self):\n        with open(self.log, 'a') as f:\n            f.write('pickled\\n')\n\
         \x20       return self.__dict__\n",
    )
    .unwrap();
    let log = dir.path().join("pickles.log");
    let mut workers = WorkerConfig::new(python());
    workers.python_path = vec![
        concat!(env!("CARGO_MANIFEST_DIR"), "/python").into(),
        dir.path().to_owned(),
    ];
    workers.size = 2;
    let host = PythonHost::new(WorkerPool::new(workers));
    let state = namespace(
        &host,
        &format!("import os, counted\nc = counted.Counted({log:?})\npid = os.getpid()"),
    )
    .await;
    let pickled = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = pickled();
    let cell = "#pragma repeat --iterations 10 --checkpoint-period 5 --max-by \"c.n\"\n\
                import os\nc.n += 1\nsame_worker = os.getpid() == pid";
    let outcome = run(host.clone(), cell, state).await;
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    let best = outcome.best.unwrap();
    assert_eq!(best.iteration, 9);
    assert_eq!(score(&host, "c.n", &best.state).await, Some(10.0));
    // Saved twice, at the checkpoints after iterations 4 and 9; between
    // them the namespace stayed in the worker, unpickled.
    assert_eq!(pickled() - before, 2);
    assert_eq!(
        score(&host, "1 if same_worker else 0", &best.state).await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_runs_output_goes_to_its_logs_and_a_workers_own_to_the_workers_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut workers = WorkerConfig::new(python());
    workers
        .python_path
        .push(concat!(env!("CARGO_MANIFEST_DIR"), "/python").into());
    workers.size = 1;
    workers.logs = Some(dir.path().to_owned());
    let host = PythonHost::new(WorkerPool::new(workers)).with_logs(dir.path());
    // What C code and subprocesses write too, in order with the prints.
    let body = "import os\nprint('printed')\nos.write(1, b'fd\\n')\nos.system('echo shell >&2')\n\
                pid = os.getpid()";
    let state = namespace(&host, body).await;
    let run_log = |extension: &str| {
        std::fs::read_to_string(dir.path().join(format!("op-test/0-1.{extension}"))).unwrap()
    };
    assert_eq!(run_log("out"), "printed\nfd\n");
    assert_eq!(run_log("err"), "shell\n");
    // A selection expression runs outside any run: the worker's own.
    assert_eq!(
        score(&host, "os.write(2, b'scored\\n')", &state).await,
        Some(7.0)
    );
    let pid = score(&host, "pid", &state).await.unwrap();
    let worker_log = dir
        .path()
        .join(format!("workers/{}-{pid}.err", std::process::id()));
    assert_eq!(std::fs::read_to_string(&worker_log).unwrap(), "scored\n");
    // A worker that wrote nothing outside its runs leaves no log.
    let quiet = dir.path().join("quiet");
    let mut workers = WorkerConfig::new(python());
    workers
        .python_path
        .push(concat!(env!("CARGO_MANIFEST_DIR"), "/python").into());
    workers.logs = Some(quiet.clone());
    let host = PythonHost::new(WorkerPool::new(workers));
    namespace(&host, "x = 1").await;
    assert_eq!(std::fs::read_dir(quiet.join("workers")).unwrap().count(), 1);
    drop(host);
    let begin = Instant::now();
    while std::fs::read_dir(quiet.join("workers")).unwrap().count() > 0 {
        assert!(
            begin.elapsed() < Duration::from_secs(5),
            "the empty log stays"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
