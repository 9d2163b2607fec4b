//! `--backend slurm` against a real cluster: `scripts/start-slurm` starts
//! one on this machine (as `.ci/run` does) and sets `PRAGMA_TEST_SLURM`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

fn cluster() -> bool {
    if std::env::var_os("PRAGMA_TEST_SLURM").is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "under CI the SLURM tests must run: .ci/run starts a cluster with scripts/start-slurm"
    );
    eprintln!(
        "\n*** SKIPPED: SLURM tests: PRAGMA_TEST_SLURM is not set (see scripts/start-slurm) ***\n"
    );
    false
}

/// A [`Fixture`] whose state holds `base` (5), which the bodies read.
fn with_base_file() -> Fixture {
    Fixture::new().with_state_file("base", "5\n")
}

/// `pragma run CELL --backend slurm` in the background, its
/// standard output piped.
fn spawn_run(setup: &Fixture, cell: &Path, extra: &[&str]) -> std::process::Child {
    setup
        .run_command(cell)
        .args(["--backend", "slurm"])
        .args(extra)
        .env("OUT", setup.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// `pragma run CELL --json` on the setup's state and store: its exit
/// code and its last line (the summary).
fn run_json(setup: &Fixture, cell: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let output = setup
        .run_command(cell)
        .arg("--json")
        .args(extra)
        .env("OUT", setup.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no output; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_str(last).unwrap(),
    )
}

/// Lines of `$OUT/NAME`, as bodies append them.
fn lines(setup: &Fixture, name: &str) -> Vec<String> {
    std::fs::read_to_string(setup.join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

const PARALLEL: &str = "#pragma parallel --iterations 6 --parallel-runs 3 --max-by 'cat score'\n\
    echo $iteration >> \"$OUT/ran\"; echo \"said $iteration\"; echo $(( $(cat base) * iteration % 7 )) > score\n";

#[test]
fn a_parallel_cell_gives_the_same_outcome_as_locally() {
    if !cluster() {
        return;
    }
    let local = with_base_file();
    let (code, here) = run_json(&local, &local.write_cell(PARALLEL), &[]);
    assert_eq!(code, 0, "{here}");
    let remote = with_base_file();
    let (code, there) = run_json(
        &remote,
        &remote.write_cell(PARALLEL),
        &["--backend", "slurm"],
    );
    assert_eq!(code, 0, "{there}");
    assert_eq!(there["best"], here["best"]);
    assert_eq!(there["best"]["iteration"], 4);
    assert_eq!(there["iterations_run"], 6);
    assert_eq!(
        std::fs::read_to_string(remote.join("state/score")).unwrap(),
        "6\n"
    );
    let mut ran = lines(&remote, "ran");
    ran.sort();
    assert_eq!(ran, ["0", "1", "2", "3", "4", "5"], "each iteration once");
    // The logs of the tasks are where `pragma logs` finds them.
    let op = there["op"].as_str().unwrap();
    pragma()
        .args(["report", op, "--store"])
        .arg(&remote.store)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("4  6  <- best"));
    pragma()
        .args(["logs", op, "--iteration", "4", "--store"])
        .arg(&remote.store)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("said 4"));
}

#[test]
fn an_async_cell_runs_as_one_slurm_job() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(
        "#pragma async\n\
         echo \"$SLURM_JOB_ID\" > job; echo $(( $(cat base) * 2 )) > doubled\n",
    );
    let (code, outcome) = run_json(&setup, &cell, &["--backend", "slurm"]);
    assert_eq!(code, 0, "{outcome}");
    assert_eq!(outcome["iterations_run"], 1, "{outcome}");
    assert_eq!(
        std::fs::read_to_string(setup.join("state/doubled")).unwrap(),
        "10\n"
    );
    // It ran in a SLURM job, not in the coordinator.
    let job = std::fs::read_to_string(setup.join("state/job")).unwrap();
    assert!(job.trim().parse::<u64>().is_ok(), "{job:?}");
}

#[test]
fn a_failing_task_uses_the_retry_budget() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(
        "#pragma parallel --iterations 4 --parallel-runs 2 --max-by 'cat score'\n\
         if [ $iteration = 2 ] && [ ! -e \"$OUT/failed-once\" ]; then touch \"$OUT/failed-once\"; echo boom >&2; exit 3; fi\n\
         echo $iteration > score\n",
    );
    let (code, outcome) = run_json(&setup, &cell, &["--backend", "slurm"]);
    assert_eq!(code, 0, "{outcome}");
    assert_eq!(outcome["best"]["iteration"], 3);
    assert_eq!(outcome["iterations_run"], 5, "one retry");
    // Out of retries, the iteration fails the operation's candidate list.
    let setup = with_base_file();
    let cell = setup.write_cell(
        "#pragma parallel --iterations 3 --parallel-runs 3 --max-by 'cat score'\n\
         [ $iteration = 1 ] && exit 3; echo $iteration > score\n",
    );
    let (_, outcome) = run_json(&setup, &cell, &["--backend", "slurm", "--retries", "1"]);
    assert_eq!(outcome["failed_iterations"][0]["iteration"], 1, "{outcome}");
    assert_eq!(outcome["iterations_run"], 4, "{outcome}");
}

