//! Behaviour of the directive parser as a user of the crate sees it.

use pragma_parse::{
    Directive, ErrorKind, Kind, Objective, Parallel, Repeat, Selection, Target, parse_cell,
    parse_directive, split_words,
};

fn parse(line: &str) -> Directive {
    match parse_directive(line) {
        Ok(d) => d,
        Err(e) => panic!("`{line}` did not parse:\n{}", e.render(line, "test")),
    }
}

fn error_kind(cell: &str) -> ErrorKind {
    parse_cell(cell).unwrap_err().kind()
}

fn repeat(line: &str) -> Repeat {
    match parse(line) {
        Directive::Repeat(r) => r,
        other => panic!("expected repeat, got {other:?}"),
    }
}

fn parallel(line: &str) -> Parallel {
    match parse(line) {
        Directive::Parallel(p) => p,
        other => panic!("expected parallel, got {other:?}"),
    }
}

mod options {
    use super::*;

    #[test]
    fn repeat_with_every_option() {
        let r = repeat(
            "#pragma repeat --iterations 20 --checkpoint-period 5 --iteration-var step --max-by acc",
        );
        assert_eq!(r.iterations(), 20);
        assert_eq!(r.checkpoint_period(), 5);
        assert_eq!(r.iteration_var(), "step");
        assert_eq!(r.select().objective(), Objective::Max);
        assert_eq!(r.select().expr(), "acc");
    }

    #[test]
    fn repeat_defaults() {
        let r = repeat("#pragma repeat --iterations 3 --min-by loss");
        assert_eq!(r.checkpoint_period(), 1);
        assert_eq!(r.iteration_var(), "iteration");
        assert_eq!(r.select().objective(), Objective::Min);
    }

    #[test]
    fn parallel_with_every_option() {
        let p = parallel(
            "#pragma parallel --iterations 20 --parallel-runs 5 --iteration-var var --max-by \"model.evaluate(x_test, y_test, verbose=0)[1]\"",
        );
        assert_eq!(p.iterations(), 20);
        assert_eq!(p.parallel_runs(), Some(5));
        assert_eq!(p.iteration_var(), "var");
        assert_eq!(
            p.select().expr(),
            "model.evaluate(x_test, y_test, verbose=0)[1]"
        );
    }

    #[test]
    fn parallel_runs_default_to_the_executor() {
        assert_eq!(
            parallel("#pragma parallel --iterations 2 --max-by a").parallel_runs(),
            None
        );
    }

    #[test]
    fn stop_rules_are_read_and_printed_in_place() {
        let r = repeat(
            "#pragma repeat --max-by acc --target=0.95 --iterations 100 --patience 3 --checkpoint-period 5",
        );
        assert_eq!(r.patience(), Some(3));
        assert_eq!(r.target().map(Target::score), Some(0.95));
        assert_eq!(
            Directive::Repeat(r).to_string(),
            "#pragma repeat --iterations 100 --checkpoint-period 5 --patience 3 --target 0.95 --iteration-var iteration --max-by acc"
        );
        let p = parse("#pragma parallel --iterations 8 --target -1e-3 --min-by loss");
        assert_eq!(p.target().map(Target::score), Some(-0.001));
        assert_eq!(p.patience(), None);
        assert_eq!(
            p.to_string(),
            "#pragma parallel --iterations 8 --target -0.001 --iteration-var iteration --min-by loss"
        );
        // Without them, every iteration runs, and the canonical form is
        // what it was before they existed.
        let plain = parse("#pragma repeat --iterations 3 --max-by a");
        assert_eq!((plain.patience(), plain.target()), (None, None));
        assert_eq!(
            plain.to_string(),
            "#pragma repeat --iterations 3 --checkpoint-period 1 --iteration-var iteration --max-by a"
        );
    }

    #[test]
    fn a_target_is_reached_from_the_objectives_side() {
        let target = Target::new(2.0).unwrap();
        assert!(target.reached_by(2.0, Objective::Max) && target.reached_by(2.5, Objective::Max));
        assert!(!target.reached_by(1.5, Objective::Max));
        assert!(target.reached_by(2.0, Objective::Min) && target.reached_by(-3.0, Objective::Min));
        assert!(!target.reached_by(2.5, Objective::Min));
        assert_eq!(Target::new(-0.0).unwrap(), Target::new(0.0).unwrap());
    }

