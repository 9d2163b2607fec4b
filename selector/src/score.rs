//! Scores as hosts give them: numbers, failures, and text to parse.

use serde::{Deserialize, Serialize};

/// What the host made of the selection expression for one candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    /// The expression gave a number (a NaN here makes the candidate invalid).
    Score(f64),
    /// The candidate cannot be scored.
    Invalid(InvalidReason),
}

impl Evaluation {
    /// The host could not evaluate the expression; `message` says why.
    pub fn failed(message: impl Into<String>) -> Self {
        Evaluation::Invalid(InvalidReason::EvaluationFailed(message.into()))
    }

    /// A score printed as text, parsed by [`parse_score`]; text that is not a
    /// number makes the candidate invalid with [`InvalidReason::NotANumber`].
    ///
    /// ```
    /// use pragma_selector::{Evaluation, InvalidReason};
    /// assert_eq!(Evaluation::parse("-1e-3\n"), Evaluation::Score(-0.001));
    /// assert!(matches!(Evaluation::parse("n/a"), Evaluation::Invalid(InvalidReason::NotANumber(_))));
    /// ```
    pub fn parse(text: &str) -> Self {
        match parse_score(text) {
            Ok(score) => Evaluation::Score(score),
            Err(error) => Evaluation::Invalid(InvalidReason::NotANumber(error.to_string())),
        }
    }

    /// The reason this evaluation cannot be chosen, if any (NaN included).
    pub fn invalid_reason(&self) -> Option<InvalidReason> {
        match self {
            Evaluation::Score(score) if score.is_nan() => Some(InvalidReason::NaN),
            Evaluation::Score(_) => None,
            Evaluation::Invalid(reason) => Some(reason.clone()),
        }
    }
}

impl From<f64> for Evaluation {
    fn from(score: f64) -> Self {
        Evaluation::Score(score)
    }
}

/// Why a candidate cannot be chosen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
pub enum InvalidReason {
    /// The score was NaN.
    NaN,
    /// The host could not evaluate the expression (its message).
    EvaluationFailed(String),
    /// The host's output was not a number (what was wrong with it).
    NotANumber(String),
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidReason::NaN => f.write_str("the score is NaN"),
            InvalidReason::EvaluationFailed(message) => {
                write!(f, "the expression could not be evaluated: {message}")
            }
            InvalidReason::NotANumber(message) => f.write_str(message),
        }
    }
}

/// A score text that is not a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScoreError {
    /// Nothing but whitespace.
    #[error("the score is empty: the selection expression must print a number")]
    Empty,
    /// Some text that is not a number.
    #[error(
        "`{text}` is not a number: the selection expression must print one number, such as `0.93`, `-1e-3`, `nan` or `inf`{hint}"
    )]
    NotANumber {
        /// The text, cut short when long.
        text: String,
        /// Extra advice for a recognisable mistake (may be empty).
        hint: String,
    },
}

/// Parses a score as hosts print it: surrounding whitespace is ignored;
/// decimal and exponent forms, `nan`, `inf`, `-inf` and `infinity` (any
/// case) are numbers.
///
/// ```
/// use pragma_selector::parse_score;
/// assert_eq!(parse_score("0.93"), Ok(0.93));
/// assert_eq!(parse_score(" 42 \n"), Ok(42.0));
/// assert_eq!(parse_score("-inf"), Ok(f64::NEG_INFINITY));
/// assert!(parse_score("nan").unwrap().is_nan());
/// assert_eq!(
///     parse_score("np.float64(0.5)").unwrap_err().to_string(),
///     "`np.float64(0.5)` is not a number: the selection expression must print one number, \
///      such as `0.93`, `-1e-3`, `nan` or `inf` (print the plain number, e.g. with `float(...)`)"
/// );
/// ```
pub fn parse_score(text: &str) -> Result<f64, ScoreError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ScoreError::Empty);
    }
    if let Ok(score) = trimmed.parse::<f64>() {
        return Ok(score);
    }
    let hint = if trimmed.ends_with(')') && trimmed.contains('(') {
        " (print the plain number, e.g. with `float(...)`)"
    } else if trimmed.contains(',') && trimmed.replace(',', ".").parse::<f64>().is_ok() {
        " (use `.` as the decimal separator)"
    } else if trimmed.lines().count() > 1 {
        " (print only the score, on its own line)"
    } else {
        ""
    };
    Err(ScoreError::NotANumber {
        text: shorten(trimmed),
        hint: hint.to_owned(),
    })
}

fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