#[test]
fn nothing_from_the_cell_or_paths_reaches_a_shell_unquoted() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    // A state directory and a store whose names are shell syntax. (The
    // payloads name their files through variables: one path component
    // cannot hold a slash.)
    let nasty = "st ;$(touch \"$PWNED1\")\n`touch \"$PWNED2\"` 'q\" x";
    let state = setup.join(nasty);
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("base"), "2\n").unwrap();
    let cell = setup.write_cell(
        "#pragma parallel --iterations 3 --parallel-runs 3 --max-by 'cat \"sc ore\" # $(touch \"$OUT/pwned3\")'\n\
         printf '%s\\n' \"$iteration\" > \"sc ore\"; echo ';$(touch \"$OUT/pwned4\")`x`'\n",
    );
    let output = pragma()
        .arg("run")
        .arg(&cell)
        .arg("--state")
        .arg(&state)
        .arg("--store")
        .arg(setup.join("store ;$(touch \"$PWNED5\")\nx"))
        .args([
            "--json",
            "--backend",
            "slurm",
            "--sbatch-arg=--comment=$(touch \"$PWNED6\");`y`",
        ])
        .env("OUT", setup.path())
        .envs((1..=6).map(|n| (format!("PWNED{n}"), setup.join(&format!("pwned{n}")))))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(last["best"]["iteration"], 2);
    for n in 1..=6 {
        assert!(!setup.join(&format!("pwned{n}")).exists(), "pwned{n}");
    }
    assert_eq!(
        std::fs::read_to_string(state.join("sc ore")).unwrap(),
        "2\n"
    );
}