    #[test]
    fn async_has_no_options() {
        assert_eq!(parse("#pragma async"), Directive::Async);
        assert_eq!(parse("#pragma async").kind(), Kind::Async);
        assert_eq!(parse("#pragma async").iterations(), 1);
    }

    #[test]
    fn equals_form_and_space_form_mean_the_same() {
        assert_eq!(
            parse(
                "#pragma repeat --iterations=4 --checkpoint-period=2 --iteration-var=i --max-by=f(x)"
            ),
            parse(
                "#pragma repeat --iterations 4 --checkpoint-period 2 --iteration-var i --max-by f(x)"
            )
        );
    }

    #[test]
    fn an_equals_sign_inside_a_value_stays() {
        let r = repeat("#pragma repeat --iterations 1 --max-by=a==b");
        assert_eq!(r.select().expr(), "a==b");
    }

    #[test]
    fn option_order_does_not_matter() {
        assert_eq!(
            parse("#pragma repeat --max-by acc --iterations 4"),
            parse("#pragma repeat --iterations 4 --max-by acc")
        );
    }

    #[test]
    fn the_largest_count_is_accepted() {
        let r = repeat("#pragma repeat --iterations 18446744073709551615 --max-by a");
        assert_eq!(r.iterations(), u64::MAX);
        assert_eq!(
            repeat("#pragma repeat --iterations 007 --max-by a").iterations(),
            7
        );
    }

    #[test]
    fn a_value_that_starts_with_dashes_must_be_quoted() {
        assert_eq!(
            repeat("#pragma repeat --iterations 1 --min-by '--x'")
                .select()
                .expr(),
            "--x"
        );
        assert_eq!(
            error_kind("#pragma repeat --iterations 1 --min-by --x"),
            ErrorKind::MissingValue
        );
    }
}

mod cells {
    use super::*;

    #[test]
    fn blank_lines_before_the_directive_are_skipped() {
        let cell = "\n  \n\t\n#pragma async\nrun()\n";
        let parsed = parse_cell(cell).unwrap();
        assert_eq!(parsed.directive, Directive::Async);
        assert_eq!(parsed.body, "run()\n");
        assert_eq!(&cell[parsed.directive_span.clone()], "#pragma async");
    }

    #[test]
    fn the_body_starts_after_a_continued_directive() {
        let cell = "#pragma repeat --iterations 2 \\\n  --max-by acc\nline1\nline2";
        let parsed = parse_cell(cell).unwrap();
        assert_eq!(parsed.body, "line1\nline2");
        assert_eq!(parsed.body_start, cell.find("line1").unwrap());
        assert_eq!(
            &cell[parsed.directive_span],
            "#pragma repeat --iterations 2 \\\n  --max-by acc"
        );
    }

    #[test]
    fn crlf_line_endings_work() {
        let cell = "#pragma repeat --iterations 2 \\\r\n --max-by acc\r\nbody\r\n";
        let parsed = parse_cell(cell).unwrap();
        assert_eq!(parsed.body, "body\r\n");
        assert_eq!(parsed.directive.select().unwrap().expr(), "acc");
    }

    #[test]
    fn a_byte_order_mark_before_the_directive_is_no_text() {
        let cell = "\u{feff}#pragma repeat --iterations 2 --max-by acc\nbody\n";
        let parsed = parse_cell(cell).unwrap();
        assert_eq!(parsed.body, "body\n");
        assert_eq!(parsed.directive.iterations(), 2);
    }

    #[test]
    fn a_control_character_in_the_directive_is_named_where_it_is() {
        for (cell, at) in [
            ("#pragma repeat --iterations 2 --max-by \"a\0b\"\nbody", 41),
            (
                "#pragma repeat --iterations 2 --max-by a\u{1b}[2J\nbody",
                40,
            ),
        ] {
            let error = parse_cell(cell).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ControlCharacter, "{cell:?}");
            assert_eq!(error.span().start, at, "{cell:?}");
            assert!(
                error.message().contains("control character U+00"),
                "{}",
                error.message()
            );
        }
        // Inside a continued line, the expression itself says so.
        let cell = "#pragma repeat --iterations 2 \\\n --max-by \"a\u{7f}\"\nbody";
        let error = parse_cell(cell).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ControlCharacter);
        assert!(error.message().contains("U+007F"), "{}", error.message());
    }

    #[test]
    fn a_directive_without_body_has_an_empty_body() {
        let parsed = parse_cell("#pragma async").unwrap();
        assert_eq!(parsed.body, "");
        assert_eq!(parsed.body_start, "#pragma async".len());
    }

    #[test]
    fn parse_directive_rejects_a_body() {
        let err = parse_directive("#pragma async\nprint(1)\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TrailingText);
        assert_eq!((err.line(), err.column()), (2, 1));
    }
}

