//! What a careless body does to a run: background children, huge output,
//! special files.

use std::process::Command as Std;
use std::time::Duration;

use super::*;

fn run_cell(cell_text: &str) -> (Fixture, assert_cmd::assert::Assert) {
    let dir = Fixture::with_cell(cell_text);
    let assert = dir.run(&["--retries", "0"], Duration::from_secs(60));
    (dir, assert)
}

/// Whether a process whose command line contains `needle` runs.
fn running(needle: &str) -> bool {
    Std::new("pgrep")
        .args(["-f", needle])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn an_iteration_ends_with_its_shell_and_its_background_children_die() {
    let (dir, assert) = run_cell(
        "#pragma repeat --iterations 2 --max-by 'sleep 1033 & cat score'\nsleep 1031 &\necho $((iteration + 1)) > score\n",
    );
    assert.code(0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state/score")).unwrap(),
        "2\n"
    );
    assert!(
        !running("sleep 103[13]"),
        "background children were left running"
    );
}

#[test]
fn a_body_printing_more_than_the_cap_keeps_the_first_16_mib_and_says_so() {
    let (dir, assert) = run_cell(
        "#pragma repeat --iterations 1 --max-by 'cat score'\nhead -c 40000000 /dev/zero; echo 1 > score\n",
    );
    assert.code(0);
    let logs = dir.path().join(".pragma/logs");
    let op = std::fs::read_dir(&logs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log = std::fs::read(op.join("0-1.out")).unwrap();
    let cap = 16 << 20;
    assert!(log.len() > cap && log.len() < cap + 200, "{}", log.len());
    let note = String::from_utf8_lossy(&log[cap..]);
    assert!(
        note.contains(&format!("{} more bytes not kept", 40_000_000 - cap)),
        "{note}"
    );
}

#[test]
fn a_body_that_leaves_a_fifo_fails_naming_it_and_nothing_is_applied() {
    let (dir, assert) = run_cell(
        "#pragma repeat --iterations 1 --max-by 'cat score'\necho 1 > score; mkfifo pipe\n",
    );
    assert.code(1).stdout(predicate::str::contains(
        "the body left `pipe`, a special file",
    ));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state/score")).unwrap(),
        "0\n"
    );
    assert!(!dir.path().join("state/pipe").exists());
}
