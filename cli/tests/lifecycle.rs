//! What the lifecycle library promises, as the command shows it: one run
//! per cell and state, closed pipes, state directories with symlinks.

use std::path::{Path, PathBuf};
use std::process::{Command as Std, Stdio};

use super::*;

fn setup(cell_text: &str) -> (Fixture, PathBuf) {
    let dir = Fixture::with_cell(cell_text);
    let cell = dir.cell();
    (dir, cell)
}

/// `pragma ARGS --store DIR/store` with standard output a pipe whose
/// reading end is closed, in `dir`.
fn into_closed_pipe(dir: &Path, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = Std::new(assert_cmd::cargo::cargo_bin("pragma"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn every_subcommand_into_a_closed_pipe_exits_as_usual_without_a_panic() {
    let (dir, _) = setup(
        "#pragma parallel --iterations 3 --max-by 'cat score'\necho $iteration > score\necho out\n",
    );
    let run = into_closed_pipe(dir.path(), &["run", "cell", "--state", "state", "--json"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state/score")).unwrap(),
        "2\n",
        "the run went on to its end and applied its result"
    );
    let status = pragma()
        .args(["status", "--json"])
        .current_dir(dir.path())
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let op = serde_json::from_slice::<serde_json::Value>(&status).unwrap()["op"]
        .as_str()
        .unwrap()
        .to_owned();
    for args in [
        vec!["check", "cell"],
        vec!["check", "cell", "--json"],
        vec!["status"],
        vec!["status", "--json"],
        vec!["report", &op],
        vec!["logs", &op],
        vec!["wait", &op],
        vec!["wait", &op, "--json"],
        vec!["apply", &op],
        vec!["cancel", &op],
    ] {
        let output = into_closed_pipe(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn two_runs_of_the_same_cell_and_state_at_once_run_one_operation() {
    let (dir, _) = setup(
        "#pragma repeat --iterations 2 --max-by 'cat score'\nsleep 0.5; echo $((iteration + 1)) > score\n",
    );
    let start = || {
        Std::new(assert_cmd::cargo::cargo_bin("pragma"))
            .args(["run", "cell", "--state", "state"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (start(), start());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let codes: Vec<_> = outputs.iter().map(|o| o.status.code()).collect();
    let refused = outputs
        .iter()
        .find(|o| o.status.code() == Some(2))
        .unwrap_or_else(|| panic!("one run must be refused: {codes:?}"));
    assert!(codes.contains(&Some(0)), "{codes:?}");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("of this cell and state is already running (process "),
        "{message}"
    );
    assert!(message.contains("`pragma wait op-"), "{message}");
    let ops = std::fs::read_dir(dir.path().join(".pragma/ops"))
        .unwrap()
        .count();
    assert_eq!(ops, 1, "one operation ran");
}

#[test]
fn a_state_with_symlinks_runs_and_its_links_are_applied_as_links() {
    let (dir, cell) = setup(
        "#pragma repeat --iterations 1 --max-by 'cat score'\n\
         echo 1 > score; ln -sfn elsewhere dangling; ln -s sub new-link\n",
    );
    let state = dir.path().join("state");
    std::fs::create_dir(state.join("sub")).unwrap();
    std::fs::write(state.join("sub/file"), "x").unwrap();
    std::os::unix::fs::symlink("nowhere", state.join("dangling")).unwrap();
    std::os::unix::fs::symlink("sub", state.join("to-dir")).unwrap();
    pragma()
        .arg("run")
        .arg(&cell)
        .arg("--state")
        .arg(&state)
        .current_dir(dir.path())
        .assert()
        .code(0);
    assert_eq!(
        std::fs::read_link(state.join("dangling")).unwrap(),
        Path::new("elsewhere")
    );
    assert_eq!(
        std::fs::read_link(state.join("new-link")).unwrap(),
        Path::new("sub")
    );
    assert_eq!(
        std::fs::read_link(state.join("to-dir")).unwrap(),
        Path::new("sub")
    );
    assert_eq!(std::fs::read_to_string(state.join("score")).unwrap(), "1\n");
}

#[test]
fn a_fifo_in_the_state_is_named_before_anything_runs() {
    let (dir, cell) = setup("#pragma repeat --iterations 1 --max-by 'cat score'\necho 1 > score\n");
    let status = Std::new("mkfifo")
        .arg(dir.path().join("state/f"))
        .status()
        .unwrap();
    assert!(status.success());
    pragma()
        .arg("run")
        .arg(&cell)
        .arg("--state")
        .arg(dir.path().join("state"))
        .current_dir(dir.path())
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/state/f is a special file"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state/score")).unwrap(),
        "0\n"
    );
}
