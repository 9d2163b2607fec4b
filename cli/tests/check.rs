//! `pragma check`: canonical directives, JSON, rustc-style reports.

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
