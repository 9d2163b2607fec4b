//! The typed directive: what a parsed `#pragma` line means.
//!
//! The types keep their fields private and check them in their constructors,
//! so a [`Directive`] always holds valid values: every directive that can be
//! built can also be printed and parsed back ([`Display`](std::fmt::Display)
//! gives the canonical form).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::quote::quote;

/// The name the iteration variable has when `--iteration-var` is not given.
pub const DEFAULT_ITERATION_VAR: &str = "iteration";

/// The checkpoint period of `repeat` when `--checkpoint-period` is not given.
pub const DEFAULT_CHECKPOINT_PERIOD: u64 = 1;

/// A parsed directive: one of the three kinds of background operation.
///
/// Serialises with a `kind` tag, e.g.
/// `{"kind":"repeat","iterations":20,"checkpoint_period":5,"iteration_var":"iteration","select":{"objective":"max","expr":"acc"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Directive {
    /// `#pragma repeat`: iterations run one after another on the same state.
    Repeat(Repeat),
    /// `#pragma parallel`: iterations run independently from the submitted state.
    Parallel(Parallel),
    /// `#pragma async`: the body runs once in the background.
    Async,
}

impl Directive {
    /// The kind of this directive.
    pub fn kind(&self) -> Kind {
        match self {
            Directive::Repeat(_) => Kind::Repeat,
            Directive::Parallel(_) => Kind::Parallel,
            Directive::Async => Kind::Async,
        }
    }

    /// The number of iterations (1 for `async`).
    pub fn iterations(&self) -> u64 {
        match self {
            Directive::Repeat(r) => r.iterations,
            Directive::Parallel(p) => p.iterations,
            Directive::Async => 1,
        }
    }

    /// The same directive with `iterations` iterations (what extending a
    /// finished operation runs to); `async` has one iteration and no other.
    ///
    /// ```
    /// let d: pragma_parse::Directive = "#pragma repeat --iterations 20 --max-by acc".parse().unwrap();
    /// assert_eq!(d.with_iterations(30).unwrap().iterations(), 30);
    /// assert!(d.with_iterations(0).is_err());
    /// assert!(pragma_parse::Directive::Async.with_iterations(2).is_err());
    /// ```
    pub fn with_iterations(&self, iterations: u64) -> Result<Directive, InvalidValue> {
        check_positive("iterations", iterations)?;
        match self {
            Directive::Repeat(r) => Ok(Directive::Repeat(Repeat {
                iterations,
                ..r.clone()
            })),
            Directive::Parallel(p) => Ok(Directive::Parallel(Parallel {
                iterations,
                ..p.clone()
            })),
            Directive::Async if iterations == 1 => Ok(Directive::Async),
            Directive::Async => Err(InvalidValue::AsyncRunsOnce),
        }
    }

    /// The selection rule, if the kind has one (`async` has none).
    pub fn select(&self) -> Option<&Selection> {
        match self {
            Directive::Repeat(r) => Some(&r.select),
            Directive::Parallel(p) => Some(&p.select),
            Directive::Async => None,
        }
    }

    /// Stop after this many checkpoints in a row with no better score
    /// (`--patience`, `repeat` only).
    pub fn patience(&self) -> Option<u64> {
        match self {
            Directive::Repeat(r) => r.patience,
            Directive::Parallel(_) | Directive::Async => None,
        }
    }

    /// Stop once a candidate's score reaches this (`--target`).
    pub fn target(&self) -> Option<Target> {
        match self {
            Directive::Repeat(r) => r.target,
            Directive::Parallel(p) => p.target,
            Directive::Async => None,
        }
    }

    /// The name of the iteration variable, if the kind has one (`async` has none).
    pub fn iteration_var(&self) -> Option<&str> {
        match self {
            Directive::Repeat(r) => Some(&r.iteration_var),
            Directive::Parallel(p) => Some(&p.iteration_var),
            Directive::Async => None,
        }
    }
}

/// The kind of a directive, the word after `#pragma`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Sequential iterations with periodic checkpoints.
    Repeat,
    /// Independent iterations on up to P workers.
    Parallel,
    /// One plain background run.
    Async,
}

impl Kind {
    /// All kinds, in the order they are documented.
    pub const ALL: [Kind; 3] = [Kind::Repeat, Kind::Parallel, Kind::Async];

