//! Property tests: round trips, quoting, and robustness on any input.

use proptest::prelude::*;

use pragma_parse::{
    Directive, Objective, Parallel, Repeat, Selection, Target, parse_cell, parse_directive, quote,
};

fn selection() -> impl Strategy<Value = Selection> {
    (
        prop_oneof![Just(Objective::Max), Just(Objective::Min)],
        "[^\n]{1,40}".prop_filter("not blank, no control characters", |s| {
            !s.trim().is_empty()
                && !s
                    .chars()
                    .any(|c| c.is_control() && !matches!(c, '\t' | '\r'))
        }),
    )
        .prop_map(|(objective, expr)| Selection::new(objective, expr).unwrap())
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![1..=100u64, Just(u64::MAX), 1..=u64::MAX]
}

fn identifier() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,12}"
}

/// Any finite score: small, huge, tiny, negative, whole.
fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (-1e6..1e6f64),
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
        (-1000i64..1000).prop_map(|x| x as f64),
    ]
    .prop_map(|x| Target::new(x).unwrap())
}

fn directive() -> impl Strategy<Value = Directive> {
    prop_oneof![
        Just(Directive::Async),
        (
            (count(), count(), identifier(), selection()),
            proptest::option::of(count()),
            proptest::option::of(target()),
        )
            .prop_map(|((n, k, var, sel), patience, target)| {
                Directive::Repeat(
                    Repeat::new(n, k, var, sel)
                        .unwrap()
                        .with_patience(patience)
                        .unwrap()
                        .with_target(target),
                )
            }),
        (
            count(),
            proptest::option::of(count()),
            identifier(),
            selection(),
            proptest::option::of(target()),
        )
            .prop_map(|(n, p, var, sel, target)| Directive::Parallel(
                Parallel::new(n, p, var, sel).unwrap().with_target(target)
            )),
    ]
}

/// Values with everything the quoting rules treat specially, but no line break.
fn tricky_value() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("'"),
            Just("\""),
            Just("\\"),
            Just(" "),
            Just("\t"),
            Just("$"),
            Just("`"),
            Just("-"),
            Just("="),
            Just("#"),
            Just("a"),
            Just("é"),
            Just("("),
            Just(")"),
            Just("*"),
            Just(";"),
            Just("\r"),
        ],
        0..24,
    )
    .prop_map(|pieces| pieces.concat())
}

/// One way of writing a piece of a value as a shell word.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// `shlex.quote`: bare or single-quoted.
    Quote,
    /// Double quotes, escaping `\`, `"`, `$` and a backtick.
    Double,
    /// Outside quotes, every character escaped with a backslash.
    Backslashes,
}

fn write_as(style: Style, piece: &str) -> String {
    match style {
        Style::Quote => quote(piece).into_owned(),
        Style::Double => {
            let mut out = String::from("\"");
            for c in piece.chars() {
                if matches!(c, '\\' | '"' | '$' | '`') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
            out
        }
        Style::Backslashes => piece.chars().flat_map(|c| ['\\', c]).collect(),
    }
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![
        Just(Style::Quote),
        Just(Style::Double),
        Just(Style::Backslashes)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printing_then_parsing_gives_the_same_directive(d in directive()) {
        let printed = d.to_string();
        prop_assert_eq!(parse_directive(&printed).map_err(|e| e.render(&printed, "printed")), Ok(d.clone()));
        let json = serde_json::to_string(&d).unwrap();
        prop_assert_eq!(serde_json::from_str::<Directive>(&json).unwrap(), d);
    }

    #[test]
    fn a_value_written_any_way_reads_back_unchanged(
        value in tricky_value(),
        pieces in proptest::collection::vec((style(), 0usize..8), 1..5),
        equals_form in any::<bool>(),
    ) {
        // Cut the value into pieces, each written in its own style; adjacent
        // pieces join into one word.
        let chars: Vec<char> = value.chars().collect();
        let mut written = String::new();
        let mut at = 0;
        for (i, (style, len)) in pieces.iter().enumerate() {
            let end = if i + 1 == pieces.len() { chars.len() } else { (at + len).min(chars.len()) };
            let piece: String = chars[at..end].iter().collect();
            written.push_str(&write_as(*style, &piece));
            at = end;
        }
        let separator = if equals_form { "=" } else { " " };
        // `x` keeps the expression from being blank whatever the value.
        let line = format!("#pragma parallel --iterations 1 --min-by{separator}x{written}");
        let parsed = parse_directive(&line).map_err(|e| e.render(&line, "line"));
        let expected = format!("x{value}");
        prop_assert_eq!(parsed.map(|d| d.select().map(|s| s.expr().to_owned())), Ok(Some(expected)));
    }

    #[test]
    fn any_text_gives_a_directive_or_an_error_inside_the_input(text in any::<String>()) {
        check_never_panics(&text)?;
    }

    #[test]
    fn shell_like_text_gives_a_directive_or_an_error_inside_the_input(
        tail in "[-a-z=0-9 '\"\\\\\t\r\n#$]{0,80}",
        kind in prop_oneof![Just("repeat"), Just("parallel"), Just("async"), Just("")],
    ) {
        check_never_panics(&format!("#pragma {kind} {tail}"))?;
        check_never_panics(&format!("#pragma {kind} --iterations 3 --max-by {tail}"))?;
    }
}

fn check_never_panics(text: &str) -> Result<(), TestCaseError> {
    match parse_cell(text) {
        Ok(cell) => {
            prop_assert!(cell.body_start <= text.len());
            prop_assert_eq!(cell.body, &text[cell.body_start..]);
            let printed = cell.directive.to_string();
            prop_assert_eq!(parse_directive(&printed).ok(), Some(cell.directive));
        }
        Err(error) => {
            let span = error.span();
            prop_assert!(
                span.start <= span.end && span.end <= text.len(),
                "{span:?} in {}",
                text.len()
            );
            prop_assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
            let before = &text[..span.start];
            prop_assert_eq!(error.line(), before.matches('\n').count() + 1);
            let rendered = error.render(text, "cell");
            prop_assert!(rendered.starts_with("error: "));
        }
    }
    Ok(())
}

proptest! {
    /// `#pragma readonly` and `#pragma ro` lines after any directive give
    /// their names, in order, whatever the separators; the body follows.
    #[test]
    fn readonly_lines_give_their_names(
        d in directive(),
        lines in proptest::collection::vec(
            (
                prop_oneof![Just("readonly"), Just("ro")],
                proptest::collection::vec(identifier(), 1..5),
                prop_oneof![Just(", "), Just(" "), Just(",\t"), Just(",")],
            ),
            0..4,
        ),
    ) {
        let mut cell = format!("{d}\n");
        let mut expected = Vec::new();
        for (keyword, names, separator) in &lines {
            cell.push_str(&format!("#pragma {keyword} {}\n", names.join(separator)));
            expected.extend(names.iter().cloned());
        }
        cell.push_str("body()\n");
        let parsed = parse_cell(&cell).unwrap();
        prop_assert_eq!(parsed.directive, d);
        prop_assert_eq!(parsed.readonly, expected);
        prop_assert_eq!(parsed.body, "body()\n");
    }
}
