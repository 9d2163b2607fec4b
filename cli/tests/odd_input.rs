//! What a user may hand the command by mistake or by chance: a store
//! inside the state, damaged records, a reserved iteration variable,
//! control characters, CRLF cells.

use std::time::Duration;

use super::*;

/// Writes `cell_text` as the cell, then runs `pragma run cell --state
/// state` in `dir`.
fn run_cell(dir: &std::path::Path, cell_text: &str) -> assert_cmd::assert::Assert {
    run_cell_with(dir, cell_text, &[], Duration::from_secs(30))
}

#[test]
fn a_store_inside_the_state_is_refused_before_anything_is_written() {
    let dir = setup();
    for (cwd, store) in [
        ("state", None),
        (".", Some("state/x")),
        (".", Some("state")),
        (".", Some("./state/../state/deeper/still")),
    ] {
        let mut command = pragma();
        command
            .arg("run")
            .arg(dir.path().join("cell"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .current_dir(dir.path().join(cwd));
        if let Some(store) = store {
            command.args(["--store", store]);
        }
        command
            .assert()
            .code(2)
            .stderr(predicate::str::contains("would be inside the state"));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["score"], "{cwd} {store:?}: nothing is written");
    }
}

#[test]
fn a_damaged_record_is_named_and_the_next_run_says_it_starts_anew() {
    let dir = setup();
    // An interrupted operation (exit 4) leaves its record.
    run_cell(
        dir.path(),
        "#pragma repeat --iterations 1 --max-by 'cat score'\nread x\n",
    )
    .code(4);
    let op = only_op(dir.path());
    let ops = dir.path().join(".pragma/ops");
    let record = ops.join(&op).join("run.json");
    std::fs::write(&record, "{garbage").unwrap();
    pragma()
        .args(["wait", &op])
        .current_dir(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "run.json` is damaged: key must be a string",
        ));
    pragma()
        .args(["apply", &op])
        .current_dir(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is damaged"));
}

#[test]
fn cancel_signals_only_a_pragma_runner_whatever_the_record_says() {
    let dir = setup();
    run_cell(
        dir.path(),
        "#pragma repeat --iterations 1 --max-by 'cat score'\nread x\n",
    )
    .code(4);
    let op = only_op(dir.path());
    let ops = dir.path().join(".pragma/ops");
    // An unrelated process, named in the record with its true start time.
    let mut bystander = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", bystander.id())).unwrap();
    let started: u64 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let path = ops.join(&op).join("run.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["runner"] = serde_json::json!({ "pid": bystander.id(), "started": started });
    std::fs::write(&path, record.to_string()).unwrap();
    pragma()
        .args(["cancel", &op])
        .current_dir(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not pragma (it runs `"))
        .stderr(predicate::str::contains("--forget"));
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander was signalled"
    );
    bystander.kill().unwrap();
    let _ = bystander.wait();
}

#[test]
fn an_iteration_variable_the_shell_or_pragma_needs_is_refused() {
    let dir = setup();
    for var in ["PATH", "IFS", "PRAGMA_SEED", "PRAGMA_RUNNER"] {
        run_cell(
            dir.path(),
            &format!(
                "#pragma parallel --iterations 2 --iteration-var {var} --max-by 'cat score'\ntrue\n"
            ),
        )
        .code(2)
        .stderr(predicate::str::contains(format!(
            "`--iteration-var {var}` in `cell`"
        )));
    }
    assert!(!dir.path().join(".pragma").exists(), "nothing ran");
}

#[test]
fn names_with_control_characters_are_shown_escaped() {
    let dir = setup();
    let forged = "a\nsucceeded: everything fine\u{1b}[2J";
    std::fs::write(dir.path().join("state").join(forged), "0").unwrap();
    // The body changes the file while the state directory changes it
    // too: a conflict, printed by name.
    std::fs::write(
        dir.path().join("cell"),
        "#pragma repeat --iterations 1 --max-by 'cat score'\n\
         echo 1 > score; for f in a*; do echo 2 > \"$f\"; done; sleep 0.3\n",
    )
    .unwrap();
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
        .args(["run", "cell", "--state", "state"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    std::fs::write(dir.path().join("state").join(forged), "3").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("a\\nsucceeded: everything fine\\u{1b}[2J"),
        "{stdout}"
    );
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with("succeeded: everything")),
        "{stdout}"
    );
    pragma()
        .args(["status", "op-\u{1b}[31mred"])
        .current_dir(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("\\u{1b}[31mred"));
}

#[test]
fn a_cell_with_crlf_line_endings_runs_as_with_lf() {
    let dir = setup();
    run_cell(
        dir.path(),
        "#pragma repeat --iterations 2 --max-by \"cat score\"\r\necho $((iteration + 1)) > score\r\n",
    )
    .code(0)
        .stdout(predicate::str::contains("score 2"));
    let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["score"], "no file named `score\\r`");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state/score")).unwrap(),
        "2\n"
    );
}

#[test]
fn the_output_of_an_interrupted_run_is_logged() {
    let dir = setup();
    run_cell(
        dir.path(),
        "#pragma repeat --iterations 1 --max-by 'cat score'\necho before the question; read answer\n",
    )
    .code(4);
    let op = only_op(dir.path());
    pragma()
        .arg("logs")
        .arg(&op)
        .current_dir(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("before the question"));
}
