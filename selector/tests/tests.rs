//! The selector's rules, and property tests against a naive reference that
//! collects every candidate and sorts.

use pragma_selector::{
    Candidate, Direction, Evaluation, InvalidReason, NoValidResult, Offer, Selector, parse_score,
};
use proptest::prelude::*;

mod rules {
    use super::*;

    #[test]
    fn max_keeps_the_highest_and_min_the_lowest() {
        let mut max = Selector::new(Direction::Max);
        let mut min = Selector::new(Direction::Min);
        for (i, score) in [0.5, 0.9, 0.1, 0.7].into_iter().enumerate() {
            max.offer(i as u64, score.into());
            min.offer(i as u64, score.into());
        }
        assert_eq!(
            max.best(),
            Some(Candidate {
                iteration: 1,
                score: 0.9
            })
        );
        assert_eq!(
            min.best(),
            Some(Candidate {
                iteration: 2,
                score: 0.1
            })
        );
    }

    #[test]
    fn ties_go_to_the_lowest_iteration_in_any_order() {
        for order in [[5, 2, 9], [9, 5, 2], [2, 9, 5]] {
            let mut s = Selector::new(Direction::Min);
            for i in order {
                s.offer(i, 1.0.into());
            }
            assert_eq!(s.best().unwrap().iteration, 2);
        }
    }

    #[test]
    fn nan_and_failures_are_counted_never_chosen() {
        let mut s = Selector::new(Direction::Max);
        assert_eq!(
            s.offer(0, f64::NAN.into()),
            Offer::Invalid(InvalidReason::NaN)
        );
        s.offer(1, Evaluation::failed("ZeroDivisionError"));
        s.offer(2, Evaluation::parse("accuracy: high"));
        s.offer(3, (-1.0).into());
        assert_eq!(
            s.best(),
            Some(Candidate {
                iteration: 3,
                score: -1.0
            })
        );
        let invalid = s.invalid();
        assert_eq!(
            (invalid.nan, invalid.evaluation_failed, invalid.not_a_number),
            (1, 1, 1)
        );
        assert_eq!(invalid.first.as_ref().unwrap().iteration, 0);
        assert_eq!(s.valid_count(), 1);
    }

    #[test]
    fn infinities_are_ordinary_values() {
        let mut s = Selector::new(Direction::Max);
        s.offer(0, 1e308.into());
        assert!(s.offer(1, f64::INFINITY.into()).is_new_best());
        assert_eq!(s.best().unwrap().score, f64::INFINITY);
        let mut s = Selector::new(Direction::Min);
        s.offer(0, f64::NEG_INFINITY.into());
        assert_eq!(s.offer(1, f64::MIN.into()), Offer::NotKept);
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        let mut s = Selector::new(Direction::Max);
        s.offer(4, (-0.0).into());
        assert_eq!(s.offer(7, 0.0.into()), Offer::NotKept);
        assert_eq!(
            s.offer(1, 0.0.into()),
            Offer::NewBest {
                evicted: Some(Candidate {
                    iteration: 4,
                    score: 0.0
                })
            }
        );
    }

    #[test]
    fn each_offer_says_what_to_keep_and_what_to_drop() {
        let mut s = Selector::new(Direction::Max);
        assert_eq!(s.offer(0, 1.0.into()), Offer::NewBest { evicted: None });
        assert_eq!(
            s.offer(1, 2.0.into()),
            Offer::NewBest {
                evicted: Some(Candidate {
                    iteration: 0,
                    score: 1.0
                })
            }
        );
        assert_eq!(s.offer(2, 1.5.into()), Offer::NotKept);
    }

    #[test]
    fn top_k_keeps_the_best_k_in_order() {
        let mut s = Selector::top_k(Direction::Max, 3);
        for (i, score) in [1.0, 5.0, 3.0, 4.0, 2.0].into_iter().enumerate() {
            s.offer(i as u64, score.into());
        }
        let top: Vec<u64> = s.top().iter().map(|c| c.iteration).collect();
        assert_eq!(top, vec![1, 3, 2]);
        assert_eq!(
            s.offer(9, 3.5.into()),
            Offer::Kept {
                rank: 2,
                evicted: Some(Candidate {
                    iteration: 2,
                    score: 3.0
                })
            }
        );
    }