    /// The word that names this kind in a directive.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Repeat => "repeat",
            Kind::Parallel => "parallel",
            Kind::Async => "async",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the highest or the lowest score wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// `--max-by`: the highest score wins.
    Max,
    /// `--min-by`: the lowest score wins.
    Min,
}

impl Objective {
    /// The option that selects this objective, without the leading dashes.
    pub fn option_name(self) -> &'static str {
        match self {
            Objective::Max => "max-by",
            Objective::Min => "min-by",
        }
    }
}

/// The selection rule: an objective and the expression the host evaluates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawSelection")]
pub struct Selection {
    pub(crate) objective: Objective,
    pub(crate) expr: String,
}

#[derive(Deserialize)]
struct RawSelection {
    pub(crate) objective: Objective,
    pub(crate) expr: String,
}

impl TryFrom<RawSelection> for Selection {
    type Error = InvalidValue;
    fn try_from(raw: RawSelection) -> Result<Self, Self::Error> {
        Selection::new(raw.objective, raw.expr)
    }
}

impl Selection {
    /// A selection rule. The expression is opaque text for the host; it must
    /// not be blank and must fit on a directive line (no line feed).
    pub fn new(objective: Objective, expr: impl Into<String>) -> Result<Self, InvalidValue> {
        let expr = expr.into();
        check_expression(&expr)?;
        Ok(Selection { objective, expr })
    }

    /// Whether the highest or the lowest score wins.
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// The expression the host evaluates on a state to get its score.
    pub fn expr(&self) -> &str {
        &self.expr
    }
}

/// The score at which an operation stops early (`--target`): reached when
/// a candidate scores at least this with `--max-by`, at most this with
/// `--min-by`. Always a finite number.
///
/// ```
/// use pragma_parse::{Objective, Target};
///
/// let target = Target::new(0.95).unwrap();
/// assert!(target.reached_by(0.97, Objective::Max));
/// assert!(!target.reached_by(0.97, Objective::Min));
/// assert!(Target::new(f64::NAN).is_err());
/// ```
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Target(f64);

impl Target {
    /// A target score: any finite number.
    pub fn new(score: f64) -> Result<Self, InvalidValue> {
        if score.is_finite() {
            // One zero: `-0` and `0` are the same target.
            Ok(Target(if score == 0.0 { 0.0 } else { score }))
        } else {
            Err(InvalidValue::NotFinite { option: "target" })
        }
    }

    /// The score.
    pub fn score(self) -> f64 {
        self.0
    }

    /// Whether `score` reaches the target under `objective`.
    pub fn reached_by(self, score: f64, objective: Objective) -> bool {
        match objective {
            Objective::Max => score >= self.0,
            Objective::Min => score <= self.0,
        }
    }
}

impl TryFrom<f64> for Target {
    type Error = InvalidValue;
    fn try_from(score: f64) -> Result<Self, Self::Error> {
        Target::new(score)
    }
}

impl From<Target> for f64 {
    fn from(target: Target) -> f64 {
        target.0
    }
}

// Finite and with one zero, so bitwise equality is numeric equality.
impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Target {}

impl std::hash::Hash for Target {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

/// The shortest text that reads back as the same number.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The options of `#pragma repeat`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawRepeat")]
pub struct Repeat {
    pub(crate) iterations: u64,
    pub(crate) checkpoint_period: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) patience: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<Target>,
    pub(crate) iteration_var: String,
    pub(crate) select: Selection,
}

#[derive(Deserialize)]
struct RawRepeat {
    pub(crate) iterations: u64,
    #[serde(default = "default_checkpoint_period")]
    pub(crate) checkpoint_period: u64,
    #[serde(default)]
    pub(crate) patience: Option<u64>,
    #[serde(default)]
    pub(crate) target: Option<Target>,
    #[serde(default = "default_iteration_var")]
    pub(crate) iteration_var: String,
    pub(crate) select: Selection,
}

fn default_checkpoint_period() -> u64 {
    DEFAULT_CHECKPOINT_PERIOD
}

fn default_iteration_var() -> String {
    DEFAULT_ITERATION_VAR.to_owned()
}

impl TryFrom<RawRepeat> for Repeat {
    type Error = InvalidValue;
    fn try_from(raw: RawRepeat) -> Result<Self, Self::Error> {
        Repeat::new(
            raw.iterations,
            raw.checkpoint_period,
            raw.iteration_var,
            raw.select,
        )?
        .with_patience(raw.patience)
        .map(|repeat| repeat.with_target(raw.target))
    }
}

