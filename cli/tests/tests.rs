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

    /// A tmpfs of `size` at `dir`, unmounted on drop; `None` where mounting
    /// is not allowed (not root).
    pub(super) struct Tmpfs(std::path::PathBuf);

    impl Tmpfs {
        pub(super) fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
            std::fs::create_dir_all(dir).unwrap();
            let status = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir)
                .stderr(std::process::Stdio::null())
                .status();
            match status {
                Ok(s) if s.success() => Some(Tmpfs(dir.to_owned())),
                _ => None,
            }
        }

        fn grow(&self, size: &str) {
            let status = std::process::Command::new("mount")
                .args(["-o", &format!("remount,size={size}")])
                .arg(&self.0)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }

    #[test]
    fn a_full_store_stops_the_run_and_the_next_run_resumes_once_there_is_room() {
        let dir = setup();
        let Some(disk) = Tmpfs::mount(&dir.path().join("store"), "2m") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "under CI the full-store test must run (as root)"
            );
            eprintln!(
                "\n*** SKIPPED: full-store test: cannot mount a tmpfs here (needs root) ***\n"
            );
            return;
        };
        // Each iteration adds 300 kB to the state: the third checkpoint no
        // longer fits in 2 MiB.
        let cell = cell(
            dir.path(),
            "#pragma repeat --iterations 6 --max-by 'cat n'\n\
             head -c 300000 /dev/urandom > blob$iteration; echo $(( $(cat n 2>/dev/null || echo 0) + 1 )) > n\n",
        );
        let out = run(dir.path(), &cell, &["--json"])
            .code(1)
            .get_output()
            .stdout
            .clone();
        assert_stopped_by_a_full_disk(dir.path(), &out);
        pragma()
            .args(["status", "--store"])
            .arg(dir.path().join("store"))
            .assert()
            .code(0)
            .stdout(predicate::str::contains("[stopped, resumable]"));

        disk.grow("40m");
        let out = run(dir.path(), &cell, &["--json"])
            .code(0)
            .get_output()
            .stdout
            .clone();
        let events = json_lines(&out);
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "resumed" && e["iterations_done"].as_u64() >= Some(1)),
            "it went on from a checkpoint: {events:?}"
        );
        let last = events.last().unwrap();
        assert_eq!(last["status"], "succeeded", "{last}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("state/n")).unwrap(),
            "6\n"
        );
    }

    #[test]
    fn usage_counts_the_runs_past_the_last_checkpoint_of_a_killed_run() {
        let dir = setup();
        let runs = dir.path().join("runs.log");
        // Every body run leaves a line outside the state: what the test
        // observes, to hold the usage to.
        let cell = cell(
            dir.path(),
            &format!(
                "#pragma repeat --iterations 8 --checkpoint-period 4 --max-by 'cat count'\n\
                 echo run >> {runs:?}; sleep 0.3; echo $(( $(cat count 2>/dev/null || echo 0) + 1 )) > count\n"
            ),
        );
        // Two runs finished past the checkpoint after 4, the third running.
        let mut finished = 0;
        kill_when(dir.path(), &cell, |line| {
            finished += usize::from(line.contains("\"iteration_finished\""));
            finished == 6
        });
        let observed_before = std::fs::read_to_string(&runs).unwrap().lines().count() as u64;
        assert_eq!(observed_before, 7, "six finished, the seventh cut short");

        let out = run(dir.path(), &cell, &["--json"])
            .code(0)
            .get_output()
            .stdout
            .clone();
        let last = json_lines(&out).pop().unwrap();
        let observed = std::fs::read_to_string(&runs).unwrap().lines().count() as u64;
        // 4 checkpointed, 3 run again after the kill (the 2 finished past the
        // checkpoint and the one cut short), then the last one.
        assert_eq!(observed, 11);
        let usage = &last["usage"];
        let (counted, lost) = (
            usage["iterations_run"].as_u64().unwrap(),
            usage["work_lost"].as_u64().unwrap(),
        );
        // Documented bound: the runs of one record interval (100 ms here,
        // shorter than one run) can go uncounted: the one cut short.
        assert!(
            counted <= observed && counted + 1 >= observed,
            "{counted} runs counted, {observed} observed: {last}"
        );
        assert!((2..=3).contains(&lost), "{lost} runs lost: {last}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("state/count")).unwrap(),
            "8\n"
        );
    }

    #[test]
    fn a_damaged_latest_checkpoint_is_named_at_resume_and_an_earlier_one_is_used() {
        let dir = setup();
        let cell = cell(
            dir.path(),
            "#pragma repeat --iterations 6 --checkpoint-period 1 --max-by 'cat count'\n\
             sleep 0.2; echo $(( $(cat count 2>/dev/null || echo 0) + 1 )) > count\n",
        );
        kill_when(dir.path(), &cell, |line| {
            line.contains("\"checkpoint_committed\"") && line.contains("\"iterations_done\":3")
        });
        // Flip a byte of the newest state saved.
        let newest = walk(&dir.path().join("store/store"))
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "state"))
            .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
            .unwrap();
        let mut bytes = std::fs::read(&newest).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&newest, bytes).unwrap();

        let assert = run(dir.path(), &cell, &[]).code(0);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(
            stderr.contains("is damaged and was skipped")
                && stderr.contains("resuming from an earlier one"),
            "{stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("state/count")).unwrap(),
            "6\n"
        );
    }

    /// Every file under `dir`.
    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                files.extend(walk(&entry.path()));
            } else {
                files.push(entry.path());
            }
        }
        files
    }

    #[test]
    fn a_full_disk_while_copying_the_state_stops_the_run_instead_of_failing_it() {
        let dir = setup();
        let Some(disk) = Tmpfs::mount(&dir.path().join("store"), "1m") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "under CI the full-store test must run (as root)"
            );
            eprintln!(
                "\n*** SKIPPED: full-store test: cannot mount a tmpfs here (needs root) ***\n"
            );
            return;
        };
        std::fs::write(dir.path().join("state/blob"), vec![7u8; 350_000]).unwrap();
        // The submission's snapshot and two working copies of the state do
        // not fit in 1 MiB: copying the state runs out of room.
        let cell = cell(
            dir.path(),
            "#pragma parallel --iterations 4 --max-by 'cat n'\necho $iteration > n\n",
        );
        let out = run(
            dir.path(),
            &cell,
            &["--json", "--workers", "2", "--retries", "0"],
        )
        .code(1)
        .get_output()
        .stdout
        .clone();
        assert_stopped_by_a_full_disk(dir.path(), &out);
        disk.grow("40m");
        let out = run(dir.path(), &cell, &["--json", "--workers", "2"])
            .code(0)
            .get_output()
            .stdout
            .clone();
        let last = json_lines(&out).pop().unwrap();
        assert_eq!(
            last["status"], "succeeded",
            "the same operation resumes: {last}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("state/n")).unwrap(),
            "3\n"
        );
    }

    /// The run whose JSON output is `out` stopped on a full disk, with
    /// nothing applied to `dir`'s state.
    fn assert_stopped_by_a_full_disk(dir: &Path, out: &[u8]) {
        let last = json_lines(out).pop().unwrap();
        assert_eq!(last["status"], "stopped", "{last}");
        assert!(
            last["reason"]
                .as_str()
                .unwrap()
                .contains("No space left on device"),
            "{last}"
        );
        assert!(!dir.join("state/n").exists(), "nothing is applied");
    }

    /// Runs `cell` with `--json` on the setup's state and store, reads its
    /// events until `until` holds for one, and kills it with SIGKILL a
    /// moment later (within the run that comes next).
    fn kill_when(dir: &Path, cell: &Path, mut until: impl FnMut(&str) -> bool) {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
            .arg("run")
            .arg(cell)
            .arg("--state")
            .arg(dir.join("state"))
            .arg("--store")
            .arg(dir.join("store"))
            .arg("--json")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines
                .next()
                .expect("the awaited event before the end")
                .unwrap();
            if until(&line) {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(150));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    #[test]
    fn a_run_killed_with_sigkill_resumes_from_its_last_checkpoint() {
        let dir = setup();
        let cell = cell(
            dir.path(),
            "#pragma repeat --iterations 6 --checkpoint-period 1 --max-by 'cat count'\n\
             sleep 0.2; echo $(( $(cat count 2>/dev/null || echo 0) + 1 )) > count\n",
        );
        kill_when(dir.path(), &cell, |line| {
            line.contains("\"checkpoint_committed\"") && line.contains("\"iterations_done\":2")
        });
        let work = dir.path().join("store/work");
        let left = || std::fs::read_dir(&work).unwrap().count();
        assert_eq!(left(), 1, "the killed run's working copies are left behind");

        let out = run(dir.path(), &cell, &["--json"])
            .code(0)
            .get_output()
            .stdout
            .clone();
        // The rerun took the killed run's copies back, and its own are gone.
        assert_eq!(left(), 0);
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
            chart.starts_with("<svg") && chart.contains("best: iteration 3, score 4"),
            "{chart}"
        );
        // `--svg -`: the chart alone on standard output.
        let out = pragma()
            .args(["report", &op, "--svg", "-", "--store"])
            .arg(&store)
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        assert_eq!(String::from_utf8(out).unwrap(), chart);

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
            .args(["logs", "op-nope", "--store"])
            .arg(&store)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("has no operation `op-nope`"));
        pragma()
            .args(["status", "--store"])
            .arg(dir.path().join("none"))
            .assert()
            .code(2);
    }

    #[test]
    fn logs_of_an_operation_that_printed_nothing_say_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let cell = dir.path().join("cell");
        std::fs::write(&cell, "#pragma async\ntrue\n").unwrap();
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
        pragma()
            .args(["logs", &op, "--store"])
            .arg(&store)
            .assert()
            .code(0)
            .stdout(predicate::str::contains("printed nothing"));
    }
}