    #[test]
    fn no_valid_candidate_is_a_clear_answer() {
        let s = Selector::new(Direction::Max);
        assert_eq!(
            s.result().unwrap_err().to_string(),
            "no valid result: no candidate was scored"
        );
        let mut s = Selector::new(Direction::Max);
        s.offer(3, f64::NAN.into());
        s.offer(1, Evaluation::failed("NameError: x"));
        s.offer(2, f64::NAN.into());
        let err: NoValidResult = s.result().unwrap_err();
        assert_eq!(
            err.to_string(),
            "no valid result: all 3 candidates were invalid (2 NaN, 1 failed to evaluate); \
             iteration 1: the expression could not be evaluated: NameError: x"
        );
    }

    #[test]
    fn merging_needs_the_same_settings() {
        let mut a = Selector::new(Direction::Max);
        assert!(a.merge(&Selector::new(Direction::Min)).is_err());
        assert!(a.merge(&Selector::top_k(Direction::Max, 2)).is_err());
    }

    #[test]
    fn infinite_scores_survive_json() {
        let mut s = Selector::top_k(Direction::Max, 2);
        s.offer(0, f64::INFINITY.into());
        s.offer(1, f64::NEG_INFINITY.into());
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""score":"inf""#), "{json}");
        assert_eq!(serde_json::from_str::<Selector>(&json).unwrap(), s);
    }

    #[test]
    fn damaged_state_is_refused() {
        let json = r#"{"objective":"max","keep":1,"top":[{"iteration":0,"score":1.0},{"iteration":1,"score":2.0}],"valid":2,"invalid":{"nan":0,"evaluation_failed":0,"not_a_number":0,"first":null}}"#;
        let err = serde_json::from_str::<Selector>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exceed"), "{err}");
    }
}

mod score_text {
    use super::*;

    #[test]
    fn numbers_as_hosts_print_them() {
        assert_eq!(parse_score("0.93"), Ok(0.93));
        assert_eq!(parse_score("-1e-3"), Ok(-0.001));
        assert_eq!(parse_score(" 42 \n"), Ok(42.0));
        assert_eq!(parse_score("inf"), Ok(f64::INFINITY));
        assert_eq!(parse_score("-Infinity"), Ok(f64::NEG_INFINITY));
        assert!(parse_score("nan").unwrap().is_nan());
        assert!(parse_score("NaN").unwrap().is_nan());
    }

    #[test]
    fn the_rest_gets_a_clear_error() {
        assert_eq!(
            parse_score(" \n").unwrap_err().to_string(),
            "the score is empty: the selection expression must print a number"
        );
        assert_eq!(
            parse_score("0,93").unwrap_err().to_string(),
            "`0,93` is not a number: the selection expression must print one number, such as `0.93`, `-1e-3`, `nan` or `inf` (use `.` as the decimal separator)"
        );
        assert!(parse_score("1 2").is_err());
        assert!(parse_score("0x10").is_err());
        assert!(
            parse_score("tensor(0.5)")
                .unwrap_err()
                .to_string()
                .contains("float(...)")
        );
        let long = "y".repeat(500);
        assert!(parse_score(&long).unwrap_err().to_string().len() < 300);
    }
}

/// Scores with many ties, infinities, zeros of both signs, and invalid ones.
fn evaluation() -> impl Strategy<Value = Evaluation> {
    prop_oneof![
        4 => (-3i32..3).prop_map(|n| Evaluation::Score(f64::from(n))),
        2 => any::<f64>().prop_map(Evaluation::Score),
        1 => Just(Evaluation::Score(f64::INFINITY)),
        1 => Just(Evaluation::Score(f64::NEG_INFINITY)),
        1 => Just(Evaluation::Score(-0.0)),
        1 => Just(Evaluation::Score(f64::NAN)),
        1 => "[a-z]{0,3}".prop_map(Evaluation::failed),
        1 => "[a-z ]{0,3}".prop_map(|t| Evaluation::parse(&t)),
    ]
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Max), Just(Direction::Min)]
}