mod quoting {
    use super::*;

    fn expr(value: &str) -> String {
        repeat(&format!("#pragma repeat --iterations 1 --max-by {value}"))
            .select()
            .expr()
            .to_owned()
    }

    #[test]
    fn the_rules_of_the_posix_shell() {
        assert_eq!(expr(r#"a"b c"d"#), "ab cd");
        assert_eq!(expr(r#"'single $x \n "q"'"#), r#"single $x \n "q""#);
        assert_eq!(expr(r#""\\ \" \$ \` \n""#), r#"\ " $ ` \n"#);
        assert_eq!(expr(r"a\ b\'c"), "a b'c");
        assert_eq!(expr(r#"'it'"'"'s'"#), "it's");
    }

    #[test]
    fn backslash_newline_joins_lines_inside_and_outside_double_quotes() {
        assert_eq!(expr("ab\\\ncd"), "abcd");
        assert_eq!(expr("\"ab\\\ncd\""), "abcd");
    }

    #[test]
    fn split_words_is_shlex_split() {
        assert_eq!(
            split_words("--max-by \"f(x, y)\" 'a b' c\\ d").unwrap(),
            vec!["--max-by", "f(x, y)", "a b", "c d"]
        );
        assert_eq!(split_words("").unwrap(), Vec::<String>::new());
        assert_eq!(
            split_words("a\nb").unwrap_err().kind(),
            ErrorKind::TrailingText
        );
    }
}

mod errors {
    use super::*;

    #[test]
    fn each_problem_has_its_kind() {
        let cases = [
            ("", ErrorKind::EmptyCell),
            ("print(1)", ErrorKind::NotADirective),
            ("#pragma", ErrorKind::MissingKind),
            (
                "#pragma repet --iterations 1 --max-by a",
                ErrorKind::UnknownKind,
            ),
            (
                "#pragma repeat --iter 1 --max-by a",
                ErrorKind::UnknownOption,
            ),
            (
                "#pragma parallel --iterations 1 --checkpoint-period 2 --max-by a",
                ErrorKind::OptionNotForKind,
            ),
            (
                "#pragma repeat --iterations 1 --parallel-runs 2 --max-by a",
                ErrorKind::OptionNotForKind,
            ),
            ("#pragma async --max-by a", ErrorKind::OptionNotForKind),
            (
                "#pragma repeat --iterations 1 --iterations 2 --max-by a",
                ErrorKind::DuplicateOption,
            ),
            (
                "#pragma repeat --iterations 1 --max-by a --min-by b",
                ErrorKind::ConflictingSelection,
            ),
            ("#pragma repeat --iterations", ErrorKind::MissingValue),
            (
                "#pragma repeat --iterations 1 stray --max-by a",
                ErrorKind::UnexpectedArgument,
            ),
            ("#pragma repeat --max-by a", ErrorKind::MissingOption),
            ("#pragma repeat --iterations 1", ErrorKind::MissingSelection),
            (
                "#pragma repeat --iterations x --max-by a",
                ErrorKind::InvalidNumber,
            ),
            (
                "#pragma repeat --iterations 0 --max-by a",
                ErrorKind::NumberOutOfRange,
            ),
            (
                "#pragma repeat --iterations -1 --max-by a",
                ErrorKind::NumberOutOfRange,
            ),
            (
                "#pragma repeat --iterations 18446744073709551616 --max-by a",
                ErrorKind::NumberOutOfRange,
            ),
            (
                "#pragma repeat --iterations 1 --iteration-var 9 --max-by a",
                ErrorKind::InvalidIdentifier,
            ),
            (
                "#pragma repeat --iterations 1 --max-by ''",
                ErrorKind::EmptyExpression,
            ),
            (
                "#pragma repeat --iterations 1 --max-by 'a",
                ErrorKind::UnterminatedQuote,
            ),
            (
                "#pragma repeat --iterations 1 --max-by \"a",
                ErrorKind::UnterminatedQuote,
            ),
            (
                "#pragma repeat --iterations 1 --max-by a\\",
                ErrorKind::TrailingBackslash,
            ),
        ];
        for (cell, kind) in cases {
            assert_eq!(error_kind(cell), kind, "for `{cell}`");
        }
    }

    #[test]
    fn an_error_gives_line_column_span_and_suggestion() {
        let cell = "\n#pragma parallel --iterations 3 --min_by loss\n";
        let err = parse_cell(cell).unwrap_err();
        assert_eq!(err.message(), "unknown option `--min_by`");
        assert_eq!((err.line(), err.column()), (2, 33));
        assert_eq!(&cell[err.span()], "--min_by");
        assert_eq!(err.suggestion(), Some("--min-by"));
        assert_eq!(err.to_string(), "2:33: unknown option `--min_by`");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let cell = "#pragma repeat --iterations 1 --max-by 'é' --bad";
        let err = parse_cell(cell).unwrap_err();
        assert_eq!(err.column(), 44);
        assert_eq!(&cell[err.span()], "--bad");
    }

    #[test]
    fn long_garbage_is_cut_short_in_messages() {
        let junk = "x".repeat(10_000);
        let err = parse_cell(&format!("#pragma repeat --iterations {junk}")).unwrap_err();
        assert!(err.message().len() < 100, "{}", err.message());
        assert!(err.suggestion().is_none());
    }
}

mod construction {
    use super::*;
    use pragma_parse::InvalidValue;

    #[test]
    fn constructors_refuse_what_cannot_be_written() {
        let select = Selection::new(Objective::Max, "acc").unwrap();
        assert_eq!(
            Repeat::new(0, 1, "i", select.clone()),
            Err(InvalidValue::Zero {
                option: "iterations"
            })
        );
        assert!(matches!(
            Parallel::new(1, Some(0), "i", select.clone()),
            Err(InvalidValue::Zero { .. })
        ));
        assert!(matches!(
            Repeat::new(1, 1, "a-b", select),
            Err(InvalidValue::InvalidIdentifier(_))
        ));
        assert_eq!(
            Selection::new(Objective::Min, " "),
            Err(InvalidValue::EmptyExpression)
        );
        assert_eq!(
            Selection::new(Objective::Min, "a\nb"),
            Err(InvalidValue::LineBreakInExpression)
        );
        let repeat = Repeat::new(5, 1, "i", Selection::new(Objective::Max, "a").unwrap()).unwrap();
        assert_eq!(
            repeat.with_patience(Some(0)),
            Err(InvalidValue::Zero { option: "patience" })
        );
        assert_eq!(
            Target::new(f64::INFINITY),
            Err(InvalidValue::NotFinite { option: "target" })
        );
    }

    #[test]
    fn json_has_the_documented_shape() {
        let d = parse("#pragma parallel --iterations 20 --iteration-var var --min-by x");
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"kind":"parallel","iterations":20,"parallel_runs":null,"iteration_var":"var","select":{"objective":"min","expr":"x"}}"#
        );
        assert_eq!(
            serde_json::to_string(&Directive::Async).unwrap(),
            r#"{"kind":"async"}"#
        );
    }

    #[test]
    fn deserialising_checks_values_and_fills_defaults() {
        let d: Directive = serde_json::from_str(
            r#"{"kind":"repeat","iterations":3,"select":{"objective":"max","expr":"a"}}"#,
        )
        .unwrap();
        assert_eq!(d, parse("#pragma repeat --iterations 3 --max-by a"));
        let bad = serde_json::from_str::<Directive>(
            r#"{"kind":"repeat","iterations":0,"select":{"objective":"max","expr":"a"}}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("at least 1"));
        let stopping: Directive = serde_json::from_str(
            r#"{"kind":"repeat","iterations":9,"patience":2,"target":0.5,"select":{"objective":"max","expr":"a"}}"#,
        )
        .unwrap();
        assert_eq!(
            stopping,
            parse("#pragma repeat --iterations 9 --patience 2 --target 0.5 --max-by a")
        );
        let no_patience = serde_json::from_str::<Directive>(
            r#"{"kind":"repeat","iterations":9,"patience":0,"select":{"objective":"max","expr":"a"}}"#,
        );
        assert!(no_patience.unwrap_err().to_string().contains("at least 1"));
    }
}

mod catalog;
mod properties;
mod shlex;