/// `submit`, `wait`, `cancel`, `apply`, signals, and bodies of a killed run.
mod control {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::*;

    struct Setup {
        dir: tempfile::TempDir,
    }

    impl Setup {
        fn new() -> Setup {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("state")).unwrap();
            Setup { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn cell(&self, text: &str) -> PathBuf {
            let path = self.path("cell");
            std::fs::write(&path, text).unwrap();
            path
        }

        /// `pragma COMMAND` with `--store` set.
        fn pragma(&self, args: &[&str]) -> Command {
            let mut command = pragma();
            command
                .args(args)
                .arg("--store")
                .arg(self.path("store"))
                .env("OUT", self.dir.path());
            command
        }

        /// `pragma submit`; returns the operation id.
        fn submit(&self, cell: &Path) -> String {
            let out = self
                .pragma(&["submit"])
                .arg(cell)
                .arg("--state")
                .arg(self.path("state"))
                .assert()
                .code(0)
                .stderr(predicate::str::contains("pragma wait op-"))
                .get_output()
                .stdout
                .clone();
            let op = String::from_utf8(out).unwrap().trim().to_owned();
            assert!(op.starts_with("op-"), "{op}");
            op
        }

        /// The JSON status of one operation.
        fn status(&self, op: &str) -> serde_json::Value {
            let out = self
                .pragma(&["status", op, "--json"])
                .assert()
                .code(0)
                .get_output()
                .stdout
                .clone();
            serde_json::from_slice(&out).unwrap()
        }

        /// A std command running `pragma ARGS --store STORE`.
        fn spawn(&self, args: &[&str]) -> std::process::Child {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
                .args(args)
                .arg("--store")
                .arg(self.path("store"))
                .env("OUT", self.dir.path())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        }
    }