impl Repeat {
    /// Repeat options: `iterations` and `checkpoint_period` at least 1,
    /// `iteration_var` an identifier (`[A-Za-z_][A-Za-z0-9_]*`).
    pub fn new(
        iterations: u64,
        checkpoint_period: u64,
        iteration_var: impl Into<String>,
        select: Selection,
    ) -> Result<Self, InvalidValue> {
        let iteration_var = iteration_var.into();
        check_positive("iterations", iterations)?;
        check_positive("checkpoint-period", checkpoint_period)?;
        check_identifier(&iteration_var)?;
        Ok(Repeat {
            iterations,
            checkpoint_period,
            patience: None,
            target: None,
            iteration_var,
            select,
        })
    }

    /// The same options, stopping after `patience` checkpoints in a row
    /// that do not improve on the best (`--patience`, at least 1; `None`
    /// runs every iteration).
    pub fn with_patience(mut self, patience: Option<u64>) -> Result<Self, InvalidValue> {
        if let Some(checkpoints) = patience {
            check_positive("patience", checkpoints)?;
        }
        self.patience = patience;
        Ok(self)
    }

    /// The same options, stopping once a checkpoint's score reaches
    /// `target` (`--target`).
    pub fn with_target(mut self, target: Option<Target>) -> Self {
        self.target = target;
        self
    }

    /// Stop after this many checkpoints in a row with no better score
    /// (`--patience`).
    pub fn patience(&self) -> Option<u64> {
        self.patience
    }

    /// Stop once a checkpoint's score reaches this (`--target`).
    pub fn target(&self) -> Option<Target> {
        self.target
    }

    /// How many iterations run (`--iterations`).
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// A checkpoint is taken after every this many iterations and after the
    /// last one (`--checkpoint-period`, default 1).
    pub fn checkpoint_period(&self) -> u64 {
        self.checkpoint_period
    }

    /// The variable that holds the iteration number (`--iteration-var`).
    pub fn iteration_var(&self) -> &str {
        &self.iteration_var
    }

    /// The selection rule (`--max-by` / `--min-by`).
    pub fn select(&self) -> &Selection {
        &self.select
    }
}

/// The options of `#pragma parallel`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawParallel")]
pub struct Parallel {
    pub(crate) iterations: u64,
    pub(crate) parallel_runs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<Target>,
    pub(crate) iteration_var: String,
    pub(crate) select: Selection,
}

#[derive(Deserialize)]
struct RawParallel {
    pub(crate) iterations: u64,
    #[serde(default)]
    pub(crate) parallel_runs: Option<u64>,
    #[serde(default)]
    pub(crate) target: Option<Target>,
    #[serde(default = "default_iteration_var")]
    pub(crate) iteration_var: String,
    pub(crate) select: Selection,
}

impl TryFrom<RawParallel> for Parallel {
    type Error = InvalidValue;
    fn try_from(raw: RawParallel) -> Result<Self, Self::Error> {
        Parallel::new(
            raw.iterations,
            raw.parallel_runs,
            raw.iteration_var,
            raw.select,
        )
        .map(|parallel| parallel.with_target(raw.target))
    }
}

impl Parallel {
    /// Parallel options: `iterations` and `parallel_runs` (when given) at
    /// least 1, `iteration_var` an identifier (`[A-Za-z_][A-Za-z0-9_]*`).
    pub fn new(
        iterations: u64,
        parallel_runs: Option<u64>,
        iteration_var: impl Into<String>,
        select: Selection,
    ) -> Result<Self, InvalidValue> {
        let iteration_var = iteration_var.into();
        check_positive("iterations", iterations)?;
        if let Some(runs) = parallel_runs {
            check_positive("parallel-runs", runs)?;
        }
        check_identifier(&iteration_var)?;
        Ok(Parallel {
            iterations,
            parallel_runs,
            target: None,
            iteration_var,
            select,
        })
    }

    /// The same options, stopping once an iteration's score reaches
    /// `target` (`--target`): no more iterations start, and those running
    /// are stopped.
    pub fn with_target(mut self, target: Option<Target>) -> Self {
        self.target = target;
        self
    }

    /// Stop once an iteration's score reaches this (`--target`).
    pub fn target(&self) -> Option<Target> {
        self.target
    }

