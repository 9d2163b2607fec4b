//! An SVG chart of an operation's candidates and scores, drawn with
//! [plotters](https://docs.rs/plotters): what `pragma report --svg` writes,
//! and what a notebook shows inline.
//!
//! - The x axis is the iteration (0 to the operation's last), the y axis
//!   the score, titled with the selection rule (`max-by EXPR`, the
//!   expression shortened with an ellipsis when long); both have ticks.
//! - Every valid candidate is a point; the best is highlighted and
//!   labelled with its iteration and score; a step line shows the best so
//!   far in iteration order (rising for `--max-by`, falling for
//!   `--min-by`).
//! - repeat: the candidates are the checkpoints, each at the last iteration
//!   it covers, on an axis of all iterations; parallel: one point per
//!   iteration.
//! - Failed iterations and invalid candidates (NaN, an expression error)
//!   are marked along the bottom of the plot, each in its own style, with
//!   a legend entry.
//! - Infinite and huge scores never give NaN coordinates: scores are drawn
//!   within ±[`SCORE_LIMIT`], and those beyond sit on the edge of the plot
//!   (their true value is in their point's tooltip and in `pragma report`).
//!
//! ```
//! use pragma_executor_local::{CandidateScore, OperationSummary};
//!
//! let summary: OperationSummary = serde_json::from_value(serde_json::json!({
//!     "op": "op-1", "directive": "#pragma parallel --iterations 3 --max-by acc",
//!     "status": {"status": "succeeded"}, "iterations": 3, "done": 3,
//!     "best": {"iteration": 1, "score": 0.9}, "candidate_count": 3,
//!     "candidates_are_checkpoints": false, "failed_iterations": [],
//!     "usage": {}
//! })).unwrap();
//! let candidates: Vec<CandidateScore> = serde_json::from_value(serde_json::json!([
//!     {"iteration": 0, "score": 0.5, "invalid": null},
//!     {"iteration": 1, "score": 0.9, "invalid": null},
//!     {"iteration": 2, "score": null, "invalid": "NaN"}
//! ])).unwrap();
//! let svg = pragma_chart::svg(&summary, &candidates).unwrap();
//! assert!(svg.starts_with("<svg") && svg.contains("best: iteration 1"));
//! ```

#![deny(missing_docs)]

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use pragma_executor_local::{CandidateScore, OperationSummary};
use pragma_parse::Objective;

/// Scores are drawn within ±this: beyond it (or infinite) a score sits on
/// the edge of the plot, so that no coordinate overflows to NaN.
pub const SCORE_LIMIT: f64 = 1e300;

/// The chart's size in pixels.
const SIZE: (u32, u32) = (900, 480);

/// The longest axis title before it is shortened with an ellipsis.
const TITLE_CHARS: usize = 48;

/// Why no chart could be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(String);

/// The chart of `summary` and its `candidates` (as
/// [`Executor::candidates`](pragma_executor_local::Executor::candidates)
/// reads them), as an SVG document.
pub fn svg(
    summary: &OperationSummary,
    candidates: &[CandidateScore],
) -> Result<String, ChartError> {
    let mut out = String::new();
    draw(summary, candidates, &mut out).map_err(|e| ChartError(e.to_string()))?;
    Ok(out)
}

/// A candidate placed on the chart.
#[derive(Debug, Clone, Copy)]
struct Placed {
    iteration: u64,
    /// The score as drawn (within ±SCORE_LIMIT).
    y: f64,
    /// The true score.
    score: f64,
}

/// What the chart shows, worked out from the summary.
struct Plan {
    objective: Objective,
    axis_title: String,
    placed: Vec<Placed>,
    invalid: Vec<u64>,
    failed: Vec<u64>,
    best: Option<Placed>,
    best_so_far: Vec<(f64, f64)>,
    /// The score at which the operation stops (`--target`), drawn as a
    /// line.
    target: Option<f64>,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
}

