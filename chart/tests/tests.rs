//! The chart as a document: it parses, says what it shows, and no
//! coordinate is NaN or infinite, whatever the scores.

use pragma_chart::ChartError;
use pragma_executor_local::{CandidateScore, OperationSummary};

/// The chart of an operation with `directive` and `candidates`, its
/// summary's other fields changed as `extra` says.
fn chart(
    directive: &str,
    candidates: serde_json::Value,
    extra: serde_json::Value,
) -> Result<String, ChartError> {
    let candidates: Vec<CandidateScore> = serde_json::from_value(candidates).unwrap();
    let mut value = serde_json::json!({
        "op": "op-chart", "directive": directive,
        "status": {"status": "succeeded"}, "iterations": 8, "done": 8,
        "best": null, "candidate_count": candidates.len(),
        "candidates_are_checkpoints": false, "failed_iterations": [],
        "usage": {}
    });
    for (key, v) in extra.as_object().unwrap() {
        value[key] = v.clone();
    }
    let summary: OperationSummary = serde_json::from_value(value).unwrap();
    pragma_chart::svg(&summary, &candidates)
}

fn candidate(iteration: u64, score: Option<f64>, invalid: Option<&str>) -> serde_json::Value {
    serde_json::json!({ "iteration": iteration, "score": score, "invalid": invalid })
}

/// Parses `svg`, checks every coordinate, and returns its texts.
fn texts(svg: &str) -> Vec<String> {
    let document =
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
    let coordinates = [
        "x",
        "y",
        "x1",
        "y1",
        "x2",
        "y2",
        "cx",
        "cy",
        "r",
        "width",
        "height",
        "points",
        "d",
        "transform",
    ];
    for node in document.descendants().filter(|n| n.is_element()) {
        for attribute in node.attributes() {
            if coordinates.contains(&attribute.name()) {
                let value = attribute.value().to_ascii_lowercase();
                assert!(
                    !value.contains("nan") && !value.contains("inf"),
                    "<{} {}=\"{}\">",
                    node.tag_name().name(),
                    attribute.name(),
                    attribute.value()
                );
            }
        }
    }
    document
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_owned())
        .collect()
}

#[test]
fn a_parallel_search_shows_every_candidate_the_best_and_what_failed() {
    let chart = chart(
        "#pragma parallel --iterations 8 --max-by accuracy",
        serde_json::json!([
            candidate(1, Some(0.87), None),
            candidate(0, Some(0.865), None),
            candidate(2, Some(0.89), None),
            candidate(4, None, Some("the score is NaN")),
            candidate(5, Some(0.88), None),
            candidate(6, None, Some("NameError: name 'accuracy' is not defined")),
            candidate(7, Some(0.86), None),
        ]),
        serde_json::json!({
            "best": {"iteration": 2, "score": 0.89},
            "failed_iterations": [[3, "exit code 1"]],
        }),
    )
    .unwrap();
    let texts = texts(&chart);
    for expected in [
        "iteration",
        "max-by accuracy",
        "best: iteration 2, score 0.89",
        "best so far (max-by: rising)",
        "candidate",
        "best",
        "invalid score (NaN, error)",
        "failed iteration",
    ] {
        assert!(
            texts.iter().any(|t| t == expected),
            "no `{expected}` in {texts:?}"
        );
    }
    // Ticks on both axes, not just the extremes.
    let ticks = texts.iter().filter(|t| t.parse::<f64>().is_ok()).count();
    assert!(ticks >= 10, "{texts:?}");
}

#[test]
fn infinite_and_huge_scores_give_no_nan_coordinates() {
    for scores in [
        vec![Some(f64::INFINITY), Some(1.0), Some(f64::NEG_INFINITY)],
        vec![Some(1e308), Some(-1e308), Some(0.0)],
        vec![Some(f64::MAX), Some(f64::MIN_POSITIVE)],
        vec![Some(5.0), Some(5.0)],
        vec![],
    ] {
        let candidates: Vec<_> = scores
            .iter()
            .enumerate()
            .map(|(i, s)| candidate(i as u64, *s, None))
            .collect();
        let best = scores.first().copied().flatten().filter(|s| s.is_finite());
        let chart = chart(
            "#pragma parallel --iterations 8 --min-by loss",
            serde_json::Value::Array(candidates),
            serde_json::json!({ "best": best.map(|s| serde_json::json!({"iteration": 0, "score": s})) }),
        )
        .unwrap();
        texts(&chart);
    }
}

#[test]
fn a_long_expression_is_shortened_and_checkpoints_are_named() {
    let expr = "model.evaluate(x_test, y_test, verbose=0)[1] * weights_for_the_final_report";
    let chart = chart(
        &format!("#pragma repeat --iterations 20 --checkpoint-period 5 --max-by '{expr}'"),
        serde_json::json!([candidate(4, Some(0.5), None), candidate(9, Some(0.7), None)]),
        serde_json::json!({
            "candidates_are_checkpoints": true,
            "iterations": 20,
            "best": {"iteration": 9, "score": 0.7},
        }),
    )
    .unwrap();
    let texts = texts(&chart);
    let title = texts.iter().find(|t| t.starts_with("max-by ")).unwrap();
    assert!(
        title.ends_with('…') && title.chars().count() <= 48 + 7,
        "{title}"
    );
    assert!(texts.iter().any(|t| t == "checkpoint"), "{texts:?}");
    // The axis spans every iteration, beyond the last checkpoint (9).
    let last_tick = texts.iter().filter_map(|t| t.parse::<u64>().ok()).max();
    assert!(last_tick >= Some(18), "{texts:?}");
}

#[test]
fn a_target_is_drawn_and_an_early_stop_is_in_the_title() {
    let chart = chart(
        "#pragma repeat --iterations 40 --checkpoint-period 2 --target 0.9 --max-by acc",
        serde_json::json!([
            candidate(1, Some(0.5), None),
            candidate(3, Some(0.95), None)
        ]),
        serde_json::json!({
            "candidates_are_checkpoints": true,
            "iterations": 40,
            "done": 4,
            "best": {"iteration": 3, "score": 0.95},
            "stopped_early": "iteration 3 scored 0.95, reaching the target 0.9 (`--target`)",
        }),
    )
    .unwrap();
    let texts = texts(&chart);
    assert!(texts.iter().any(|t| t == "target (--target)"), "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t == "op-chart: checkpoints, succeeded, stopped early"),
        "{texts:?}"
    );
}
