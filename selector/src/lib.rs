//! Deterministic best-result selection for `--max-by` / `--min-by`.
//!
//! A background operation produces candidates, each identified by its
//! iteration number and scored by the host: a checkpoint of a `repeat`
//! operation, a finished iteration of a `parallel` one. A [`Selector`] is
//! offered the candidates one at a time, in any order, and keeps the best
//! (or the best `k`) in memory that does not grow with the number of offers.
//! It knows nothing of parsing, storage or scheduling: the executor feeds it
//! scores and acts on what each [`Offer`] answers (keep the new best state,
//! drop the one it displaced).
//!
//! # Rules
//!
//! - `Max` keeps the highest score, `Min` the lowest.
//! - A NaN, a failed evaluation or a text that is not a number makes the
//!   candidate *invalid*: it is counted and reported ([`InvalidCounts`]),
//!   never chosen.
//! - Infinities are ordinary values: `inf` wins a `Max` selection.
//! - `-0.0` and `0.0` are the same score (stored as `0.0`).
//! - Ties go to the lowest iteration number, so the winner does not depend on
//!   the order in which candidates arrive (parallel iterations finish in any
//!   order).
//! - No valid candidate: [`Selector::result`] answers [`NoValidResult`], with
//!   how many candidates were invalid and why.
//!
//! Selectors over disjoint candidates [merge](Selector::merge) (partial
//! results of several workers, or of a resumed run): merging is associative
//! and commutative and equals offering everything to one selector. The
//! selector is serde-serialisable, so it goes into checkpoints and survives a
//! restart exactly (non-finite scores are written as the strings `"inf"` and
//! `"-inf"`, so JSON keeps them). With `serde_json`, enable its
//! `float_roundtrip` feature: without it, parsing may change the last digit
//! of a score, and a restored selector could rank differently.
//!
//! # Example
//!
//! ```
//! use pragma_selector::{Evaluation, InvalidReason, Direction, Offer, Selector};
//!
//! let mut selector = Selector::new(Direction::Max);
//! assert!(matches!(selector.offer(3, 0.91.into()), Offer::NewBest { evicted: None }));
//! // A tie: the lower iteration number wins, whatever the order of arrival.
//! assert!(matches!(selector.offer(1, 0.91.into()), Offer::NewBest { evicted: Some(c) } if c.iteration == 3));
//! assert!(matches!(selector.offer(2, 0.5.into()), Offer::NotKept));
//! // NaN and failures are counted, never chosen.
//! assert!(matches!(selector.offer(4, f64::NAN.into()), Offer::Invalid(InvalidReason::NaN)));
//! selector.offer(5, Evaluation::failed("NameError: name 'x_test' is not defined"));
//! // Hosts print scores as text.
//! selector.offer(6, Evaluation::parse(" 0.95\n"));
//!
//! let best = selector.result()?;
//! assert_eq!((best.iteration, best.score), (6, 0.95));
//! assert_eq!(selector.invalid().total(), 2);
//! # Ok::<(), pragma_selector::NoValidResult>(())
//! ```

#![deny(missing_docs)]

mod score;
mod selector;

pub use score::{Evaluation, InvalidReason, ScoreError, parse_score};
pub use selector::{
    Candidate, Direction, InvalidCounts, InvalidExample, MergeError, NoValidResult, Offer, Selector,
};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
