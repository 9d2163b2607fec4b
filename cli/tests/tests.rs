//! The `pragma` binary as a user runs it.

use assert_cmd::Command;
use predicates::prelude::*;

fn pragma() -> Command {
    Command::cargo_bin("pragma").unwrap()
}

/// The cells of the product page, as fixtures.
fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

mod check {
    use super::*;

    #[test]
    fn a_valid_cell_prints_its_canonical_directive() {
        pragma()
            .args(["check", &fixture("repeat-keras.cell")])
            .assert()
            .code(0)
            .stdout("#pragma repeat --iterations 20 --checkpoint-period 5 --iteration-var iteration --max-by 'model.evaluate(x_test, y_test, verbose=0)[1]'\n")
            .stderr("");
    }

    #[test]
    fn json_output_has_the_documented_fields() {
        let out = pragma()
            .args(["check", "--json", &fixture("parallel-keras.cell")])
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["kind"], "parallel");
        assert_eq!(json["iterations"], 20);
        assert_eq!(json["parallel_runs"], 5);
        assert_eq!(json["iteration_var"], "var");
        assert_eq!(json["select"]["objective"], "max");
        assert_eq!(
            json["select"]["expr"],
            "model.evaluate(x_test, y_test, verbose=0)[1]"
        );
        assert_eq!(json["body_line"], 2);
    }

    #[test]
    fn json_for_parallel_without_runs_and_for_async() {
        let dir = tempfile::tempdir().unwrap();
        let cell = dir.path().join("c.cell");
        std::fs::write(&cell, "#pragma parallel --iterations 3 --min-by loss\n").unwrap();
        let out = pragma()
            .args(["check", "--json"])
            .arg(&cell)
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(json["parallel_runs"].is_null());
        assert_eq!(json["select"]["objective"], "min");

        pragma()
            .args(["check", "--json", "-"])
            .write_stdin("#pragma async\nsleep 1\n")
            .assert()
            .code(0)
            .stdout(predicate::str::starts_with(r#"{"kind":"async","#));
    }

    #[test]
    fn an_invalid_cell_exits_2_with_a_rustc_style_report() {
        let dir = tempfile::tempdir().unwrap();
        let cell = dir.path().join("typo.cell");
        std::fs::write(&cell, "#pragma repeat --iteratons 20 --max-by acc\nbody\n").unwrap();
        let name = cell.display().to_string();
        pragma()
            .arg("check")
            .arg(&cell)
            .assert()
            .code(2)
            .stdout("")
            .stderr(format!(
                "error: unknown option `--iteratons`\n --> {name}:1:16\n  |\n1 | #pragma repeat --iteratons 20 --max-by acc\n  |                ^^^^^^^^^^^\n  = help: did you mean `--iterations`?\n"
            ));
    }

    #[test]
    fn standard_input_is_named_in_reports() {
        pragma()
            .args(["check", "-"])
            .write_stdin("#pragma paralel --iterations 2 --max-by a\n")
            .assert()
            .code(2)
            .stderr(predicate::str::contains(" --> <stdin>:1:9\n"))
            .stderr(predicate::str::contains("did you mean `parallel`?"));
    }

    #[test]
    fn a_missing_file_exits_2_with_a_clear_message() {
        pragma()
            .args(["check", "no/such/cell.cell"])
            .assert()
            .code(2)
            .stderr(predicate::str::starts_with(
                "error: cannot read cell `no/such/cell.cell`: ",
            ));
    }

    #[test]
    fn a_binary_file_exits_2_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let cell = dir.path().join("bin.cell");
        std::fs::write(&cell, b"#pragma async\n\xff\xfe").unwrap();
        pragma()
            .arg("check")
            .arg(&cell)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "not UTF-8 text (invalid byte at offset 14)",
            ));
    }

    #[test]
    fn usage_errors_exit_2() {
        pragma().arg("check").assert().code(2);
        pragma().arg("frobnicate").assert().code(2);
    }
}

mod run {
    use super::*;
    use std::path::Path;

    fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect()
    }

    fn cell(dir: &Path, text: &str) -> std::path::PathBuf {
        let path = dir.join("cell");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run(dir: &Path, cell: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
        pragma()
            .arg("run")
            .arg(cell)
            .arg("--state")
            .arg(dir.join("state"))
            .arg("--store")
            .arg(dir.join("store"))
            .args(extra)
            .assert()
    }

    fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state/kept"), "untouched\n").unwrap();
        dir
    }

    #[test]
    fn a_parallel_cell_applies_the_best_state_and_reports_json() {
        let dir = setup();
        let cell = cell(
            dir.path(),
            "#pragma parallel --iterations 6 --parallel-runs 3 --iteration-var i --max-by 'cat score'\n\
             echo $(( (i * 7) % 5 )) > score\necho \"seed $PRAGMA_SEED\" > seed\n",
        );
        let out = run(dir.path(), &cell, &["--json"])
            .code(0)
            .get_output()
            .stdout
            .clone();
        let lines = json_lines(&out);
        let last = lines.last().unwrap();
        assert_eq!(last["event"], "finished");
        assert_eq!(last["status"], "succeeded");
        assert_eq!(last["best"]["iteration"], 2);
        assert_eq!(last["best"]["score"], 4.0);
        assert_eq!(last["iterations_run"], 6);
        assert_eq!(last["failed_iterations"], serde_json::json!([]));
        assert_eq!(last["conflicts"], serde_json::json!([]));
        assert!(last["usage"]["worker_seconds"].as_f64().unwrap() > 0.0);
        assert!(last["op"].as_str().unwrap().starts_with("op-"));
        let finished = lines
            .iter()
            .filter(|l| l["event"] == "iteration_finished")
            .count();
        assert_eq!(finished, 6);
        let state = dir.path().join("state");
        assert_eq!(std::fs::read_to_string(state.join("score")).unwrap(), "4\n");
        assert_eq!(
            std::fs::read_to_string(state.join("kept")).unwrap(),
            "untouched\n"
        );
        assert!(
            !state.join("i").exists(),
            "the iteration variable is an environment variable, not a file"
        );
    }

    #[test]
    fn a_failing_body_is_retried_then_fails_with_exit_code_1() {
        let dir = setup();
        let cell = cell(
            dir.path(),
            "#pragma repeat --iterations 2 --max-by 'echo 1'\necho oops >&2; exit 3\n",
        );
        let out = run(dir.path(), &cell, &["--json", "--retries", "1"])
            .code(1)
            .get_output()
            .stdout
            .clone();
        let lines = json_lines(&out);
        let last = lines.last().unwrap();
        assert_eq!(last["status"], "failed");
        assert_eq!(last["best"], serde_json::Value::Null);
        assert_eq!(last["failed_iterations"][0]["iteration"], 0);
        assert_eq!(
            last["failed_iterations"][0]["error"],
            "the body failed with exit code 3: oops"
        );
        assert_eq!(last["iterations_run"], 2);
        assert_eq!(
            std::fs::read_dir(dir.path().join("state")).unwrap().count(),
            1,
            "nothing applied"
        );
    }

    #[test]
    fn a_score_that_is_not_a_number_makes_the_candidate_invalid() {
        let dir = setup();
        let cell = cell(
            dir.path(),
            "#pragma parallel --iterations 2 --max-by 'echo high'\ntrue\n",
        );
        let out = run(dir.path(), &cell, &["--json"])
            .code(1)
            .get_output()
            .stdout
            .clone();
        let lines = json_lines(&out);
        let invalid = lines
            .iter()
            .find(|l| l["event"] == "iteration_finished")
            .unwrap();
        assert!(
            invalid["invalid"]
                .as_str()
                .unwrap()
                .starts_with("`high` is not a number"),
            "{invalid}"
        );
        assert!(
            lines.last().unwrap()["reason"]
                .as_str()
                .unwrap()
                .starts_with("no valid result")
        );
    }

    #[test]
    fn bad_input_exits_2() {
        let dir = setup();
        let bad = cell(
            dir.path(),
            "#pragma repeat --iteratons 2 --max-by x\ntrue\n",
        );
        run(dir.path(), &bad, &[])
            .code(2)
            .stderr(predicate::str::contains("did you mean `--iterations`?"));
        let good = cell(dir.path(), "#pragma async\ntrue\n");
        pragma()
            .args(["run"])
            .arg(&good)
            .arg("--state")
            .arg(dir.path().join("missing"))
            .assert()
            .code(2)
            .stderr(predicate::str::contains("is not a directory"));
    }

    #[test]
    fn files_changed_on_both_sides_are_conflicts_left_unapplied() {
        let dir = setup();
        std::fs::write(dir.path().join("state/shared"), "before\n").unwrap();
        // The body also edits the live directory, as a user would meanwhile.
        let cell = cell(
            dir.path(),
            "#pragma async\necho background > shared; echo new > created; echo live > \"$LIVE/shared\"\n",
        );
        let live = dir.path().join("state");
        let out = pragma()
            .arg("run")
            .arg(&cell)
            .arg("--state")
            .arg(&live)
            .arg("--store")
            .arg(dir.path().join("store"))
            .arg("--json")
            .env("LIVE", &live)
            .assert()
            .code(3)
            .get_output()
            .stdout
            .clone();
        let last = json_lines(&out).pop().unwrap();
        assert_eq!(last["conflicts"], serde_json::json!(["shared"]));
        assert_eq!(
            std::fs::read_to_string(live.join("shared")).unwrap(),
            "live\n"
        );
        assert_eq!(
            std::fs::read_to_string(live.join("created")).unwrap(),
            "new\n"
        );
    }

    #[test]
    fn a_run_killed_with_sigkill_resumes_from_its_last_checkpoint() {
        use std::io::{BufRead, BufReader};
        let dir = setup();
        let cell = cell(
            dir.path(),
            "#pragma repeat --iterations 6 --checkpoint-period 1 --max-by 'cat count'\n\
             sleep 0.2; echo $(( $(cat count 2>/dev/null || echo 0) + 1 )) > count\n",
        );
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
            .arg("run")
            .arg(&cell)
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--store")
            .arg(dir.path().join("store"))
            .arg("--json")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("a checkpoint before the end").unwrap();
            if line.contains("\"checkpoint_committed\"") && line.contains("\"iterations_done\":2") {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let out = run(dir.path(), &cell, &["--json"])
            .code(0)
            .get_output()
            .stdout
            .clone();
        let lines = json_lines(&out);
        let resumed = lines
            .iter()
            .find(|l| l["event"] == "resumed")
            .expect("a resumed event");
        assert!(
            resumed["iterations_done"].as_u64().unwrap() >= 2,
            "{resumed}"
        );
        let last = lines.last().unwrap();
        assert_eq!(last["status"], "succeeded");
        assert_eq!(last["best"]["iteration"], 5);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("state/count")).unwrap(),
            "6\n"
        );
    }
}

