//! Bodies that ask for input interrupt the operation.

use super::*;

fn run_cell(body: &str) -> (i32, serde_json::Value, std::time::Duration) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let cell = dir.path().join("cell");
    std::fs::write(
        &cell,
        format!("#pragma parallel --iterations 2 --max-by 'echo 1'\n{body}\n"),
    )
    .unwrap();
    let begin = std::time::Instant::now();
    let output = pragma()
        .arg("run")
        .arg(&cell)
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--store")
        .arg(dir.path().join("store"))
        .arg("--json")
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let last = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap()
        .to_owned();
    (
        output.status.code().unwrap(),
        serde_json::from_str(&last).unwrap(),
        begin.elapsed(),
    )
}

#[test]
fn a_body_that_reads_its_input_is_interrupted_naming_the_iteration() {
    for body in [
        "read answer; echo \"$answer\" > out",
        "python3 -c 'input(\"name? \")'",
    ] {
        let (code, last, _) = run_cell(body);
        assert_eq!(code, 4, "{body}: {last}");
        assert_eq!(last["status"], "interrupted");
        let reason = last["reason"].as_str().unwrap();
        assert!(reason.starts_with("iteration "), "{reason}");
        assert!(
            reason.contains("waits to read its standard input"),
            "{reason}"
        );
        assert_eq!(last["best"], serde_json::Value::Null);
    }
}

#[test]
fn a_body_that_never_reads_is_unaffected() {
    let (code, last, _) = run_cell("sleep 1.2; echo done > out");
    assert_eq!(code, 0, "{last}");
    assert_eq!(last["status"], "succeeded");
}