fn plan(summary: &OperationSummary, candidates: &[CandidateScore]) -> Plan {
    let select = summary.directive.select().cloned();
    let objective = select.as_ref().map_or(Objective::Max, |s| s.objective());
    let axis_title = match &select {
        Some(select) => {
            let rule = match select.objective() {
                Objective::Max => "max-by",
                Objective::Min => "min-by",
            };
            format!("{rule} {}", shortened(select.expr(), TITLE_CHARS))
        }
        None => "score".to_owned(),
    };
    let mut placed: Vec<Placed> = candidates
        .iter()
        .filter_map(|c| {
            let score = c.score.filter(|s| !s.is_nan())?;
            Some(Placed {
                iteration: c.iteration,
                y: score.clamp(-SCORE_LIMIT, SCORE_LIMIT),
                score,
            })
        })
        .collect();
    placed.sort_by_key(|p| p.iteration);
    let invalid = candidates
        .iter()
        .filter(|c| c.score.is_none_or(f64::is_nan))
        .map(|c| c.iteration)
        .collect();
    let failed = summary.failed_iterations.iter().map(|(i, _)| *i).collect();
    let best = summary.best.and_then(|best| {
        placed
            .iter()
            .copied()
            .find(|p| p.iteration == best.iteration)
    });
    let best_so_far = steps(&placed, objective);
    let last = summary.iterations.max(1) as f64 - 1.0;
    let target = summary.directive.target().map(|t| t.score());
    // The target line is in view too.
    let mut in_view = placed.clone();
    in_view.extend(target.map(|score| Placed {
        iteration: 0,
        y: score.clamp(-SCORE_LIMIT, SCORE_LIMIT),
        score,
    }));
    Plan {
        objective,
        axis_title,
        x: -0.5..last + 0.5,
        y: y_range(&in_view),
        target,
        placed,
        invalid,
        failed,
        best,
        best_so_far,
    }
}

/// The best so far, in iteration order, as the corners of a step line.
fn steps(placed: &[Placed], objective: Objective) -> Vec<(f64, f64)> {
    let mut corners = Vec::new();
    let mut best: Option<f64> = None;
    for point in placed {
        let better = best.is_none_or(|b| match objective {
            Objective::Max => point.y > b,
            Objective::Min => point.y < b,
        });
        let x = point.iteration as f64;
        if let Some(b) = best {
            corners.push((x, b));
        }
        if better {
            best = Some(point.y);
        }
        corners.push((x, best.unwrap_or(point.y)));
    }
    corners
}

/// The score axis: the drawn scores with a margin, never empty, never
/// wider than a finite number can say.
fn y_range(placed: &[Placed]) -> std::ops::Range<f64> {
    let (low, high) = placed
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.y), hi.max(p.y))
        });
    if placed.is_empty() {
        return 0.0..1.0;
    }
    let span = high - low;
    let pad = if span > 0.0 {
        span * 0.08
    } else {
        low.abs().max(1.0) * 0.1
    };
    // The limits keep `high - low` finite even with the padding.
    (low - pad).max(-2.0 * SCORE_LIMIT)..(high + pad).min(2.0 * SCORE_LIMIT)
}