/// Candidates with distinct iteration numbers, in a random order.
fn candidates() -> impl Strategy<Value = Vec<(u64, Evaluation)>> {
    proptest::collection::vec(evaluation(), 0..40)
        .prop_map(|evals| {
            evals
                .into_iter()
                .enumerate()
                .map(|(i, e)| (i as u64 * 3 % 101, e))
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

/// The reference: keep every valid candidate, sort, take the first k.
fn reference(direction: Direction, k: usize, candidates: &[(u64, Evaluation)]) -> Vec<Candidate> {
    let mut valid: Vec<Candidate> = candidates
        .iter()
        .filter_map(|(iteration, e)| match e {
            Evaluation::Score(s) if !s.is_nan() => Some(Candidate {
                iteration: *iteration,
                score: if *s == 0.0 { 0.0 } else { *s },
            }),
            _ => None,
        })
        .collect();
    valid.sort_by(|a, b| {
        let by_score = a.score.partial_cmp(&b.score).unwrap();
        let by_score = if direction == Direction::Max {
            by_score.reverse()
        } else {
            by_score
        };
        by_score.then(a.iteration.cmp(&b.iteration))
    });
    valid.truncate(k);
    valid
}

fn offer_all(mut selector: Selector, candidates: &[(u64, Evaluation)]) -> Selector {
    for (iteration, evaluation) in candidates {
        selector.offer(*iteration, evaluation.clone());
    }
    selector
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn best_and_top_k_equal_the_reference(
        direction in direction(),
        k in 1usize..6,
        candidates in candidates(),
    ) {
        let top_k = offer_all(Selector::top_k(direction, k), &candidates);
        prop_assert_eq!(top_k.top(), &reference(direction, k, &candidates)[..]);
        let best = offer_all(Selector::new(direction), &candidates);
        prop_assert_eq!(best.best(), reference(direction, 1, &candidates).first().copied());
        let invalid = candidates.iter().filter(|(_, e)| e.invalid_reason().is_some()).count();
        prop_assert_eq!(best.invalid().total(), invalid as u64);
        prop_assert_eq!(best.valid_count() + invalid as u64, candidates.len() as u64);
        prop_assert_eq!(best.result().is_err(), best.valid_count() == 0);
    }

    #[test]
    fn the_order_of_arrival_does_not_matter(
        direction in direction(),
        k in 1usize..4,
        candidates in candidates(),
    ) {
        let mut backwards = candidates.clone();
        backwards.reverse();
        prop_assert_eq!(
            offer_all(Selector::top_k(direction, k), &candidates),
            offer_all(Selector::top_k(direction, k), &backwards)
        );
    }

    #[test]
    fn merging_is_associative_commutative_and_equals_one_selector(
        direction in direction(),
        k in 1usize..4,
        candidates in candidates(),
        cut1 in 0usize..40,
        cut2 in 0usize..40,
    ) {
        let (c1, c2) = (cut1.min(candidates.len()), cut2.min(candidates.len()));
        let (lo, hi) = (c1.min(c2), c1.max(c2));
        let fresh = || Selector::top_k(direction, k);
        let a = offer_all(fresh(), &candidates[..lo]);
        let b = offer_all(fresh(), &candidates[lo..hi]);
        let c = offer_all(fresh(), &candidates[hi..]);
        let merged = |x: &Selector, y: &Selector| {
            let mut m = x.clone();
            m.merge(y).unwrap();
            m
        };
        let left = merged(&merged(&a, &b), &c);
        let right = merged(&a, &merged(&b, &c));
        let swapped = merged(&merged(&c, &a), &b);
        let single = offer_all(fresh(), &candidates);
        prop_assert_eq!(&left, &right);
        prop_assert_eq!(&left, &swapped);
        prop_assert_eq!(&left, &single);
    }

    #[test]
    fn serialising_mid_stream_changes_nothing(
        direction in direction(),
        k in 1usize..4,
        candidates in candidates(),
        cut in 0usize..40,
    ) {
        let cut = cut.min(candidates.len());
        let first = offer_all(Selector::top_k(direction, k), &candidates[..cut]);
        let json = serde_json::to_string(&first).unwrap();
        let restored: Selector = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&restored, &first);
        prop_assert_eq!(
            offer_all(restored, &candidates[cut..]),
            offer_all(Selector::top_k(direction, k), &candidates)
        );
    }
}
