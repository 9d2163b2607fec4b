//! `submit`, `wait`, `cancel`, `apply`, signals, and bodies of a killed run.

use std::time::{Duration, Instant};

use super::*;

/// Whether process `pid` still runs (a zombie does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, s)| !s.starts_with('Z'))
    })
}

const SLOW_PARALLEL: &str = "#pragma parallel --iterations 4 --parallel-runs 2 --max-by 'cat n'\n\
     touch \"$OUT/started-$iteration\"; sleep 0.4; echo $iteration > n\n";

#[test]
fn submit_returns_at_once_and_wait_applies_the_result() {
    let setup = Fixture::new();
    let cell = setup.write_cell(SLOW_PARALLEL);
    let started = Instant::now();
    let op = setup.submit(&cell);
    // Four iterations of 0.4 s on two workers take 0.8 s at least.
    assert!(started.elapsed() < Duration::from_millis(800));
    let status = setup.status(&op);
    assert!(
        status["run"].as_str().unwrap().starts_with("running"),
        "{status}"
    );

    let out = setup
        .pragma(&["wait", &op, "--json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["op"], op.as_str());
    assert_eq!(last["status"], "succeeded");
    assert_eq!(last["best"]["iteration"], 3);
    assert_eq!(
        std::fs::read_to_string(setup.join("state/n")).unwrap(),
        "3\n"
    );
    // Waiting again gives the same answer at once.
    setup
        .pragma(&["wait", &op])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("succeeded: best iteration 3"));
    assert_eq!(setup.status(&op)["status"]["status"], "succeeded");
}

#[test]
fn cancel_stops_a_submitted_run_and_run_resumes_it() {
    let setup = Fixture::new();
    let cell = setup.write_cell(
        "#pragma parallel --iterations 6 --parallel-runs 2 --max-by 'cat n'\n\
         touch \"$OUT/started-$iteration\"; sleep 0.5; echo $iteration > n\n",
    );
    let op = setup.submit(&cell);
    // Iterations 0 and 1 start together; 3 starts once both ended
    // (2 once either did, while the other may still run, as on a
    // loaded CI machine).
    wait_for_file(&setup.join("started-3"));
    setup
        .pragma(&["cancel", &op])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("cancelled"))
        .stdout(predicate::str::contains("resumes it"));
    let status = setup.status(&op);
    assert_eq!(status["status"]["status"], "cancelled", "{status}");
    assert_eq!(status["run"], "resumable");
    setup
        .pragma(&["wait", &op])
        .assert()
        .code(130)
        .stdout(predicate::str::contains("cancelled"));
    assert!(!setup.join("state/n").exists(), "nothing is applied");

    let out = setup
        .pragma(&["run"])
        .arg(&cell)
        .arg("--state")
        .arg(&setup.state)
        .arg("--json")
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let resumed = lines.iter().find(|l| l["event"] == "resumed").unwrap();
    assert!(
        resumed["iterations_done"].as_u64().unwrap() >= 2,
        "{resumed}"
    );
    let last = lines.last().unwrap();
    assert_eq!(
        (&last["op"], &last["status"]),
        (&serde_json::json!(op), &serde_json::json!("succeeded"))
    );
    assert_eq!(last["best"]["iteration"], 5);
}

