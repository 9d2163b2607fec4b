//! The catalog of malformed cells: each `catalog/NAME.cell` must fail with
//! exactly the report in `catalog/NAME.stderr`.
//!
//! To write the expected reports after a deliberate change of wording, run
//! with `BLESS=1` and review the diff.

use std::fs;
use std::path::Path;

#[test]
fn every_malformed_cell_renders_its_expected_report() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/catalog");
    let bless = std::env::var_os("BLESS").is_some();
    let mut cells: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "cell"))
        .collect();
    cells.sort();
    assert!(cells.len() >= 30, "the catalog holds {} cells", cells.len());
    let mut mismatches = Vec::new();
    for cell in &cells {
        let text = fs::read_to_string(cell).unwrap();
        let name = cell.file_name().unwrap().to_str().unwrap();
        let error = match pragma_parse::parse_cell(&text) {
            Ok(parsed) => panic!("{name} parsed as `{}`", parsed.directive),
            Err(error) => error,
        };
        assert!(
            error.span().end <= text.len(),
            "{name}: span outside the input"
        );
        let report = error.render(&text, name);
        let expected_path = cell.with_extension("stderr");
        if bless {
            fs::write(&expected_path, &report).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if report != expected {
            mismatches.push(format!(
                "--- {name}\nexpected:\n{expected}\nactual:\n{report}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