mod interactive {
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
}

mod inspect {
    use super::*;

    #[test]
    fn status_report_and_logs_show_a_finished_operation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let cell = dir.path().join("cell");
        std::fs::write(
            &cell,
            "#pragma repeat --iterations 4 --checkpoint-period 2 --max-by 'cat n'\n\
             echo $(( $(cat n 2>/dev/null || echo 0) + 1 )) > n; echo \"ran $iteration\"; echo warn >&2\n",
        )
        .unwrap();
        let store = dir.path().join("store");
        let out = pragma()
            .arg("run")
            .arg(&cell)
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--store")
            .arg(&store)
            .arg("--json")
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        let last: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out).lines().last().unwrap()).unwrap();
        let op = last["op"].as_str().unwrap().to_owned();

        let status = pragma()
            .args(["status", "--json", "--store"])
            .arg(&store)
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
        assert_eq!(status["op"], op);
        assert_eq!(status["status"]["status"], "succeeded");
        assert_eq!(
            (status["done"].as_u64(), status["iterations"].as_u64()),
            (Some(4), Some(4))
        );

        let svg = dir.path().join("chart.svg");
        pragma()
            .args(["report", &op, "--store"])
            .arg(&store)
            .arg("--svg")
            .arg(&svg)
            .assert()
            .code(0)
            .stdout(predicate::str::contains(
                "checkpoint after iteration  score",
            ))
            .stdout(predicate::str::contains("3  4  <- best"));
        let chart = std::fs::read_to_string(&svg).unwrap();
        assert!(
            chart.starts_with("<svg") && chart.contains("crimson"),
            "{chart}"
        );

        pragma()
            .args(["logs", &op, "--iteration", "2", "--store"])
            .arg(&store)
            .assert()
            .code(0)
            .stdout(
                "== iteration 2 attempt 1 stdout\nran 2\n== iteration 2 attempt 1 stderr\nwarn\n",
            );
        pragma()
            .args(["report", "op-nope", "--store"])
            .arg(&store)
            .assert()
            .code(2);
        pragma()
            .args(["status", "--store"])
            .arg(dir.path().join("none"))
            .assert()
            .code(2);
    }
}
