//! The smaller rows of the red-team list: each reproduces what was seen.

use std::time::Duration;

use super::*;

fn run_cell(dir: &std::path::Path, cell_text: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    run_cell_with(dir, cell_text, extra, Duration::from_secs(60))
}

/// [`run_cell`] with `--json`, which must succeed: its events, and the
/// last of them.
fn run_cell_json(
    dir: &std::path::Path,
    cell_text: &str,
    extra: &[&str],
) -> (String, serde_json::Value) {
    let out = run_cell(dir, cell_text, &[&["--json"], extra].concat())
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let last = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    (text, last)
}

#[test]
fn an_infinite_score_ranks_first_and_is_shown_as_inf_in_text_and_json() {
    let dir = setup();
    let cell = "#pragma parallel --iterations 3 --max-by 'if [ $(cat n) = 1 ]; then echo inf; else cat n; fi'\necho $iteration > n\n";
    let (text, last) = run_cell_json(dir.path(), cell, &[]);
    assert_eq!(
        last["best"],
        serde_json::json!({"iteration": 1, "score": "inf"}),
        "{last}"
    );
    let candidates: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"score\":\"inf\""))
        .collect();
    assert!(!candidates.is_empty(), "{text}");
    pragma()
        .args(["status"])
        .current_dir(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("iteration 1 (inf)"));
    std::fs::remove_dir_all(dir.path().join(".pragma")).unwrap();
    run_cell(dir.path(), cell, &[])
        .code(0)
        .stdout(predicate::str::contains(
            "succeeded: best iteration 1, score inf",
        ));
}

#[test]
fn a_cell_that_never_ends_is_refused_once_it_is_larger_than_any_cell() {
    pragma()
        .args(["check", "/dev/zero"])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("larger than 16 MiB"));
}

#[test]
fn flags_that_make_no_sense_are_refused_with_the_reason() {
    let dir = setup();
    let cell = "#pragma parallel --iterations 1 --max-by 'cat score'\ntrue\n";
    run_cell(dir.path(), cell, &["--workers", "0"])
        .code(2)
        .stderr(predicate::str::contains("--workers"));
    run_cell(dir.path(), cell, &["--partition", "gpu"])
        .code(2)
        .stderr(predicate::str::contains("are for --backend slurm"));
    run_cell(dir.path(), cell, &["--store", ""])
        .code(2)
        .stderr(predicate::str::contains("the store is empty"));
    assert!(!dir.path().join("store").exists(), "nothing scattered here");
}

#[test]
fn logs_of_an_iteration_the_operation_does_not_have_say_so() {
    let dir = setup();
    let cell = "#pragma parallel --iterations 2 --max-by 'cat score'\necho hi\n";
    let out = run_cell(dir.path(), cell, &["--json"])
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let op = last["op"].as_str().unwrap();
    pragma()
        .args(["logs", op, "--iteration", "99999"])
        .current_dir(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "operation {op} has iterations 0 to 1: there is no iteration 99999"
        )));
    pragma()
        .args(["logs", op, "--iteration", "1"])
        .current_dir(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("hi"));
}

#[test]
fn a_cell_saved_with_a_byte_order_mark_runs_and_a_nul_is_named() {
    let dir = setup();
    run_cell(
        dir.path(),
        "\u{feff}#pragma repeat --iterations 1 --max-by 'cat score'\necho 1 > score\n",
        &[],
    )
    .code(0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state/score")).unwrap(),
        "1\n"
    );
    std::fs::write(
        dir.path().join("nul.cell"),
        "#pragma repeat --iterations 1 --max-by \"cat\0score\"\ntrue\n",
    )
    .unwrap();
    pragma()
        .args(["check", "nul.cell"])
        .current_dir(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("control character U+0000"));
}

#[test]
fn a_result_that_cannot_be_applied_says_so_and_status_does_not_call_it_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_disk) = super::run::Tmpfs::mount(&dir.path().join("state"), "1m") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "under CI the full-state test must run (as root)"
        );
        eprintln!("\n*** SKIPPED: full-state test: cannot mount a tmpfs here (needs root) ***\n");
        return;
    };
    std::fs::write(dir.path().join("state/score"), "0\n").unwrap();
    let cell = "#pragma repeat --iterations 1 --max-by 'cat score'\n\
                for f in a b c; do head -c 400000 /dev/zero > $f; done\n";
    let assert = run_cell(dir.path(), cell, &[]).code(1);
    let output = assert.get_output();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("but the result could not be applied (the error follows): it is kept"),
        "{stdout}"
    );
    assert!(stderr.contains("No space left on device"), "{stderr}");
    // All or nothing: the live state is as before.
    assert!(!dir.path().join("state/a").exists());
    pragma()
        .args(["status"])
        .current_dir(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "result not applied (applying it failed",
        ))
        .stdout(predicate::str::contains("conflicts").not());
    // With --json too the error is on standard error, and in the JSON.
    let assert = run_cell(dir.path(), cell, &["--json"]).code(1);
    let output = assert.get_output();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.contains("\"apply_error\":\"cannot apply the result"),
        "{last}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: cannot apply the result"),
        "{stderr}"
    );
}