/// `text` cut to `chars` characters, with an ellipsis when cut.
fn shortened(text: &str, chars: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let cut: String = text.chars().take(chars.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// A score for a label: few digits, readable for any magnitude.
fn score_text(score: f64) -> String {
    if score.is_infinite() {
        return if score > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let magnitude = score.abs();
    if magnitude != 0.0 && !(1e-3..1e6).contains(&magnitude) {
        format!("{score:.3e}")
    } else {
        let text = format!("{score:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// How a legend entry's marker looks.
#[derive(Clone, Copy)]
enum Marker {
    Line(RGBColor),
    Dot(RGBColor, i32),
    Cross(RGBColor),
    Triangle(RGBColor),
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const ORANGE: RGBColor = RGBColor(255, 127, 14);

/// The width of the legend, right of the plot (outside it, so that it
/// never hides a point).
const LEGEND_WIDTH: u32 = 220;

fn draw(
    summary: &OperationSummary,
    candidates: &[CandidateScore],
    out: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let plan = plan(summary, candidates);
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut status = summary
        .status
        .as_ref()
        .map_or("unfinished", |s| s.name())
        .to_owned();
    if summary.stopped_early.is_some() {
        status.push_str(", stopped early");
    }
    let what = if summary.candidates_are_checkpoints {
        "checkpoints"
    } else {
        "iterations"
    };
    let root = root.titled(
        &format!("{}: {what}, {status}", summary.op),
        ("sans-serif", 18),
    )?;
    let (plot, side) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
    let legend = draw_plot(&plot, summary, &plan)?;
    draw_legend(&side, &legend)?;
    root.present()?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// The axes and the series; the legend entries of what it drew.
fn draw_plot(
    area: &Area<'_>,
    summary: &OperationSummary,
    plan: &Plan,
) -> Result<Vec<(&'static str, Marker)>, Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(plan.x.clone(), plan.y.clone())?;
    let iterations = summary.iterations.max(1);
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc(plan.axis_title.as_str())
        .x_labels(iterations.min(11) as usize)
        .x_label_formatter(&|x| {
            // Ticks on whole iterations only.
            if (x - x.round()).abs() < 1e-9 && *x >= 0.0 {
                format!("{}", x.round() as u64)
            } else {
                String::new()
            }
        })
        .y_labels(8)
        .y_label_formatter(&|y| score_text(*y))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let mut legend = Vec::new();
    if let Some(target) = plan.target {
        let y = target.clamp(-SCORE_LIMIT, SCORE_LIMIT);
        chart.draw_series(LineSeries::new(
            [(plan.x.start, y), (plan.x.end, y)],
            MAGENTA.stroke_width(1),
        ))?;
        legend.push(("target (--target)", Marker::Line(MAGENTA)));
    }
    if plan.best_so_far.len() > 1 {
        chart.draw_series(LineSeries::new(
            plan.best_so_far.iter().copied(),
            GREEN.stroke_width(2),
        ))?;
        legend.push((
            match plan.objective {
                Objective::Max => "best so far (max-by: rising)",
                Objective::Min => "best so far (min-by: falling)",
            },
            Marker::Line(GREEN),
        ));
    }
    chart.draw_series(
        plan.placed
            .iter()
            .map(|p| Circle::new((p.iteration as f64, p.y), 4, BLUE.filled())),
    )?;
    let kind = if summary.candidates_are_checkpoints {
        "checkpoint"
    } else {
        "candidate"
    };
    legend.push((kind, Marker::Dot(BLUE, 4)));
    if let Some(best) = plan.best {
        // Labelled beside the point, on the side with room, so that the
        // label is never cut off.
        let label = format!(
            "best: iteration {}, score {}",
            best.iteration,
            score_text(best.score)
        );
        let right_half = best.iteration as f64 > (plan.x.start + plan.x.end) / 2.0;
        let (offset, anchor) = if right_half {
            ((-10, -8), HPos::Right)
        } else {
            ((10, -8), HPos::Left)
        };
        let font = ("sans-serif", 13)
            .into_font()
            .color(&RED)
            .pos(Pos::new(anchor, VPos::Bottom));
        chart.draw_series(std::iter::once(
            EmptyElement::at((best.iteration as f64, best.y))
                + Circle::new((0, 0), 7, RED.filled())
                + Text::new(label, offset, font),
        ))?;
        legend.push(("best", Marker::Dot(RED, 6)));
    }
    let bottom = plan.y.start;
    if !plan.invalid.is_empty() {
        chart.draw_series(
            plan.invalid
                .iter()
                .map(|i| Cross::new((*i as f64, bottom), 6, ORANGE.stroke_width(2))),
        )?;
        legend.push(("invalid score (NaN, error)", Marker::Cross(ORANGE)));
    }
    if !plan.failed.is_empty() {
        chart.draw_series(
            plan.failed
                .iter()
                .map(|i| TriangleMarker::new((*i as f64, bottom), 7, RED.filled())),
        )?;
        legend.push(("failed iteration", Marker::Triangle(RED)));
    }
    Ok(legend)
}

/// The legend: one line per series drawn, marker and text.
fn draw_legend(
    area: &Area<'_>,
    entries: &[(&'static str, Marker)],
) -> Result<(), Box<dyn std::error::Error>> {
    let font = ("sans-serif", 12).into_font().color(&BLACK);
    for (row, (text, marker)) in entries.iter().enumerate() {
        let y = 60 + 22 * row as i32;
        let x = 8;
        match *marker {
            Marker::Line(color) => area.draw(&PathElement::new(
                vec![(x, y), (x + 18, y)],
                color.stroke_width(2),
            ))?,
            Marker::Dot(color, size) => {
                area.draw(&Circle::new((x + 9, y), size, color.filled()))?
            }
            Marker::Cross(color) => area.draw(&Cross::new((x + 9, y), 5, color.stroke_width(2)))?,
            Marker::Triangle(color) => {
                area.draw(&TriangleMarker::new((x + 9, y), 6, color.filled()))?
            }
        }
        area.draw(&Text::new(
            *text,
            (x + 26, y),
            font.clone().pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}