/// The jobs of `op` in the queue.
fn queued(op: &str) -> usize {
    let output = std::process::Command::new("squeue")
        .args(["-h", "-r", "-o", "%i", "--name", &format!("pragma-{op}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).lines().count()
}

#[test]
fn cancel_stops_the_array() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(
        "#pragma parallel --iterations 8 --parallel-runs 2 --max-by 'cat score'\n\
         touch \"$OUT/started-$iteration\"; sleep 60; echo 1 > score\n",
    );
    let out = pragma()
        .arg("submit")
        .arg(&cell)
        .arg("--state")
        .arg(&setup.state)
        .arg("--store")
        .arg(&setup.store)
        .args(["--backend", "slurm"])
        .env("OUT", setup.path())
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let op = String::from_utf8(out).unwrap().trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !setup.join("started-0").exists() {
        assert!(Instant::now() < deadline, "no task started");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(queued(&op) > 0);
    pragma()
        .args(["cancel", &op, "--store"])
        .arg(&setup.store)
        .assert()
        .code(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while queued(&op) > 0 {
        assert!(Instant::now() < deadline, "the array is still queued");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !setup.join("started-7").exists(),
        "later tasks never started"
    );
}

#[test]
fn cancel_stops_an_array_whose_coordinator_was_killed() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(
        "#pragma parallel --iterations 8 --parallel-runs 2 --max-by 'cat score'\n\
         touch \"$OUT/started-$iteration\"; sleep 60; echo 1 > score\n",
    );
    let mut child = spawn_run(&setup, &cell, &[]);
    let op = op_of(&setup);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !setup.join("started-0").exists() {
        assert!(Instant::now() < deadline, "no task started");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL: the coordinator cannot scancel
    child.wait().unwrap();
    assert!(queued(&op) > 0);
    pragma()
        .args(["cancel", &op, "--store"])
        .arg(&setup.store)
        .assert()
        .code(0)
        .stderr(predicate::str::contains("ran without their coordinator"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while queued(&op) > 0 {
        assert!(Instant::now() < deadline, "the array is still queued");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_restarted_coordinator_reuses_the_running_array() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(
        "#pragma parallel --iterations 6 --parallel-runs 2 --max-by 'cat score'\n\
         echo $iteration >> \"$OUT/ran\"; sleep 1; echo $iteration > score\n",
    );
    let mut first = spawn_run(&setup, &cell, &[]);
    wait_for_runs(&setup, 2);
    first.kill().unwrap(); // SIGKILL: the array goes on without it
    first.wait().unwrap();
    let (code, outcome) = run_json(&setup, &cell, &["--backend", "slurm"]);
    assert_eq!(code, 0, "{outcome}");
    assert_eq!(outcome["best"]["iteration"], 5);
    let mut ran = lines(&setup, "ran");
    ran.sort();
    assert_eq!(
        ran,
        ["0", "1", "2", "3", "4", "5"],
        "no iteration ran twice"
    );
}

/// The operation a run in `setup` started, once its record exists.
fn op_of(setup: &Fixture) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(entry) = std::fs::read_dir(setup.join("store/ops"))
            .ok()
            .and_then(|mut d| d.next())
        {
            return entry.unwrap().file_name().into_string().unwrap();
        }
        assert!(Instant::now() < deadline, "no operation started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Requeues (`scontrol requeue`) the job of `name` whose id ends with
/// `suffix`, once it runs.
fn requeue(name: &str, suffix: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = std::process::Command::new("squeue")
            .args(["-h", "-r", "-t", "RUNNING", "-o", "%i", "--name", name])
            .output()
            .unwrap();
        let jobs = String::from_utf8_lossy(&output.stdout).into_owned();
        if let Some(job) = jobs.lines().find(|j| j.ends_with(suffix)) {
            let status = std::process::Command::new("scontrol")
                .args(["requeue", job])
                .status()
                .unwrap();
            assert!(status.success(), "scontrol requeue {job}");
            return;
        }
        assert!(Instant::now() < deadline, "no running job of {name}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_task_requeued_while_running_runs_again_and_the_operation_completes() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(
        "#pragma parallel --iterations 3 --parallel-runs 3 --max-by 'cat score'\n\
         echo $iteration >> \"$OUT/ran\"; sleep 2; echo $iteration > score\n",
    );
    let child = spawn_run(&setup, &cell, &["--json"]);
    let op = op_of(&setup);
    // Requeued once its body runs, so that its work is cut short.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines(&setup, "ran").iter().any(|i| i == "0") {
        assert!(Instant::now() < deadline, "iteration 0 never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    requeue(&format!("pragma-{op}"), "_0");
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(last["best"]["iteration"], 2);
    let ran = lines(&setup, "ran");
    // Iteration 0 was cut short and ran again; the others ran once.
    assert_eq!(ran.iter().filter(|i| *i == "0").count(), 2, "{ran:?}");
    // The run cut short is counted: a run, and lost work.
    assert_eq!(last["usage"]["iterations_run"], 4, "{last}");
    assert_eq!(last["usage"]["work_lost"], 1, "{last}");
    assert_eq!(ran.iter().filter(|i| *i == "1").count(), 1, "{ran:?}");
    assert_eq!(ran.iter().filter(|i| *i == "2").count(), 1, "{ran:?}");
}

/// Waits until the bodies have run `count` times (lines in `$OUT/ran`).
fn wait_for_runs(setup: &Fixture, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(setup, "ran").len() < count {
        assert!(
            Instant::now() < deadline,
            "fewer than {count} runs after a minute"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The directory of the test's repeat job, and the job's id, once it
/// is submitted.
fn repeat_job(setup: &Fixture) -> (PathBuf, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let submitted = std::fs::read_dir(setup.join("store/slurm"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("job.id").exists());
        if let Some(dir) = submitted {
            let job = serde_json::from_str(&wait_for_text(&dir.join("job.id"))).unwrap();
            return (dir, job);
        }
        assert!(Instant::now() < deadline, "no repeat job was submitted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn release(job: &str) {
    let status = std::process::Command::new("scontrol")
        .args(["release", job])
        .status()
        .unwrap();
    assert!(status.success(), "scontrol release {job}");
}

#[test]
fn a_store_the_nodes_do_not_see_is_named_as_the_cause() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(PARALLEL);
    // The array waits, held, while its directory moves away: as a node
    // that does not mount the store sees it.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
        .arg("run")
        .arg(&cell)
        .arg("--state")
        .arg(&setup.state)
        .arg("--store")
        .arg(&setup.store)
        .args(["--backend", "slurm", "--retries", "0", "--json"])
        .arg("--sbatch-arg=--hold")
        .env("OUT", setup.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let op = op_of(&setup);
    let tasks = setup.join("store/slurm").join(&op);
    let job: String = serde_json::from_str(&wait_for_text(&tasks.join("array/job.id"))).unwrap();
    std::fs::rename(&tasks, setup.join("store/slurm/elsewhere")).unwrap();
    release(&job);
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not end");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(output.status.code(), Some(1), "{last}");
    assert_eq!(last["status"], "failed", "{last}");
    let failures = last["failed_iterations"].as_array().unwrap();
    assert!(!failures.is_empty(), "{last}");
    for failure in failures {
        let error = failure["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("ended without starting its iteration")
                && error.contains("every node mounts"),
            "{last}"
        );
    }
    assert!(lines(&setup, "ran").is_empty());
}

#[test]
fn a_repeat_job_whose_node_does_not_see_the_store_says_so() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(REPEAT);
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
        .arg("run")
        .arg(&cell)
        .arg("--state")
        .arg(&setup.state)
        .arg("--store")
        .arg(&setup.store)
        .args(["--backend", "slurm", "--sbatch-arg=--hold"])
        .env("OUT", setup.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (dir, job) = repeat_job(&setup);
    std::fs::rename(&dir, setup.join("store/slurm/elsewhere")).unwrap();
    release(&job);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ended without starting pragma") && stderr.contains("every node mounts"),
        "{stderr}"
    );
    assert!(lines(&setup, "ran").is_empty());
}

#[test]
fn a_repeat_job_requeued_while_running_resumes_and_completes() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(REPEAT);
    let child = spawn_run(&setup, &cell, &["--json"]);
    wait_for_runs(&setup, 3);
    let output = std::process::Command::new("squeue")
        .args(["-h", "-o", "%i %j"])
        .output()
        .unwrap();
    let jobs = String::from_utf8_lossy(&output.stdout).into_owned();
    // The one repeat job of this test: its directory is in this store.
    let dirs: Vec<String> = std::fs::read_dir(setup.join("store/slurm"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n.starts_with("repeat-"))
        .collect();
    let name = format!("pragma-{}", dirs[0]);
    assert!(jobs.contains(&name), "{jobs}");
    requeue(&name, "");
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(
        std::fs::read_to_string(setup.join("state/n")).unwrap(),
        "6\n"
    );
    let ran = lines(&setup, "ran");
    assert_eq!(
        ran.iter().filter(|i| *i == "0").count(),
        1,
        "went on from a checkpoint: {ran:?}"
    );
    // The runs cut short count as runs (a run the requeue stopped before
    // its body wrote its line too). The requeue's SIGTERM reaches the
    // body as well as pragma: a body it killed is a failed run (which
    // spends no retry once the notice came first); whatever finished
    // after the last checkpoint and ran again is lost work.
    let lost = last["usage"]["work_lost"].as_u64().unwrap();
    let runs = last["usage"]["iterations_run"].as_u64().unwrap();
    let lines_written = ran.len() as u64;
    assert!(
        runs > 6,
        "a run was cut short and ran again: {last} {ran:?}"
    );
    assert!(
        runs == lines_written || runs == lines_written + 1,
        "{last} {ran:?}"
    );
    assert!(lost <= runs - 6, "{last} {ran:?}");
    assert_eq!(last["iterations_run"], runs, "{last}");
}

const REPEAT: &str = "#pragma repeat --iterations 6 --checkpoint-period 2 --max-by 'cat n'\n\
    echo $iteration >> \"$OUT/ran\"; sleep 0.3; echo $(( $(cat n 2>/dev/null || echo 0) + 1 )) > n\n";

#[test]
fn a_repeat_cell_runs_as_one_job_with_the_same_outcome() {
    if !cluster() {
        return;
    }
    let local = with_base_file();
    let (code, here) = run_json(&local, &local.write_cell(REPEAT), &[]);
    assert_eq!(code, 0, "{here}");
    let remote = with_base_file();
    let (code, there) = run_json(&remote, &remote.write_cell(REPEAT), &["--backend", "slurm"]);
    assert_eq!(code, 0, "{there}");
    assert_eq!(there["best"], here["best"]);
    assert_eq!(
        std::fs::read_to_string(remote.join("state/n")).unwrap(),
        "6\n"
    );
    assert_eq!(lines(&remote, "ran"), ["0", "1", "2", "3", "4", "5"]);
}

#[test]
fn pragma_cancel_stops_a_repeat_job_on_whichever_node_it_runs() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(&REPEAT.replace("sleep 0.3", "sleep 1"));
    let child = spawn_run(&setup, &cell, &["--json"]);
    wait_for_runs(&setup, 2);
    let op = op_of(&setup);
    let store = setup.store.clone();
    let status = pragma()
        .arg("status")
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("running (SLURM job "), "{status}");
    // As a job on another node records itself: its process is nowhere
    // here, and the job is what cancel stops.
    let record_path = store.join("ops").join(&op).join("run.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    assert!(record["runner"]["slurm_job"].is_string(), "{record}");
    record["runner"]["host"] = "another-node".into();
    record["runner"]["pid"] = 999_999_999u32.into();
    std::fs::write(&record_path, record.to_string()).unwrap();
    let cancel = pragma()
        .args(["cancel", &op, "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        cancel.status.success(),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    assert!(String::from_utf8_lossy(&cancel.stdout).contains("cancelled"));
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "cancelled", "{last}");
    assert_eq!(output.status.code(), Some(130));
    assert!(!setup.join("state/n").exists(), "nothing is applied");
}

#[test]
fn a_restarted_coordinator_follows_the_running_repeat_job() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(&REPEAT.replace("sleep 0.3", "sleep 1"));
    let mut child = spawn_run(&setup, &cell, &["--json"]);
    wait_for_runs(&setup, 2);
    child.kill().unwrap(); // SIGKILL: the job goes on without it
    child.wait().unwrap();
    let (code, outcome) = run_json(&setup, &cell, &["--backend", "slurm"]);
    assert_eq!(code, 0, "{outcome}");
    assert_eq!(
        std::fs::read_to_string(setup.join("state/n")).unwrap(),
        "6\n"
    );
    // The same job went on: every iteration ran once.
    assert_eq!(lines(&setup, "ran"), ["0", "1", "2", "3", "4", "5"]);
    assert_eq!(outcome["usage"]["work_lost"], 0, "{outcome}");
}

#[test]
fn a_repeat_job_restarted_after_its_node_died_resumes() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(&REPEAT.replace("sleep 0.3", "sleep 1"));
    let child = spawn_run(&setup, &cell, &["--json"]);
    wait_for_runs(&setup, 2);
    let op = op_of(&setup);
    let (_, job) = repeat_job(&setup);
    // Requeued and held, so that its record can be made what a node
    // that died leaves: its runner still written down.
    let status = std::process::Command::new("scontrol")
        .args(["requeuehold", &job])
        .status()
        .unwrap();
    assert!(status.success());
    let record_path = setup.join("store/ops").join(&op).join("run.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut record: serde_json::Value = loop {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
        if record["runner"].is_null() {
            break record;
        }
        assert!(Instant::now() < deadline, "the job did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    record["runner"] = serde_json::json!({
        "pid": 4242, "started": 1, "host": "a-node-that-died", "slurm_job": job
    });
    std::fs::write(&record_path, record.to_string()).unwrap();
    release(&job);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(
        std::fs::read_to_string(setup.join("state/n")).unwrap(),
        "6\n"
    );
}

#[test]
fn submit_of_a_repeat_cell_prints_its_id_at_once_and_wait_follows_the_job() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(REPEAT);
    let out = pragma()
        .arg("submit")
        .arg(&cell)
        .arg("--state")
        .arg(&setup.state)
        .arg("--store")
        .arg(&setup.store)
        .args(["--backend", "slurm"])
        .env("OUT", setup.path())
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let op = String::from_utf8(out).unwrap().trim().to_owned();
    assert!(op.starts_with("op-"), "{op}");
    pragma()
        .args(["wait", &op, "--store"])
        .arg(&setup.store)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("succeeded: best iteration 5"));
    // The background coordinator applies the result as the job ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(setup.join("state/n"))
        .ok()
        .as_deref()
        != Some("6\n")
    {
        assert!(Instant::now() < deadline, "the result was not applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lines(&setup, "ran"), ["0", "1", "2", "3", "4", "5"]);
}

#[test]
fn a_repeat_job_that_ended_without_its_coordinator_is_applied_not_run_again() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    let cell = setup.write_cell(REPEAT);
    let mut child = spawn_run(&setup, &cell, &["--json"]);
    wait_for_runs(&setup, 1);
    child.kill().unwrap(); // SIGKILL: nobody applies what the job makes
    child.wait().unwrap();
    let op = op_of(&setup);
    let (_, job) = repeat_job(&setup);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = std::process::Command::new("squeue")
            .args(["-h", "-j", &job])
            .output()
            .unwrap();
        if listed.stdout.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!setup.join("state/n").exists());
    let (code, outcome) = run_json(&setup, &cell, &["--backend", "slurm"]);
    assert_eq!(code, 0, "{outcome}");
    assert_eq!(outcome["op"], op.as_str());
    assert_eq!(
        std::fs::read_to_string(setup.join("state/n")).unwrap(),
        "6\n"
    );
    assert_eq!(lines(&setup, "ran"), ["0", "1", "2", "3", "4", "5"]);
}

#[test]
fn a_repeat_job_near_its_time_limit_checkpoints_what_finished_and_resumes_running_nothing_twice() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    // Longer than the 2-minute limit allows after the notice (SLURM sends
    // it 60 s before the limit, up to 60 s earlier still), checkpoints
    // every 10: without the notice the job would be killed at its limit
    // and up to 9 iterations would run again.
    let cell = setup.write_cell(
        "#pragma repeat --iterations 70 --checkpoint-period 10 --max-by 'cat n'\n\
         echo $iteration >> \"$OUT/ran\"; sleep 1; echo $(( $(cat n 2>/dev/null || echo 0) + 1 )) > n\n",
    );
    let (code, first) = run_json(
        &setup,
        &cell,
        &["--backend", "slurm", "--sbatch-arg=--time=2"],
    );
    assert_eq!(code, 75, "{first}");
    assert_eq!(first["status"], "suspended", "{first}");
    assert_eq!(first["usage"]["work_lost"], 0, "{first}");
    let (code, last) = run_json(&setup, &cell, &["--backend", "slurm"]);
    assert_eq!(code, 0, "{last}");
    assert_eq!(
        std::fs::read_to_string(setup.join("state/n")).unwrap(),
        "70\n"
    );
    let mut ran: Vec<u64> = lines(&setup, "ran")
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    ran.sort_unstable();
    assert_eq!(ran, (0..70).collect::<Vec<_>>(), "each iteration once");
}

#[test]
fn a_cancelled_repeat_job_resumes_from_its_checkpoint() {
    if !cluster() {
        return;
    }
    let setup = with_base_file();
    // Slower iterations than REPEAT's: the cancel must land before the
    // job ends, even on a loaded machine (with 1 s, then with 2 s, CI runs
    // under load saw the job end first: it has 4 iterations left here).
    let cell = setup.write_cell(&REPEAT.replace("sleep 0.3", "sleep 4"));
    let child = spawn_run(&setup, &cell, &["--json"]);
    wait_for_runs(&setup, 3);
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "cancelled", "{last}");
    assert_eq!(output.status.code(), Some(130));
    assert!(!setup.join("state/n").exists(), "nothing is applied");

    let (code, outcome) = run_json(&setup, &cell, &["--backend", "slurm"]);
    assert_eq!(code, 0, "{outcome}");
    assert_eq!(
        std::fs::read_to_string(setup.join("state/n")).unwrap(),
        "6\n"
    );
    // It went on from a checkpoint: the first iterations did not run again.
    let ran = lines(&setup, "ran");
    assert_eq!(ran.iter().filter(|i| *i == "0").count(), 1, "{ran:?}");
    assert_eq!(ran.last().map(String::as_str), Some("5"));
}