#[test]
fn names_that_are_not_utf8_are_applied_and_shown_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let dir = setup();
    let odd = std::ffi::OsStr::from_bytes(b"b\xff");
    std::fs::write(dir.path().join("state").join(odd), "0\n").unwrap();
    let cell = "#pragma repeat --iterations 1 --max-by 'cat score'\n\
                echo 1 > \"$(printf 'b\\377')\"; echo 2 > \"$(printf 'c\\376')\"\n";
    run_cell(dir.path(), cell, &[]).code(0);
    let state = dir.path().join("state");
    assert_eq!(std::fs::read_to_string(state.join(odd)).unwrap(), "1\n");
    let made = std::ffi::OsStr::from_bytes(b"c\xfe");
    assert_eq!(std::fs::read_to_string(state.join(made)).unwrap(), "2\n");
    // Changed on both sides: the conflict names it escaped.
    let slow = "#pragma repeat --iterations 1 --max-by 'cat score'\n\
                sleep 1; echo 3 > \"$(printf 'b\\377')\"\n";
    std::fs::write(dir.path().join("slow"), slow).unwrap();
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
        .args(["run", "slow", "--state", "state"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once the second operation is on record, its state is captured.
    let ops = dir.path().join(".pragma/ops");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&ops).unwrap().count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second run did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(state.join(odd), "live\n").unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("not applied: b\\xff"), "{stdout}");
}

#[test]
fn a_link_into_the_state_by_its_absolute_path_is_refused_before_anything_runs() {
    let dir = setup();
    let state = std::fs::canonicalize(dir.path().join("state")).unwrap();
    std::fs::write(state.join("data"), "0\n").unwrap();
    std::os::unix::fs::symlink(state.join("data"), state.join("log")).unwrap();
    let cell = "#pragma parallel --iterations 2 --max-by 'cat score'\necho x >> log\n";
    run_cell(dir.path(), cell, &[])
        .code(2)
        .stderr(predicate::str::contains(
            "links into the state by its absolute path",
        ))
        .stderr(predicate::str::contains("ln -sfr"));
    assert_eq!(std::fs::read_to_string(state.join("data")).unwrap(), "0\n");
    // Relative, it is the copy's own file in each iteration.
    std::fs::remove_file(state.join("log")).unwrap();
    std::os::unix::fs::symlink("data", state.join("log")).unwrap();
    run_cell(dir.path(), cell, &[]).code(0);
    assert_eq!(
        std::fs::read_to_string(state.join("data")).unwrap(),
        "0\nx\n"
    );
}

#[test]
fn a_signal_while_the_result_is_applied_stops_the_command_and_keeps_the_result() {
    let dir = setup();
    // 4,883 files of 4 KiB to apply: time to send a signal meanwhile.
    let cell = "#pragma repeat --iterations 1 --max-by 'cat score'\n\
                head -c 20000000 /dev/zero | split -b 4096 -a 5 - f\n";
    std::fs::write(dir.path().join("cell"), cell).unwrap();
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
        .args(["run", "cell", "--state", "state"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let state = dir.path().join("state");
    let applying = || {
        std::fs::read_dir(&state)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".pragma-apply"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !applying() {
        assert!(
            std::time::Instant::now() < deadline,
            "the apply did not start"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = std::time::Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    // Stopped at the next file; keeping the result (a snapshot of it)
    // takes what it takes on a loaded machine, but the command ends.
    assert!(sent.elapsed() < Duration::from_secs(90), "it stopped");
    assert!(
        stderr.contains("stopped by a signal: the result is kept"),
        "{stderr}"
    );
    // The state is as it was, without leftovers; the result applies later.
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["score"]);
    let op = only_op(dir.path());
    pragma()
        .args(["apply", &op])
        .current_dir(dir.path())
        .timeout(Duration::from_secs(120))
        .assert()
        .code(0);
    assert!(state.join("faaaaa").is_file());
}

#[test]
fn a_body_of_plain_commands_fails_and_scores_as_in_a_subshell() {
    // Plain commands run in the scoring shell itself (no subshell):
    // the last one's status is the body's, its error is reported, and
    // only a body that succeeded is scored.
    let dir = setup();
    let cell = "#pragma parallel --iterations 3 --max-by 'echo $iteration'\n\
                ls no-such-$iteration\n\
                test $iteration -eq 1\n";
    let (_, last) = run_cell_json(dir.path(), cell, &["--retries", "0"]);
    assert_eq!(
        last["best"],
        serde_json::json!({"iteration": 1, "score": 1.0}),
        "{last}"
    );
    let failed = last["failed_iterations"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{last}");
    for failure in failed {
        let error = failure["error"].as_str().unwrap();
        assert!(
            error.starts_with("the body failed with exit code 1: ls: ")
                && error.contains("no-such-"),
            "{error}"
        );
    }
}

#[test]
fn a_candidate_scored_in_the_bodys_shell_scores_as_on_its_own() {
    let dir = setup();
    std::fs::create_dir(dir.path().join("state/sub")).unwrap();
    // The body's `cd`, variables and `exit` stay its own; the score
    // command reads no input; a failing one makes the candidate invalid.
    let cell = "#pragma parallel --iterations 4 --max-by 'test -z \"$x\" && read line; \
                if [ $iteration = 3 ]; then echo nope >&2; exit 1; fi; cat n'\n\
                x=1; echo $iteration > n; cd sub; echo no > n; \
                if [ $iteration = 2 ]; then exit 0; fi\n";
    let out = run_cell(dir.path(), cell, &["--json"])
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let scores: std::collections::BTreeMap<u64, serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "iteration_finished")
        .map(|e| (e["iteration"].as_u64().unwrap(), e.clone()))
        .collect();
    assert_eq!(scores[&0]["score"], 0.0, "{text}");
    assert_eq!(scores[&2]["score"], 2.0, "{text}");
    let invalid = scores[&3]["invalid"].as_str().unwrap();
    assert!(
        invalid.contains("exit status: 1") && invalid.contains("nope"),
        "{invalid}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["best"]["iteration"], 2, "{last}");
}