#[test]
fn ctrl_c_cancels_with_exit_130_and_the_next_run_resumes() {
    let setup = Fixture::new();
    let cell = setup.write_cell(
        "#pragma repeat --iterations 5 --checkpoint-period 1 --max-by 'cat n'\n\
         touch \"$OUT/started-$iteration\"; sleep 0.3; echo $(( $(cat n 2>/dev/null || echo 0) + 1 )) > n\n",
    );
    let state = setup.state.clone();
    let child = setup.spawn(&[
        "run",
        cell.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    wait_for_file(&setup.join("started-2"));
    send(&child, "INT");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("cancelled: nothing applied"), "{stdout}");
    assert!(!state.join("n").exists(), "nothing is applied");

    setup
        .pragma(&["run"])
        .arg(&cell)
        .arg("--state")
        .arg(&state)
        .assert()
        .code(0)
        .stderr(predicate::str::contains("resuming operation"))
        .stdout(predicate::str::contains("succeeded: best iteration 4"));
    assert_eq!(std::fs::read_to_string(state.join("n")).unwrap(), "5\n");
}

#[test]
fn sigterm_is_a_preemption_notice_and_the_resume_runs_nothing_twice() {
    let setup = Fixture::new();
    // Checkpoints every 5 iterations: a cancel two past a checkpoint would
    // run those two again; a notice checkpoints them.
    let cell = setup.write_cell(
        "#pragma repeat --iterations 12 --checkpoint-period 5 --max-by 'cat n'\n\
         echo $iteration >> \"$OUT/ran\"; touch \"$OUT/started-$iteration\"; sleep 0.3; \
         echo $(( $(cat n 2>/dev/null || echo 0) + 1 )) > n\n",
    );
    let state = setup.state.clone();
    let child = setup.spawn(&[
        "run",
        cell.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--grace",
        "30",
    ]);
    wait_for_file(&setup.join("started-6"));
    send(&child, "TERM");
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(75), "{stdout}{stderr}");
    assert!(
        stdout.contains("suspended by a preemption notice"),
        "{stdout}"
    );
    assert!(
        stderr.contains("suspending (a preemption notice, SIGTERM)"),
        "{stderr}"
    );
    assert!(!state.join("n").exists(), "nothing is applied");

    setup
        .pragma(&["run"])
        .arg(&cell)
        .arg("--state")
        .arg(&state)
        .assert()
        .code(0)
        .stderr(predicate::str::contains("resuming operation"))
        .stdout(predicate::str::contains("succeeded: best iteration 11"));
    assert_eq!(std::fs::read_to_string(state.join("n")).unwrap(), "12\n");
    // Iteration 6, running at the notice, finished and was checkpointed
    // with 5: every iteration ran once.
    let ran = std::fs::read_to_string(setup.join("ran")).unwrap();
    let mut ran: Vec<u64> = ran.lines().map(|l| l.parse().unwrap()).collect();
    ran.sort_unstable();
    assert_eq!(ran, (0..12).collect::<Vec<_>>());
}