    /// Waits until `path` exists (a body got that far).
    fn wait_for_file(path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "{} never appeared",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

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
        let setup = Setup::new();
        let cell = setup.cell(SLOW_PARALLEL);
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
            std::fs::read_to_string(setup.path("state/n")).unwrap(),
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
        let setup = Setup::new();
        let cell = setup.cell(
            "#pragma parallel --iterations 6 --parallel-runs 2 --max-by 'cat n'\n\
             touch \"$OUT/started-$iteration\"; sleep 0.5; echo $iteration > n\n",
        );
        let op = setup.submit(&cell);
        // Iterations 0 and 1 start together; 3 starts once both ended
        // (2 once either did, while the other may still run, as on a
        // loaded CI machine).
        wait_for_file(&setup.path("started-3"));
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
        assert!(!setup.path("state/n").exists(), "nothing is applied");

        let out = setup
            .pragma(&["run"])
            .arg(&cell)
            .arg("--state")
            .arg(setup.path("state"))
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
        let setup = Setup::new();
        let cell = setup.cell(
            "#pragma repeat --iterations 5 --checkpoint-period 1 --max-by 'cat n'\n\
             touch \"$OUT/started-$iteration\"; sleep 0.3; echo $(( $(cat n 2>/dev/null || echo 0) + 1 )) > n\n",
        );
        let state = setup.path("state");
        let child = setup.spawn(&[
            "run",
            cell.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ]);
        wait_for_file(&setup.path("started-2"));
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
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
    fn bodies_die_with_a_run_killed_by_sigkill() {
        let setup = Setup::new();
        let cell = setup.cell(
            "#pragma parallel --iterations 2 --parallel-runs 2 --max-by 'cat n'\n\
             setsid sh -c 'echo $$ > \"$OUT/escaped-$iteration\"; sleep 30' &\n\
             echo $$ > \"$OUT/pid-$iteration\"; sleep 30 & wait\n",
        );
        let state = setup.path("state");
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
            wait_for_file(&setup.path(file));
        }
        let pids: Vec<u32> = files
            .iter()
            .map(|file| {
                // The file may be created before the pid is written.
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    if let Ok(pid) = std::fs::read_to_string(setup.path(file))
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
        let setup = Setup::new();
        let cell = setup.cell(SLOW_PARALLEL);
        let state = setup.path("state");
        let mut child = setup.spawn(&[
            "run",
            cell.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--json",
        ]);
        wait_for_file(&setup.path("started-0"));
        let op = {
            let mut found = None;
            let deadline = Instant::now() + Duration::from_secs(10);
            while found.is_none() {
                assert!(Instant::now() < deadline);
                found = std::fs::read_dir(setup.path("store/ops"))
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
        let record_path = setup.path("store/ops").join(&op).join("run.json");
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
        let setup = Setup::new();
        let state = setup.path("state");
        std::fs::write(state.join("shared"), "before\n").unwrap();
        std::fs::write(state.join("mine"), "before\n").unwrap();
        let cell = setup.cell(
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
        let setup = Setup::new();
        let cell = setup.cell("#pragma parallel 6\ntrue\n");
        setup
            .pragma(&["submit"])
            .arg(&cell)
            .arg("--state")
            .arg(setup.path("state"))
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
        let setup = Setup::new();
        std::fs::write(setup.path("state/given"), "1\n").unwrap();
        // Each iteration starts from the state at submission, even in a
        // directory an earlier iteration used.
        let cell = setup.cell(
            "#pragma parallel --iterations 40 --parallel-runs 2 --max-by 'cat d/e/f'\n\
             test ! -e leak && test \"$(ls)\" = given || exit 1\n\
             echo x > leak; mkdir -p d/e; echo $iteration > d/e/f; chmod -w leak\n",
        );
        setup
            .pragma(&["run"])
            .arg(&cell)
            .arg("--state")
            .arg(setup.path("state"))
            .args(["--retries", "0"])
            .assert()
            .code(0)
            .stdout(predicate::str::contains("succeeded: best iteration 39"));
        assert_eq!(
            std::fs::read_to_string(setup.path("state/d/e/f")).unwrap(),
            "39\n"
        );
    }

    /// The most copies of the state (non-empty working directories, its
    /// own included) any iteration of the cell saw.
    fn most_copies(setup: &Setup, directive: &str) -> usize {
        let counts = setup.path("counts");
        let _ = std::fs::remove_file(&counts);
        let cell = setup.cell(&format!(
            "{directive} --max-by 'cat score'\n\
             n=0; for d in ../state-*; do [ -n \"$(ls -A \"$d\" 2>/dev/null)\" ] && n=$((n+1)); done\n\
             echo $n >> \"$OUT/counts\"; echo $(( (iteration * 7) % 24 )) > score; sleep 0.02\n"
        ));
        setup
            .pragma(&["run"])
            .arg(&cell)
            .arg("--state")
            .arg(setup.path("state"))
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
        let setup = Setup::new();
        std::fs::write(setup.path("state/data"), "x\n").unwrap();
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
        let setup = Setup::new();
        let cell = setup
            .cell("#pragma parallel --iterations 3 --parallel-runs 1 --min-by 'echo 1'\ntrue\n");
        setup
            .pragma(&["run"])
            .arg(&cell)
            .arg("--state")
            .arg(setup.path("state"))
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
        let setup = Setup::new();
        let cell =
            setup.cell("#pragma parallel --iterations 3 --max-by 'cat n'\necho $iteration > n\n");
        let url = format!("s3://{bucket}/cli-{}", std::process::id());
        let s3 = |command: &mut Command| {
            command
                .env("AWS_ENDPOINT", &endpoint)
                .env("AWS_ALLOW_HTTP", "true")
                .env("AWS_REGION", "us-east-1")
                .current_dir(setup.dir.path());
        };
        let mut run = pragma();
        run.arg("run")
            .arg(&cell)
            .arg("--state")
            .arg(setup.path("state"))
            .args(["--store", &url, "--json"]);
        s3(&mut run);
        let out = run.assert().code(0).get_output().stdout.clone();
        let text = String::from_utf8(out).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["best"]["iteration"], 2);
        assert_eq!(
            std::fs::read_to_string(setup.path("state/n")).unwrap(),
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
        assert!(setup.path(".pragma/remote").is_dir());
        assert!(!setup.path(".pragma/store").exists());
    }
}

/// Working copies share blocks with their source where the file system
/// can (reflinks), checked on an XFS image mounted for the test.
mod reflinks {
    use std::path::{Path, PathBuf};
    use std::process::Command as Std;

    use super::*;

    /// An XFS file system on a loop device, unmounted when dropped.
    struct Xfs {
        mount: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Xfs {
        fn mount() -> Result<Xfs, String> {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let image = dir.path().join("xfs.img");
            let mount = dir.path().join("mnt");
            std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
            let file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
            file.set_len(400 << 20).map_err(|e| e.to_string())?;
            let run = |command: &mut Std| -> Result<(), String> {
                let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
                if output.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "{command:?}: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    ))
                }
            };
            run(Std::new("mkfs.xfs").arg("-q").arg(&image))?;
            run(Std::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&mount))?;
            Ok(Xfs { mount, _dir: dir })
        }
    }

    impl Drop for Xfs {
        fn drop(&mut self) {
            let _ = Std::new("umount").arg("-l").arg(&self.mount).status();
        }
    }

    fn run_on(xfs: &Path, cell: &str) -> serde_json::Value {
        std::fs::write(xfs.join("cell"), cell).unwrap();
        let out = pragma()
            .current_dir(xfs)
            .args(["run", "cell", "--state", "state", "--json"])
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        let text = String::from_utf8(out).unwrap();
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    }

    #[test]
    fn working_copies_share_blocks_with_their_source() {
        let xfs = match Xfs::mount() {
            Ok(xfs) => xfs,
            Err(why) => {
                use std::os::unix::fs::MetadataExt;
                let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
                let loop_devices = Path::new("/dev/loop-control").exists();
                assert!(
                    std::env::var_os("CI").is_none() || !root || !loop_devices,
                    "under CI, as root with loop devices, the reflink test must run (.ci/run installs xfsprogs): {why}"
                );
                eprintln!("\n*** SKIPPED: reflink test: cannot mount an XFS image: {why} ***\n");
                return;
            }
        };
        let state = xfs.mount.join("state");
        std::fs::create_dir(&state).unwrap();
        let big: Vec<u8> = (0..32u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        std::fs::write(state.join("big"), &big).unwrap();
        // Each iteration scores 1 if its copy of `big` shares all its
        // extents, 0 if any was copied byte by byte.
        let score = "filefrag -v big | awk '/^ *[0-9]+:/ { n++; if ($0 ~ /shared/) s++ } END { print (n > 0 && n == s) ? 1 : 0 }'";
        let parallel = run_on(
            &xfs.mount,
            &format!("#pragma parallel --iterations 3 --min-by \"{score}\"\necho $iteration > n\n"),
        );
        assert_eq!(parallel["best"]["score"], 1.0, "{parallel}");
        let repeat = run_on(
            &xfs.mount,
            &format!(
                "#pragma repeat --iterations 3 --checkpoint-period 1 --min-by \"{score}\"\necho $iteration > n\n"
            ),
        );
        assert_eq!(repeat["best"]["score"], 1.0, "{repeat}");
        assert_eq!(std::fs::read(state.join("big")).unwrap(), big);
    }
}

/// `--backend slurm` against a real cluster: `scripts/start-slurm` starts
/// one on this machine (as `.ci/run` does) and sets `PRAGMA_TEST_SLURM`.
mod slurm {
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

    struct Setup {
        dir: tempfile::TempDir,
    }

    impl Setup {
        fn new() -> Setup {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("state")).unwrap();
            std::fs::write(dir.path().join("state/base"), "5\n").unwrap();
            Setup { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn cell(&self, text: &str) -> PathBuf {
            let path = self.path("cell");
            std::fs::write(&path, text).unwrap();
            path
        }

        /// `pragma run CELL --backend slurm` in the background, its
        /// standard output piped.
        fn spawn_run(&self, cell: &Path, extra: &[&str]) -> std::process::Child {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
                .arg("run")
                .arg(cell)
                .arg("--state")
                .arg(self.path("state"))
                .arg("--store")
                .arg(self.path("store"))
                .args(["--backend", "slurm"])
                .args(extra)
                .env("OUT", self.dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        }

        fn run(&self, cell: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
            let output = pragma()
                .arg("run")
                .arg(cell)
                .arg("--state")
                .arg(self.path("state"))
                .arg("--store")
                .arg(self.path("store"))
                .arg("--json")
                .args(extra)
                .env("OUT", self.dir.path())
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
    }

    /// Lines of `$OUT/NAME`, as bodies append them.
    fn lines(setup: &Setup, name: &str) -> Vec<String> {
        std::fs::read_to_string(setup.path(name))
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
        let local = Setup::new();
        let (code, here) = local.run(&local.cell(PARALLEL), &[]);
        assert_eq!(code, 0, "{here}");
        let remote = Setup::new();
        let (code, there) = remote.run(&remote.cell(PARALLEL), &["--backend", "slurm"]);
        assert_eq!(code, 0, "{there}");
        assert_eq!(there["best"], here["best"]);
        assert_eq!(there["best"]["iteration"], 4);
        assert_eq!(there["iterations_run"], 6);
        assert_eq!(
            std::fs::read_to_string(remote.path("state/score")).unwrap(),
            "6\n"
        );
        let mut ran = lines(&remote, "ran");
        ran.sort();
        assert_eq!(ran, ["0", "1", "2", "3", "4", "5"], "each iteration once");
        // The logs of the tasks are where `pragma logs` finds them.
        let op = there["op"].as_str().unwrap();
        pragma()
            .args(["report", op, "--store"])
            .arg(remote.path("store"))
            .assert()
            .code(0)
            .stdout(predicate::str::contains("4  6  <- best"));
        pragma()
            .args(["logs", op, "--iteration", "4", "--store"])
            .arg(remote.path("store"))
            .assert()
            .code(0)
            .stdout(predicate::str::contains("said 4"));
    }

    #[test]
    fn an_async_cell_runs_as_one_slurm_job() {
        if !cluster() {
            return;
        }
        let setup = Setup::new();
        let cell = setup.cell(
            "#pragma async\n\
             echo \"$SLURM_JOB_ID\" > job; echo $(( $(cat base) * 2 )) > doubled\n",
        );
        let (code, outcome) = setup.run(&cell, &["--backend", "slurm"]);
        assert_eq!(code, 0, "{outcome}");
        assert_eq!(outcome["iterations_run"], 1, "{outcome}");
        assert_eq!(
            std::fs::read_to_string(setup.path("state/doubled")).unwrap(),
            "10\n"
        );
        // It ran in a SLURM job, not in the coordinator.
        let job = std::fs::read_to_string(setup.path("state/job")).unwrap();
        assert!(job.trim().parse::<u64>().is_ok(), "{job:?}");
    }

    #[test]
    fn a_failing_task_uses_the_retry_budget() {
        if !cluster() {
            return;
        }
        let setup = Setup::new();
        let cell = setup.cell(
            "#pragma parallel --iterations 4 --parallel-runs 2 --max-by 'cat score'\n\
             if [ $iteration = 2 ] && [ ! -e \"$OUT/failed-once\" ]; then touch \"$OUT/failed-once\"; echo boom >&2; exit 3; fi\n\
             echo $iteration > score\n",
        );
        let (code, outcome) = setup.run(&cell, &["--backend", "slurm"]);
        assert_eq!(code, 0, "{outcome}");
        assert_eq!(outcome["best"]["iteration"], 3);
        assert_eq!(outcome["iterations_run"], 5, "one retry");
        // Out of retries, the iteration fails the operation's candidate list.
        let setup = Setup::new();
        let cell = setup.cell(
            "#pragma parallel --iterations 3 --parallel-runs 3 --max-by 'cat score'\n\
             [ $iteration = 1 ] && exit 3; echo $iteration > score\n",
        );
        let (_, outcome) = setup.run(&cell, &["--backend", "slurm", "--retries", "1"]);
        assert_eq!(outcome["failed_iterations"][0]["iteration"], 1, "{outcome}");
        assert_eq!(outcome["iterations_run"], 4, "{outcome}");
    }

    #[test]
    fn nothing_from_the_cell_or_paths_reaches_a_shell_unquoted() {
        if !cluster() {
            return;
        }
        let setup = Setup::new();
        // A state directory and a store whose names are shell syntax. (The
        // payloads name their files through variables: one path component
        // cannot hold a slash.)
        let nasty = "st ;$(touch \"$PWNED1\")\n`touch \"$PWNED2\"` 'q\" x";
        let state = setup.path(nasty);
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join("base"), "2\n").unwrap();
        let cell = setup.cell(
            "#pragma parallel --iterations 3 --parallel-runs 3 --max-by 'cat \"sc ore\" # $(touch \"$OUT/pwned3\")'\n\
             printf '%s\\n' \"$iteration\" > \"sc ore\"; echo ';$(touch \"$OUT/pwned4\")`x`'\n",
        );
        let output = pragma()
            .arg("run")
            .arg(&cell)
            .arg("--state")
            .arg(&state)
            .arg("--store")
            .arg(setup.path("store ;$(touch \"$PWNED5\")\nx"))
            .args([
                "--json",
                "--backend",
                "slurm",
                "--sbatch-arg=--comment=$(touch \"$PWNED6\");`y`",
            ])
            .env("OUT", setup.dir.path())
            .envs((1..=6).map(|n| (format!("PWNED{n}"), setup.path(&format!("pwned{n}")))))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(last["status"], "succeeded", "{last}");
        assert_eq!(last["best"]["iteration"], 2);
        for n in 1..=6 {
            assert!(!setup.path(&format!("pwned{n}")).exists(), "pwned{n}");
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
        let setup = Setup::new();
        let cell = setup.cell(
            "#pragma parallel --iterations 8 --parallel-runs 2 --max-by 'cat score'\n\
             touch \"$OUT/started-$iteration\"; sleep 60; echo 1 > score\n",
        );
        let out = pragma()
            .arg("submit")
            .arg(&cell)
            .arg("--state")
            .arg(setup.path("state"))
            .arg("--store")
            .arg(setup.path("store"))
            .args(["--backend", "slurm"])
            .env("OUT", setup.dir.path())
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        let op = String::from_utf8(out).unwrap().trim().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !setup.path("started-0").exists() {
            assert!(Instant::now() < deadline, "no task started");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(queued(&op) > 0);
        pragma()
            .args(["cancel", &op, "--store"])
            .arg(setup.path("store"))
            .assert()
            .code(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while queued(&op) > 0 {
            assert!(Instant::now() < deadline, "the array is still queued");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            !setup.path("started-7").exists(),
            "later tasks never started"
        );
    }

    #[test]
    fn cancel_stops_an_array_whose_coordinator_was_killed() {
        if !cluster() {
            return;
        }
        let setup = Setup::new();
        let cell = setup.cell(
            "#pragma parallel --iterations 8 --parallel-runs 2 --max-by 'cat score'\n\
             touch \"$OUT/started-$iteration\"; sleep 60; echo 1 > score\n",
        );
        let mut child = setup.spawn_run(&cell, &[]);
        let op = op_of(&setup);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !setup.path("started-0").exists() {
            assert!(Instant::now() < deadline, "no task started");
            std::thread::sleep(Duration::from_millis(100));
        }
        child.kill().unwrap(); // SIGKILL: the coordinator cannot scancel
        child.wait().unwrap();
        assert!(queued(&op) > 0);
        pragma()
            .args(["cancel", &op, "--store"])
            .arg(setup.path("store"))
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
        let setup = Setup::new();
        let cell = setup.cell(
            "#pragma parallel --iterations 6 --parallel-runs 2 --max-by 'cat score'\n\
             echo $iteration >> \"$OUT/ran\"; sleep 1; echo $iteration > score\n",
        );
        let mut first = setup.spawn_run(&cell, &[]);
        wait_for_runs(&setup, 2);
        first.kill().unwrap(); // SIGKILL: the array goes on without it
        first.wait().unwrap();
        let (code, outcome) = setup.run(&cell, &["--backend", "slurm"]);
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
    fn op_of(setup: &Setup) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(entry) = std::fs::read_dir(setup.path("store/ops"))
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
        let setup = Setup::new();
        let cell = setup.cell(
            "#pragma parallel --iterations 3 --parallel-runs 3 --max-by 'cat score'\n\
             echo $iteration >> \"$OUT/ran\"; sleep 2; echo $iteration > score\n",
        );
        let child = setup.spawn_run(&cell, &["--json"]);
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

    /// Waits for `path` to exist; returns what it holds.
    fn wait_for_file(path: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(path)
                && !text.is_empty()
            {
                return text;
            }
            assert!(Instant::now() < deadline, "no {}", path.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the bodies have run `count` times (lines in `$OUT/ran`).
    fn wait_for_runs(setup: &Setup, count: usize) {
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
    fn repeat_job(setup: &Setup) -> (PathBuf, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let submitted = std::fs::read_dir(setup.path("store/slurm"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.join("job.id").exists());
            if let Some(dir) = submitted {
                let job = serde_json::from_str(&wait_for_file(&dir.join("job.id"))).unwrap();
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
        let setup = Setup::new();
        let cell = setup.cell(PARALLEL);
        // The array waits, held, while its directory moves away: as a node
        // that does not mount the store sees it.
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
            .arg("run")
            .arg(&cell)
            .arg("--state")
            .arg(setup.path("state"))
            .arg("--store")
            .arg(setup.path("store"))
            .args(["--backend", "slurm", "--retries", "0", "--json"])
            .arg("--sbatch-arg=--hold")
            .env("OUT", setup.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let op = op_of(&setup);
        let tasks = setup.path("store/slurm").join(&op);
        let job: String =
            serde_json::from_str(&wait_for_file(&tasks.join("array/job.id"))).unwrap();
        std::fs::rename(&tasks, setup.path("store/slurm/elsewhere")).unwrap();
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
        let setup = Setup::new();
        let cell = setup.cell(REPEAT);
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("pragma"))
            .arg("run")
            .arg(&cell)
            .arg("--state")
            .arg(setup.path("state"))
            .arg("--store")
            .arg(setup.path("store"))
            .args(["--backend", "slurm", "--sbatch-arg=--hold"])
            .env("OUT", setup.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (dir, job) = repeat_job(&setup);
        std::fs::rename(&dir, setup.path("store/slurm/elsewhere")).unwrap();
        release(&job);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("ended without starting pragma")
                && stderr.contains("every node mounts"),
            "{stderr}"
        );
        assert!(lines(&setup, "ran").is_empty());
    }

    #[test]
    fn a_repeat_job_requeued_while_running_resumes_and_completes() {
        if !cluster() {
            return;
        }
        let setup = Setup::new();
        let cell = setup.cell(REPEAT);
        let child = setup.spawn_run(&cell, &["--json"]);
        wait_for_runs(&setup, 3);
        let output = std::process::Command::new("squeue")
            .args(["-h", "-o", "%i %j"])
            .output()
            .unwrap();
        let jobs = String::from_utf8_lossy(&output.stdout).into_owned();
        // The one repeat job of this test: its directory is in this store.
        let dirs: Vec<String> = std::fs::read_dir(setup.path("store/slurm"))
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
            std::fs::read_to_string(setup.path("state/n")).unwrap(),
            "6\n"
        );
        let ran = lines(&setup, "ran");
        assert_eq!(
            ran.iter().filter(|i| *i == "0").count(),
            1,
            "went on from a checkpoint: {ran:?}"
        );
        // The runs cut short count as runs and as lost work. A run the
        // requeue stopped before its body wrote its line is counted too.
        let lost = last["usage"]["work_lost"].as_u64().unwrap();
        let again = ran.len() as u64 - 6;
        assert!(lost >= 1, "{last} {ran:?}");
        assert!(lost == again || lost == again + 1, "{last} {ran:?}");
        assert_eq!(last["usage"]["iterations_run"], 6 + lost, "{last}");
        assert_eq!(last["iterations_run"], 6 + lost, "{last}");
    }

    const REPEAT: &str = "#pragma repeat --iterations 6 --checkpoint-period 2 --max-by 'cat n'\n\
        echo $iteration >> \"$OUT/ran\"; sleep 0.3; echo $(( $(cat n 2>/dev/null || echo 0) + 1 )) > n\n";

    #[test]
    fn a_repeat_cell_runs_as_one_job_with_the_same_outcome() {
        if !cluster() {
            return;
        }
        let local = Setup::new();
        let (code, here) = local.run(&local.cell(REPEAT), &[]);
        assert_eq!(code, 0, "{here}");
        let remote = Setup::new();
        let (code, there) = remote.run(&remote.cell(REPEAT), &["--backend", "slurm"]);
        assert_eq!(code, 0, "{there}");
        assert_eq!(there["best"], here["best"]);
        assert_eq!(
            std::fs::read_to_string(remote.path("state/n")).unwrap(),
            "6\n"
        );
        assert_eq!(lines(&remote, "ran"), ["0", "1", "2", "3", "4", "5"]);
    }

    #[test]
    fn pragma_cancel_stops_a_repeat_job_on_whichever_node_it_runs() {
        if !cluster() {
            return;
        }
        let setup = Setup::new();
        let cell = setup.cell(&REPEAT.replace("sleep 0.3", "sleep 1"));
        let child = setup.spawn_run(&cell, &["--json"]);
        wait_for_runs(&setup, 2);
        let op = op_of(&setup);
        let store = setup.path("store");
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
        assert!(!setup.path("state/n").exists(), "nothing is applied");
    }

    #[test]
    fn a_restarted_coordinator_follows_the_running_repeat_job() {
        if !cluster() {
            return;
        }
        let setup = Setup::new();
        let cell = setup.cell(&REPEAT.replace("sleep 0.3", "sleep 1"));
        let mut child = setup.spawn_run(&cell, &["--json"]);
        wait_for_runs(&setup, 2);
        child.kill().unwrap(); // SIGKILL: the job goes on without it
        child.wait().unwrap();
        let (code, outcome) = setup.run(&cell, &["--backend", "slurm"]);
        assert_eq!(code, 0, "{outcome}");
        assert_eq!(
            std::fs::read_to_string(setup.path("state/n")).unwrap(),
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
        let setup = Setup::new();
        let cell = setup.cell(&REPEAT.replace("sleep 0.3", "sleep 1"));
        let child = setup.spawn_run(&cell, &["--json"]);
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
        let record_path = setup.path("store/ops").join(&op).join("run.json");
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
            std::fs::read_to_string(setup.path("state/n")).unwrap(),
            "6\n"
        );
    }

    #[test]
    fn submit_of_a_repeat_cell_prints_its_id_at_once_and_wait_follows_the_job() {
        if !cluster() {
            return;
        }
        let setup = Setup::new();
        let cell = setup.cell(REPEAT);
        let out = pragma()
            .arg("submit")
            .arg(&cell)
            .arg("--state")
            .arg(setup.path("state"))
            .arg("--store")
            .arg(setup.path("store"))
            .args(["--backend", "slurm"])
            .env("OUT", setup.dir.path())
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        let op = String::from_utf8(out).unwrap().trim().to_owned();
        assert!(op.starts_with("op-"), "{op}");
        pragma()
            .args(["wait", &op, "--store"])
            .arg(setup.path("store"))
            .assert()
            .code(0)
            .stdout(predicate::str::contains("succeeded: best iteration 5"));
        // The background coordinator applies the result as the job ends.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(setup.path("state/n"))
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
        let setup = Setup::new();
        let cell = setup.cell(REPEAT);
        let mut child = setup.spawn_run(&cell, &["--json"]);
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
        assert!(!setup.path("state/n").exists());
        let (code, outcome) = setup.run(&cell, &["--backend", "slurm"]);
        assert_eq!(code, 0, "{outcome}");
        assert_eq!(outcome["op"], op.as_str());
        assert_eq!(
            std::fs::read_to_string(setup.path("state/n")).unwrap(),
            "6\n"
        );
        assert_eq!(lines(&setup, "ran"), ["0", "1", "2", "3", "4", "5"]);
    }

    #[test]
    fn a_cancelled_repeat_job_resumes_from_its_checkpoint() {
        if !cluster() {
            return;
        }
        let setup = Setup::new();
        // Slower iterations than REPEAT's: the cancel must land before the
        // job ends, even on a loaded machine (with 1 s a CI run under load
        // once saw the job end first).
        let cell = setup.cell(&REPEAT.replace("sleep 0.3", "sleep 2"));
        let child = setup.spawn_run(&cell, &["--json"]);
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
        assert!(!setup.path("state/n").exists(), "nothing is applied");

        let (code, outcome) = setup.run(&cell, &["--backend", "slurm"]);
        assert_eq!(code, 0, "{outcome}");
        assert_eq!(
            std::fs::read_to_string(setup.path("state/n")).unwrap(),
            "6\n"
        );
        // It went on from a checkpoint: the first iterations did not run again.
        let ran = lines(&setup, "ran");
        assert_eq!(ran.iter().filter(|i| *i == "0").count(), 1, "{ran:?}");
        assert_eq!(ran.last().map(String::as_str), Some("5"));
    }
}

/// What the lifecycle library promises, as the command shows it: one run
/// per cell and state, closed pipes, state directories with symlinks.
mod lifecycle {
    use std::path::{Path, PathBuf};
    use std::process::{Command as Std, Stdio};

    use super::*;

    fn setup(cell_text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state/score"), "0\n").unwrap();
        let cell = dir.path().join("cell");
        std::fs::write(&cell, cell_text).unwrap();
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
        let (dir, cell) =
            setup("#pragma repeat --iterations 1 --max-by 'cat score'\necho 1 > score\n");
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
}

/// What a careless body does to a run: background children, huge output,
/// special files.
mod hardening {
    use std::process::Command as Std;
    use std::time::Duration;

    use super::*;

    fn run_cell(cell_text: &str) -> (tempfile::TempDir, assert_cmd::assert::Assert) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state/score"), "0\n").unwrap();
        std::fs::write(dir.path().join("cell"), cell_text).unwrap();
        let assert = pragma()
            .args(["run", "cell", "--state", "state", "--retries", "0"])
            .current_dir(dir.path())
            .timeout(Duration::from_secs(60))
            .assert();
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
}

mod hardening_more {
    use std::time::Duration;

    use super::*;

    /// A directory with `state/score` (0) and a cell that sets it to 1.
    pub(super) fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state/score"), "0\n").unwrap();
        std::fs::write(
            dir.path().join("cell"),
            "#pragma repeat --iterations 1 --max-by 'cat score'\necho 1 > score\n",
        )
        .unwrap();
        dir
    }

    /// Writes `cell_text` as the cell, then runs `pragma run cell --state
    /// state` in `dir`.
    fn run_cell(dir: &std::path::Path, cell_text: &str) -> assert_cmd::assert::Assert {
        run_cell_with(dir, cell_text, &[], Duration::from_secs(30))
    }

    /// As [`run_cell`], with `extra` arguments, given at most `timeout`.
    pub(super) fn run_cell_with(
        dir: &std::path::Path,
        cell_text: &str,
        extra: &[&str],
        timeout: Duration,
    ) -> assert_cmd::assert::Assert {
        std::fs::write(dir.join("cell"), cell_text).unwrap();
        pragma()
            .args(["run", "cell", "--state", "state"])
            .args(extra)
            .current_dir(dir)
            .timeout(timeout)
            .assert()
    }

    /// The one operation in the store of `dir`.
    pub(super) fn only_op(dir: &std::path::Path) -> String {
        let mut ops = std::fs::read_dir(dir.join(".pragma/ops")).unwrap();
        let op = ops.next().unwrap().unwrap().file_name();
        assert!(ops.next().is_none(), "one operation");
        op.to_str().unwrap().to_owned()
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
                &format!("#pragma parallel --iterations 2 --iteration-var {var} --max-by 'cat score'\ntrue\n"),
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
}

/// The smaller rows of the red-team list: each reproduces what was seen.
mod hardening_also {
    use std::time::Duration;

    use super::hardening_more::{only_op, run_cell_with, setup};
    use super::*;

    fn run_cell(
        dir: &std::path::Path,
        cell_text: &str,
        extra: &[&str],
    ) -> assert_cmd::assert::Assert {
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
            eprintln!(
                "\n*** SKIPPED: full-state test: cannot mount a tmpfs here (needs root) ***\n"
            );
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
}