    /// How many iterations run (`--iterations`).
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// At most this many iterations run at once (`--parallel-runs`); `None`
    /// leaves it to the executor's capacity.
    pub fn parallel_runs(&self) -> Option<u64> {
        self.parallel_runs
    }

    /// The variable that holds the iteration number (`--iteration-var`).
    pub fn iteration_var(&self) -> &str {
        &self.iteration_var
    }

    /// The selection rule (`--max-by` / `--min-by`).
    pub fn select(&self) -> &Selection {
        &self.select
    }
}

/// A value that a directive cannot hold, from a constructor or deserialisation.
///
/// The parser reports the same problems as [`ParseError`](crate::ParseError)s
/// with positions; this type is for directives built in code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidValue {
    /// A count that must be at least 1 was 0.
    #[error("`--{option}` must be at least 1, found 0")]
    Zero {
        /// The option, without the leading dashes.
        option: &'static str,
    },
    /// `#pragma async` runs its body once; it has no more iterations to
    /// run.
    #[error("`#pragma async` runs its body once: it cannot have more iterations")]
    AsyncRunsOnce,
    /// A number that must be finite was infinite or not a number.
    #[error("`--{option}` must be a finite number")]
    NotFinite {
        /// The option, without the leading dashes.
        option: &'static str,
    },
    /// The iteration variable is not an identifier.
    #[error(
        "`{0}` is not a valid variable name: use letters, digits and `_`, not starting with a digit"
    )]
    InvalidIdentifier(String),
    /// The selection expression is blank.
    #[error("the selection expression is empty")]
    EmptyExpression,
    /// The selection expression has a line feed, which a directive line cannot hold.
    #[error("the selection expression contains a line break; it must fit on the directive line")]
    LineBreakInExpression,
    /// The selection expression has a control character (a NUL, an
    /// escape), which a directive line cannot hold.
    #[error("the selection expression contains the control character U+{0:04X}")]
    ControlInExpression(u32),
}

pub(crate) fn check_positive(option: &'static str, value: u64) -> Result<(), InvalidValue> {
    if value == 0 {
        Err(InvalidValue::Zero { option })
    } else {
        Ok(())
    }
}

pub(crate) fn check_identifier(name: &str) -> Result<(), InvalidValue> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(InvalidValue::InvalidIdentifier(name.to_owned()))
    }
}

pub(crate) fn check_expression(expr: &str) -> Result<(), InvalidValue> {
    if expr.trim().is_empty() {
        Err(InvalidValue::EmptyExpression)
    } else if expr.contains('\n') {
        Err(InvalidValue::LineBreakInExpression)
    } else if let Some(c) = expr
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\r'))
    {
        Err(InvalidValue::ControlInExpression(u32::from(c)))
    } else {
        Ok(())
    }
}

/// Prints the canonical form: every option spelt out, in a fixed order, with
/// values quoted only where the shell's word rules need it.
///
/// ```
/// let d: pragma_parse::Directive =
///     "#pragma repeat --max-by=acc --iterations 3".parse().unwrap();
/// assert_eq!(
///     d.to_string(),
///     "#pragma repeat --iterations 3 --checkpoint-period 1 --iteration-var iteration --max-by acc"
/// );
/// ```
impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#pragma {}", self.kind())?;
        match self {
            Directive::Repeat(r) => {
                write!(
                    f,
                    " --iterations {} --checkpoint-period {}",
                    r.iterations, r.checkpoint_period
                )?;
                if let Some(patience) = r.patience {
                    write!(f, " --patience {patience}")?;
                }
                if let Some(target) = r.target {
                    write!(f, " --target {target}")?;
                }
                write!(f, " --iteration-var {}", quote(&r.iteration_var))?;
                write_select(f, &r.select)
            }
            Directive::Parallel(p) => {
                write!(f, " --iterations {}", p.iterations)?;
                if let Some(runs) = p.parallel_runs {
                    write!(f, " --parallel-runs {runs}")?;
                }
                if let Some(target) = p.target {
                    write!(f, " --target {target}")?;
                }
                write!(f, " --iteration-var {}", quote(&p.iteration_var))?;
                write_select(f, &p.select)
            }
            Directive::Async => Ok(()),
        }
    }
}

fn write_select(f: &mut fmt::Formatter<'_>, select: &Selection) -> fmt::Result {
    write!(
        f,
        " --{} {}",
        select.objective.option_name(),
        quote(&select.expr)
    )
}
