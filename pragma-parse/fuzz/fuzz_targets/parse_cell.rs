//! Arbitrary bytes into the parser: it must never panic, every error span
//! must lie inside the input, and every directive must round-trip through
//! its canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match pragma_parse::parse_cell(text) {
        Ok(cell) => {
            assert_eq!(cell.body, &text[cell.body_start..]);
            let printed = cell.directive.to_string();
            let reparsed = pragma_parse::parse_directive(&printed).expect("canonical form parses");
            assert_eq!(reparsed, cell.directive);
        }
        Err(error) => {
            let span = error.span();
            assert!(span.start <= span.end && span.end <= text.len());
            assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
            let _ = error.render(text, "fuzz");
        }
    }
    let _ = pragma_parse::split_words(text);
});