#[test]
fn extend_runs_more_iterations_from_the_last_state_and_applies_the_best_of_all() {
    let setup = Fixture::new();
    let cell = setup.write_cell(
        "#pragma repeat --iterations 4 --checkpoint-period 2 --max-by 'cat n'\n\
         echo $iteration >> \"$OUT/ran\"; echo $(( $(cat n 2>/dev/null || echo 0) + 1 )) > n\n",
    );
    let state = setup.state.clone();
    let run = |extra: &[&str]| {
        let mut command = setup.pragma(&["run"]);
        command.arg(&cell).arg("--state").arg(&state).args(extra);
        command
    };
    // Nothing ran yet: nothing to extend.
    run(&["--extend", "3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("run it first, without --extend"));
    run(&[]).assert().code(0);
    assert_eq!(std::fs::read_to_string(state.join("n")).unwrap(), "4\n");
    run(&["--extend", "3"])
        .assert()
        .code(0)
        .stderr(predicate::str::contains("extending operation"))
        .stdout(predicate::str::contains(
            "succeeded: best iteration 6, score 7",
        ));
    // From the last state (n = 4) on: iterations 4 to 6, each once; the
    // first result applied is no conflict.
    assert_eq!(std::fs::read_to_string(state.join("n")).unwrap(), "7\n");
    let ran = std::fs::read_to_string(setup.join("ran")).unwrap();
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        ["0", "1", "2", "3", "4", "5", "6"]
    );
    let op = only_op_in(&setup.store);
    let status = setup
        .pragma(&["status", &op, "--json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(
        (status["done"].as_u64(), status["iterations"].as_u64()),
        (Some(7), Some(7))
    );
    assert_eq!(status["usage"]["iterations_run"], 7);
}

#[test]
fn a_cancelled_run_is_resumed_not_extended() {
    let setup = Fixture::new();
    let cell = setup.write_cell(
        "#pragma repeat --iterations 50 --max-by 'cat n'\n\
         touch \"$OUT/started-$iteration\"; sleep 0.2; echo 1 > n\n",
    );
    let state = setup.state.clone();
    let child = setup.spawn(&[
        "run",
        cell.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    wait_for_file(&setup.join("started-1"));
    send(&child, "INT");
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(130));
    setup
        .pragma(&["run"])
        .arg(&cell)
        .arg("--state")
        .arg(&state)
        .args(["--extend", "5"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot be extended: it did not finish (cancelled, stopped or suspended): resume it",
        ));
}

#[test]
fn bodies_die_with_a_run_killed_by_sigkill() {
    let setup = Fixture::new();
    let cell = setup.write_cell(
        "#pragma parallel --iterations 2 --parallel-runs 2 --max-by 'cat n'\n\
         setsid sh -c 'echo $$ > \"$OUT/escaped-$iteration\"; sleep 30' &\n\
         echo $$ > \"$OUT/pid-$iteration\"; sleep 30 & wait\n",
    );
    let state = setup.state.clone();
    let mut child = setup.spawn(&[
        "run",
        cell.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    // A child that left the body's process group and session (setsid)
    // dies too: it carries the runner's mark.
    let files = ["pid-0", "pid-1", "escaped-0", "escaped-1"];
    for file in files {
        wait_for_file(&setup.join(file));
    }
    let pids: Vec<u32> = files
        .iter()
        .map(|file| {
            // The file may be created before the pid is written.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(pid) = std::fs::read_to_string(setup.join(file))
                    .unwrap()
                    .trim()
                    .parse()
                {
                    break pid;
                }
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .collect();
    assert!(pids.iter().all(|&pid| running(pid)));
    child.kill().unwrap(); // SIGKILL: pragma gets no chance to clean up
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&pid| running(pid)) {
        assert!(Instant::now() < deadline, "the bodies outlived pragma");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn wait_on_a_killed_run_says_how_to_resume_and_a_run_elsewhere_is_left_alone() {
    let setup = Fixture::new();
    let cell = setup.write_cell(SLOW_PARALLEL);
    let state = setup.state.clone();
    let mut child = setup.spawn(&[
        "run",
        cell.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--json",
    ]);
    wait_for_file(&setup.join("started-0"));
    let op = {
        let mut found = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while found.is_none() {
            assert!(Instant::now() < deadline);
            found = std::fs::read_dir(setup.join("store/ops"))
                .ok()
                .and_then(|mut d| d.next())
                .map(|e| e.unwrap().file_name().into_string().unwrap());
            std::thread::sleep(Duration::from_millis(10));
        }
        found.unwrap()
    };
    child.kill().unwrap();
    child.wait().unwrap();
    setup
        .pragma(&["wait", &op])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not running and has not ended"))
        .stderr(predicate::str::contains("pragma run"));
    assert_eq!(setup.status(&op)["run"], "stopped, resumable");
    setup
        .pragma(&["apply", &op])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has not ended"));

    // Recorded as running on another machine (a shared store), it is
    // not taken for stopped: this machine can neither tell nor signal it.
    let record_path = setup.join("store/ops").join(&op).join("run.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    record["runner"] = serde_json::json!({"pid": 4242, "started": 1, "host": "another-node"});
    std::fs::write(&record_path, record.to_string()).unwrap();
    assert_eq!(
        setup.status(&op)["run"],
        "running (process 4242 on another-node)"
    );
    setup
        .pragma(&["cancel", &op])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "runs in process 4242 on another-node; run `pragma cancel",
        ));
    setup
        .pragma(&[
            "run",
            cell.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "already running (process 4242 on another-node)",
        ))
        .stderr(predicate::str::contains("--forget"));
    // That machine is gone for good: forgotten, the run resumes here.
    setup
        .pragma(&["cancel", &op, "--forget"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "forgot process 4242 on another-node",
        ));
    setup
        .pragma(&[
            "run",
            cell.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ])
        .assert()
        .code(0)
        .stderr(predicate::str::contains(format!("resuming operation {op}")));
}

#[test]
fn apply_settles_conflicts_left_by_a_run() {
    let setup = Fixture::new();
    let state = setup.state.clone();
    std::fs::write(state.join("shared"), "before\n").unwrap();
    std::fs::write(state.join("mine"), "before\n").unwrap();
    let cell = setup.write_cell(
        "#pragma async\n\
         echo background > shared; echo background > mine; echo live > \"$LIVE/shared\"\n",
    );
    let out = setup
        .pragma(&["run"])
        .arg(&cell)
        .arg("--state")
        .arg(&state)
        .env("LIVE", &state)
        .assert()
        .code(3)
        .stdout(predicate::str::contains("not applied: shared"))
        .stdout(predicate::str::contains("--take background"))
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let op = text
        .split_whitespace()
        .find(|w| w.starts_with("op-"))
        .unwrap()
        .trim_end_matches('`')
        .to_owned();
    assert_eq!(
        std::fs::read_to_string(state.join("mine")).unwrap(),
        "background\n"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("shared")).unwrap(),
        "live\n"
    );
    assert!(
        setup.status(&op)["run"]
            .as_str()
            .unwrap()
            .contains("not applied")
    );

    // Without a choice nothing conflicting is applied.
    setup
        .pragma(&["apply", &op])
        .assert()
        .code(3)
        .stdout(predicate::str::contains("not applied: shared"));
    assert_eq!(
        std::fs::read_to_string(state.join("shared")).unwrap(),
        "live\n"
    );
    setup
        .pragma(&["apply", &op, "--take", "background", "--keep-live"])
        .assert()
        .code(2);
    setup
        .pragma(&["apply", &op, "--take", "background"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("applied"));
    assert_eq!(
        std::fs::read_to_string(state.join("shared")).unwrap(),
        "background\n"
    );
    setup
        .pragma(&["apply", &op])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("already applied"));
    setup.pragma(&["wait", &op]).assert().code(0);
    setup.pragma(&["apply", "../etc"]).assert().code(2);
}

#[test]
fn submit_reports_bad_cells_at_once() {
    let setup = Fixture::new();
    let cell = setup.write_cell("#pragma parallel 6\ntrue\n");
    setup
        .pragma(&["submit"])
        .arg(&cell)
        .arg("--state")
        .arg(&setup.state)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--iterations 6"));
    setup
        .pragma(&["wait", "op-missing"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("there is no store"));
}

#[test]
fn working_copies_are_reused_without_leftovers() {
    let setup = Fixture::new();
    std::fs::write(setup.join("state/given"), "1\n").unwrap();
    // Each iteration starts from the state at submission, even in a
    // directory an earlier iteration used.
    let cell = setup.write_cell(
        "#pragma parallel --iterations 40 --parallel-runs 2 --max-by 'cat d/e/f'\n\
         test ! -e leak && test \"$(ls)\" = given || exit 1\n\
         echo x > leak; mkdir -p d/e; echo $iteration > d/e/f; chmod -w leak\n",
    );
    setup
        .pragma(&["run"])
        .arg(&cell)
        .arg("--state")
        .arg(&setup.state)
        .args(["--retries", "0"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("succeeded: best iteration 39"));
    assert_eq!(
        std::fs::read_to_string(setup.join("state/d/e/f")).unwrap(),
        "39\n"
    );
}

/// The most copies of the state (non-empty working directories, its
/// own included) any iteration of the cell saw.
fn most_copies(setup: &Fixture, directive: &str) -> usize {
    let counts = setup.join("counts");
    let _ = std::fs::remove_file(&counts);
    let cell = setup.write_cell(&format!(
        "{directive} --max-by 'cat score'\n\
         n=0; for d in ../state-*; do [ -n \"$(ls -A \"$d\" 2>/dev/null)\" ] && n=$((n+1)); done\n\
         echo $n >> \"$OUT/counts\"; echo $(( (iteration * 7) % 24 )) > score; sleep 0.02\n"
    ));
    setup
        .pragma(&["run"])
        .arg(&cell)
        .arg("--state")
        .arg(&setup.state)
        .args(["--workers", "3", "--fresh"])
        .assert()
        .code(0);
    let text = std::fs::read_to_string(&counts).unwrap();
    text.lines()
        .map(|l| l.trim().parse::<usize>().unwrap())
        .max()
        .unwrap()
}

#[test]
fn copies_of_the_state_are_bounded() {
    let setup = Fixture::new();
    std::fs::write(setup.join("state/data"), "x\n").unwrap();
    // Parallel: one copy per iteration in flight, the state at
    // submission (every iteration starts from it) and the best; while
    // a best is being checkpointed, a newer best may be held too.
    let parallel = most_copies(&setup, "#pragma parallel --iterations 24 --parallel-runs 3");
    assert!(parallel <= 3 + 3, "{parallel} copies");
    // Repeat: the copy in flight, the latest and the best.
    let repeat = most_copies(
        &setup,
        "#pragma repeat --iterations 24 --checkpoint-period 3",
    );
    assert!(repeat <= 3, "{repeat} copies");
}

#[test]
fn plain_progress_lines_when_not_a_terminal() {
    let setup = Fixture::new();
    let cell = setup
        .write_cell("#pragma parallel --iterations 3 --parallel-runs 1 --min-by 'echo 1'\ntrue\n");
    setup
        .pragma(&["run"])
        .arg(&cell)
        .arg("--state")
        .arg(&setup.state)
        .assert()
        .code(0)
        .stderr(predicate::str::contains("iteration 2 finished: score 1"));
}

#[test]
fn an_s3_store_keeps_the_checkpoints_in_the_bucket() {
    let Ok(endpoint) = std::env::var("PRAGMA_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "under CI the S3 tests must run: .ci/run starts SeaweedFS and sets PRAGMA_TEST_S3_ENDPOINT"
        );
        eprintln!(
            "\n*** SKIPPED: pragma with an s3:// store: PRAGMA_TEST_S3_ENDPOINT is not set (see scripts/start-seaweedfs) ***\n"
        );
        return;
    };
    let bucket = std::env::var("PRAGMA_TEST_S3_BUCKET").unwrap_or_else(|_| "pragma".into());
    let setup = Fixture::new();
    let cell =
        setup.write_cell("#pragma parallel --iterations 3 --max-by 'cat n'\necho $iteration > n\n");
    let url = format!("s3://{bucket}/cli-{}", std::process::id());
    let s3 = |command: &mut Command| {
        command
            .env("AWS_ENDPOINT", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .current_dir(setup.path());
    };
    let mut run = pragma();
    run.arg("run")
        .arg(&cell)
        .arg("--state")
        .arg(&setup.state)
        .args(["--store", &url, "--json"]);
    s3(&mut run);
    let out = run.assert().code(0).get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["best"]["iteration"], 2);
    assert_eq!(
        std::fs::read_to_string(setup.join("state/n")).unwrap(),
        "2\n"
    );
    // The operation is listed from the bucket; logs stay on this machine.
    let mut status = pragma();
    status.args(["status", "--store", &url]);
    s3(&mut status);
    status
        .assert()
        .code(0)
        .stdout(predicate::str::contains(last["op"].as_str().unwrap()))
        .stdout(predicate::str::contains("succeeded"));
    assert!(setup.join(".pragma/remote").is_dir());
    assert!(!setup.join(".pragma/store").exists());
}

/// Sends the signal `name` (`INT`, `TERM`) to `child`, as `kill -NAME`.
fn send(child: &std::process::Child, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name}");
}
