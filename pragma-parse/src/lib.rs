//! Parser for the directive line of a background cell.
//!
//! A cell (a notebook cell, a script) that runs in the background starts with
//! one directive line, and everything after it is the body:
//!
//! ```text
//! #pragma repeat --iterations 20 --checkpoint-period 5 --max-by "model.evaluate(x_test, y_test)[1]"
//! model.fit(x_train, y_train, epochs=1)
//! ```
//!
//! This crate turns the cell into a typed [`Directive`] (`repeat`, `parallel`
//! or `async`) and the body's position, and nothing else: running the body is
//! the job of an executor. It is meant for any tool that accepts such cells,
//! so that every tool reads directives the same way.
//!
//! # The language
//!
//! - The directive is the first non-blank line and starts with `#pragma`,
//!   then a kind: `repeat`, `parallel` or `async` (`async` takes no options).
//! - Options, each at most once, as `--name value` or `--name=value`:
//!   `--iterations N` (required), `--checkpoint-period K` (repeat only,
//!   default 1), `--parallel-runs P` (parallel only, default: the executor's
//!   capacity), `--iteration-var NAME` (default `iteration`), and exactly one
//!   of `--max-by EXPR` / `--min-by EXPR`, whose expression the host evaluates.
//! - Stop rules, both optional: `--patience N` (repeat only) stops after N
//!   checkpoints in a row that do not improve on the best; `--target VALUE`
//!   (repeat and parallel, a finite number) stops once a candidate scores
//!   VALUE or better (at least VALUE for `--max-by`, at most for `--min-by`,
//!   see [`Target::reached_by`]).
//! - Values are words by the POSIX shell's quoting rules, which are also
//!   Python's `shlex.split` rules except in three corners where this crate
//!   follows the shell: inside double quotes `\$` and ``\` `` give `$` and a
//!   backtick (`shlex` keeps the backslash), and a backslash before a line
//!   break joins the next line to the directive (`shlex` keeps the break).
//!   A quote must close on its line (or on a line joined to it), so a
//!   forgotten quote is reported where it opens instead of swallowing the body.
//! - A word is an option only when its first two dashes are unquoted: a value
//!   that starts with `--` must be quoted (`--max-by '--x'`).
//! - Lines `#pragma readonly NAME[, NAME...]` (or `#pragma ro NAME NAME`)
//!   right after the directive name variables the body only reads
//!   ([`Cell::readonly`]); the body starts after them.
//!
//! # Errors
//!
//! Every problem is a [`ParseError`] with a message, a byte span, a line and
//! column, and where possible the closest valid spelling
//! ([`ParseError::suggestion`]). [`ParseError::render`] prints it as rustc
//! does, with the offending line and a caret. Parsing never panics and takes
//! time linear in the input.
//!
//! # Canonical form
//!
//! A directive prints ([`Display`](std::fmt::Display)) in one canonical form,
//! all options spelt out in a fixed order; parsing it gives the same value.
//! Directives also serialise with serde, tagged by `kind`.
//!
//! # Example
//!
//! ```
//! use pragma_parse::{parse_cell, Directive, Objective};
//!
//! let cell = "#pragma parallel --iterations 20 --parallel-runs 5 \\\n  --iteration-var lr_step --min-by 'loss(\"val\")'\ntrain(lr=0.1 * lr_step)\n";
//! let parsed = parse_cell(cell)?;
//! let Directive::Parallel(parallel) = &parsed.directive else { panic!("a parallel directive") };
//! assert_eq!(parallel.iterations(), 20);
//! assert_eq!(parallel.parallel_runs(), Some(5));
//! assert_eq!(parallel.iteration_var(), "lr_step");
//! assert_eq!(parallel.select().objective(), Objective::Min);
//! assert_eq!(parallel.select().expr(), "loss(\"val\")");
//! assert_eq!(parsed.body, "train(lr=0.1 * lr_step)\n");
//!
//! // The canonical form parses back to the same directive.
//! let printed = parsed.directive.to_string();
//! assert_eq!(
//!     printed,
//!     r#"#pragma parallel --iterations 20 --parallel-runs 5 --iteration-var lr_step --min-by 'loss("val")'"#
//! );
//! assert_eq!(printed.parse::<Directive>()?, parsed.directive);
//!
//! // Errors say what, where, and how to fix it.
//! let err = parse_cell("#pragma repeat --iteratons 5 --max-by acc").unwrap_err();
//! assert_eq!(err.message(), "unknown option `--iteratons`");
//! assert_eq!((err.line(), err.column()), (1, 16));
//! assert_eq!(err.suggestion(), Some("--iterations"));
//! # Ok::<(), pragma_parse::ParseError>(())
//! ```

#![deny(missing_docs)]

mod directive;
mod error;
mod lexer;
mod parser;
mod quote;

pub use directive::{
    DEFAULT_CHECKPOINT_PERIOD, DEFAULT_ITERATION_VAR, Directive, InvalidValue, Kind, Objective,
    Parallel, Repeat, Selection, Target,
};
pub use error::{ErrorKind, ParseError};
pub use parser::{Cell, ParsedCell, canonical, parse_cell, parse_directive, split_words};
pub use quote::quote;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
