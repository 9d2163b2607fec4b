//! `pragma status`, `report` and `logs`.

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
        .stdout("== iteration 2 attempt 1 stdout\nran 2\n== iteration 2 attempt 1 stderr\nwarn\n");
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

#[test]
fn a_repeat_stopped_by_its_patience_says_why_in_its_summary_status_and_report() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let cell = dir.path().join("cell");
    // The score climbs to 3 at iteration 2, then falls; each run is counted.
    std::fs::write(
        &cell,
        "#pragma repeat --iterations 30 --patience 2 --max-by 'cat score'\n\
         echo $(( iteration <= 2 ? iteration + 1 : 0 )) > score; echo run >> \"$RUNS\"\n",
    )
    .unwrap();
    let runs = dir.path().join("runs");
    pragma()
        .arg("run")
        .arg(&cell)
        .arg("--state")
        .arg(dir.path().join("state"))
        .current_dir(dir.path())
        .env("RUNS", &runs)
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "succeeded: best iteration 2, score 3",
        ))
        .stdout(predicate::str::contains(
            "  stopped early: no better score in 2 checkpoints after iteration 2 (`--patience`)",
        ));
    // Iterations 0 to 4 ran (checkpoints after 3 and 4 did not improve),
    // not 30.
    let ran = std::fs::read_to_string(&runs).unwrap().lines().count();
    assert_eq!(ran, 5);
    let op = only_op(dir.path());
    pragma()
        .arg("status")
        .current_dir(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("succeeded   5/30 iterations"))
        .stdout(predicate::str::contains(
            "[stopped early: no better score in 2 checkpoints after iteration 2 (`--patience`)]",
        ));
    pragma()
        .args(["report", &op])
        .current_dir(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "stopped early: no better score in 2 checkpoints after iteration 2",
        ));
}

#[test]
fn a_parallel_search_stops_once_a_score_reaches_its_target() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let cell = dir.path().join("cell");
    // Iteration i scores i; 200 of them, 2 at a time, a quarter second each.
    std::fs::write(
        &cell,
        "#pragma parallel --iterations 200 --target 5 --max-by 'cat score'\n\
         echo run >> \"$RUNS\"; sleep 0.25; echo $iteration > score\n",
    )
    .unwrap();
    let runs = dir.path().join("runs");
    let out = pragma()
        .arg("run")
        .arg(&cell)
        .arg("--state")
        .arg(dir.path().join("state"))
        .args(["--workers", "2", "--json"])
        .current_dir(dir.path())
        .env("RUNS", &runs)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8_lossy(&out);
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "succeeded", "{last}");
    let why = last["stopped_early"].as_str().unwrap();
    assert!(why.ends_with("reaching the target 5 (`--target`)"), "{why}");
    assert!(last["best"]["score"].as_f64().unwrap() >= 5.0, "{last}");
    // The event said so as it happened.
    assert!(out.contains(r#""event":"stopped_early""#), "{out}");
    let ran = std::fs::read_to_string(&runs).unwrap().lines().count();
    assert!(ran < 20, "{ran} of 200 ran");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state/score"))
            .unwrap()
            .trim()
            .parse::<f64>()
            .unwrap(),
        last["best"]["score"].as_f64().unwrap()
    );
}
