//! The directive's stop rules (`--patience`, `--target`) and how far an
//! operation is from them: a repeat's checkpoints since its best one, and
//! the reason it stopped once a rule is met.

use pragma_parse::{Directive, Objective, Target};

/// An operation's stop rules and what they have seen.
#[derive(Debug, Default)]
pub(crate) struct StopRules {
    /// Stop after this many checkpoints in a row with no better score.
    patience: Option<u64>,
    /// Stop once a candidate's score reaches this.
    target: Option<(Target, Objective)>,
    /// A repeat's checkpoints committed since its best one.
    since_best: u64,
    /// The best candidate's iteration, for the reason's "after iteration".
    best_iteration: Option<u64>,
    /// A repeat's checkpoint judged but not yet committed: its iteration,
    /// score and whether it is the new best. It counts once committed (a
    /// checkpoint that fails is judged again when it is redone).
    judged: Option<(u64, Option<f64>, bool)>,
    /// A rule was met: why, for the scheduler to be told.
    due: Option<String>,
    /// Why the operation stopped early, once it did.
    pub(crate) met: Option<String>,
}

impl StopRules {
    /// The rules `directive` sets, if any.
    pub(crate) fn of(directive: &Directive) -> StopRules {
        StopRules {
            patience: directive.patience(),
            target: directive
                .target()
                .zip(directive.select().map(|select| select.objective())),
            ..StopRules::default()
        }
    }

    /// A resumed operation's rules: its best so far (iteration and score),
    /// and a repeat's committed checkpoints since the best one, as its
    /// record has them. A rule its record already meets (a crash between
    /// the stop and the final record) is due at once.
    pub(crate) fn resume(&mut self, best: Option<(u64, Option<f64>)>, since_best: u64) {
        let Some((iteration, score)) = best else {
            return;
        };
        self.best_iteration = Some(iteration);
        self.since_best = since_best;
        self.due = self
            .target_reached(iteration, score)
            .or_else(|| self.out_of_patience());
    }

    /// An extended operation's rules start over: no patience used up, and
    /// its target met only by a new candidate; `best` is its best so far.
    pub(crate) fn restart(&mut self, best: Option<u64>) {
        self.best_iteration = best;
        self.since_best = 0;
    }

    /// A repeat's committed checkpoints since its best one.
    pub(crate) fn since_best(&self) -> u64 {
        self.since_best
    }

    /// A repeat's checkpoint after `iteration` was scored `score` (`None`:
    /// invalid), `new_best` or not; it counts once committed.
    pub(crate) fn checkpoint_judged(&mut self, iteration: u64, score: Option<f64>, new_best: bool) {
        self.judged = Some((iteration, score, new_best));
    }

    /// The checkpoint judged last is durable: the rules see it.
    pub(crate) fn checkpoint_committed(&mut self) {
        let Some((iteration, score, new_best)) = self.judged.take() else {
            return;
        };
        if new_best {
            self.since_best = 0;
            self.best_iteration = Some(iteration);
        } else {
            self.since_best += 1;
        }
        if self.due.is_none() && self.met.is_none() {
            self.due = self
                .target_reached(iteration, score)
                .or_else(|| self.out_of_patience());
        }
    }

    /// A parallel iteration finished with `score`: a target it reaches
    /// stops the operation.
    pub(crate) fn candidate(&mut self, iteration: u64, score: Option<f64>) {
        if self.due.is_none() && self.met.is_none() {
            self.due = self.target_reached(iteration, score);
        }
    }

    /// The reason a rule was met, once: the scheduler is to be told.
    pub(crate) fn take_due(&mut self) -> Option<String> {
        let reason = self.due.take()?;
        self.met = Some(reason.clone());
        Some(reason)
    }

    fn target_reached(&self, iteration: u64, score: Option<f64>) -> Option<String> {
        let (target, objective) = self.target?;
        let score = score.filter(|&score| target.reached_by(score, objective))?;
        Some(format!(
            "iteration {iteration} scored {score}, reaching the target {target} (`--target`)"
        ))
    }

    fn out_of_patience(&self) -> Option<String> {
        let patience = self.patience?;
        let best = self.best_iteration?;
        (self.since_best >= patience).then(|| {
            let checkpoints = if patience == 1 {
                "1 checkpoint".to_owned()
            } else {
                format!("{patience} checkpoints")
            };
            format!("no better score in {checkpoints} after iteration {best} (`--patience`)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(directive: &str) -> StopRules {
        StopRules::of(&directive.parse().unwrap())
    }

    #[test]
    fn patience_counts_committed_checkpoints_since_the_best() {
        let mut stop = rules("#pragma repeat --iterations 20 --patience 2 --max-by s");
        for (iteration, score, new_best) in [(0, 1.0, true), (1, 0.5, false), (2, 2.0, true)] {
            stop.checkpoint_judged(iteration, Some(score), new_best);
            stop.checkpoint_committed();
            assert_eq!(stop.take_due(), None);
        }
        // A checkpoint that failed and was judged again counts once.
        stop.checkpoint_judged(3, Some(1.0), false);
        stop.checkpoint_judged(3, Some(1.0), false);
        stop.checkpoint_committed();
        assert_eq!(stop.take_due(), None);
        stop.checkpoint_judged(4, None, false);
        stop.checkpoint_committed();
        assert_eq!(
            stop.take_due().as_deref(),
            Some("no better score in 2 checkpoints after iteration 2 (`--patience`)")
        );
        assert_eq!(stop.take_due(), None, "said once");
    }

    #[test]
    fn a_target_is_reached_from_the_objectives_side() {
        let mut stop = rules("#pragma parallel --iterations 20 --target 0.5 --min-by loss");
        stop.candidate(3, Some(0.7));
        stop.candidate(4, None);
        assert_eq!(stop.take_due(), None);
        stop.candidate(5, Some(0.5));
        assert_eq!(
            stop.take_due().as_deref(),
            Some("iteration 5 scored 0.5, reaching the target 0.5 (`--target`)")
        );
    }

    #[test]
    fn a_resumed_operation_that_already_met_a_rule_stops_at_once() {
        // The best at iteration 9, three checkpoints since it.
        let mut stop =
            rules("#pragma repeat --iterations 50 --checkpoint-period 5 --patience 3 --max-by s");
        stop.resume(Some((9, Some(1.0))), 3);
        assert!(stop.take_due().unwrap().contains("after iteration 9"));
        let mut stop =
            rules("#pragma repeat --iterations 50 --checkpoint-period 5 --patience 4 --max-by s");
        stop.resume(Some((9, Some(1.0))), 3);
        assert_eq!(stop.take_due(), None);
        let mut stop = rules("#pragma parallel --iterations 9 --target 2 --max-by s");
        stop.resume(Some((4, Some(3.0))), 0);
        assert!(stop.take_due().unwrap().starts_with("iteration 4 scored 3"));
        // Extended, the rules start over.
        let mut stop = rules("#pragma parallel --iterations 9 --target 2 --max-by s");
        stop.restart(Some(4));
        assert_eq!(stop.take_due(), None);
    }
}
