//! Splits the directive line into words by the POSIX shell's quoting rules.
//!
//! The rules (what `sh` does, and what Python's `shlex.split` does except for
//! the three escapes noted):
//! - outside quotes a backslash takes the next character literally;
//! - single quotes keep everything literally up to the next `'`;
//! - inside double quotes a backslash escapes only `\`, `"`, `$`, a backtick
//!   and a line break (`shlex` keeps the backslash before `$` and a backtick);
//!   before any other character it stays;
//! - a backslash before a line break, outside single quotes, joins the next
//!   line (`shlex` keeps the line break instead);
//! - adjacent pieces join into one word; blanks (space, tab, a lone carriage
//!   return) separate words; an unescaped line break ends the directive.
//!
//! Quotes must close on the line they open on (or on a line joined to it by a
//! trailing backslash): a forgotten quote is reported at once instead of
//! swallowing the body of the cell.

use std::borrow::Cow;
use std::ops::Range;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_till1, take_while1};
use nom::character::complete::{anychar, char, one_of};
use nom::combinator::{map, not, value};
use nom::multi::{fold_many0, fold_many1, many1_count};
use nom::{IResult, Parser};

/// One word of the directive line, after quote removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// The word's value.
    pub(crate) text: String,
    /// Where the word's source text lies in the cell.
    pub(crate) span: Range<usize>,
    /// The source starts with two literal (unquoted, unescaped) dashes: an option.
    pub(crate) is_option: bool,
}

/// Why the words could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LexErrorKind {
    UnterminatedSingleQuote,
    UnterminatedDoubleQuote,
    TrailingBackslash,
}

/// A lexing failure at a byte offset of the cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub(crate) kind: LexErrorKind,
    /// The opening quote or the backslash.
    pub(crate) at: usize,
}

/// nom's error type for the lexer: where a piece failed, and why when we know.
#[derive(Debug)]
struct Fail<'a> {
    kind: Option<LexErrorKind>,
    at: &'a str,
}

impl<'a> nom::error::ParseError<&'a str> for Fail<'a> {
    fn from_error_kind(input: &'a str, _kind: nom::error::ErrorKind) -> Self {
        Fail {
            kind: None,
            at: input,
        }
    }

    fn append(_input: &'a str, _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

type Res<'a, O> = IResult<&'a str, O, Fail<'a>>;

fn failure<O>(kind: LexErrorKind, at: &str) -> Res<'_, O> {
    Err(nom::Err::Failure(Fail {
        kind: Some(kind),
        at,
    }))
}

fn line_break(i: &str) -> Res<'_, &str> {
    alt((tag("\n"), tag("\r\n"))).parse(i)
}

fn continuation(i: &str) -> Res<'_, ()> {
    value((), (char('\\'), line_break)).parse(i)
}

fn blank(i: &str) -> Res<'_, ()> {
    alt((
        value((), take_while1(|c| c == ' ' || c == '\t')),
        value((), (char('\r'), not(char('\n')))),
    ))
    .parse(i)
}

fn separator(i: &str) -> Res<'_, ()> {
    value((), many1_count(alt((blank, continuation)))).parse(i)
}

fn single_quoted(i: &str) -> Res<'_, Cow<'_, str>> {
    let (rest, _) = char::<_, Fail>('\'').parse(i)?;
    let (rest, content) = take_till::<_, _, Fail>(|c| c == '\'' || c == '\n').parse(rest)?;
    match char::<_, Fail>('\'').parse(rest) {
        Ok((rest, _)) => Ok((rest, Cow::Borrowed(content))),
        Err(_) => failure(LexErrorKind::UnterminatedSingleQuote, i),
    }
}

fn double_quoted_piece(i: &str) -> Res<'_, Cow<'_, str>> {
    alt((
        map(
            take_till1(|c| matches!(c, '"' | '\\' | '\n')),
            Cow::Borrowed,
        ),
        map(continuation, |()| Cow::Borrowed("")),
        map((char('\\'), one_of("\\\"$`")), |(_, c)| {
            Cow::Owned(c.to_string())
        }),
        // Before any other character the backslash is an ordinary character.
        map(char('\\'), |_| Cow::Borrowed("\\")),
    ))
    .parse(i)
}

fn double_quoted(i: &str) -> Res<'_, Cow<'_, str>> {
    let (rest, _) = char::<_, Fail>('"').parse(i)?;
    let (rest, content) = fold_many0(double_quoted_piece, String::new, |mut acc, piece| {
        acc.push_str(&piece);
        acc
    })
    .parse(rest)?;
    match char::<_, Fail>('"').parse(rest) {
        Ok((rest, _)) => Ok((rest, Cow::Owned(content))),
        Err(_) => failure(LexErrorKind::UnterminatedDoubleQuote, i),
    }
}

fn escaped(i: &str) -> Res<'_, Cow<'_, str>> {
    let (rest, _) = char::<_, Fail>('\\').parse(i)?;
    match anychar::<_, Fail>(rest) {
        Ok((rest, c)) => Ok((rest, Cow::Owned(c.to_string()))),
        Err(_) => failure(LexErrorKind::TrailingBackslash, i),
    }
}

fn bare(i: &str) -> Res<'_, Cow<'_, str>> {
    map(
        take_while1(|c| !matches!(c, ' ' | '\t' | '\r' | '\n' | '\'' | '"' | '\\')),
        Cow::Borrowed,
    )
    .parse(i)
}

fn word(i: &str) -> Res<'_, String> {
    fold_many1(
        alt((
            bare,
            single_quoted,
            double_quoted,
            map(continuation, |()| Cow::Borrowed("")),
            escaped,
        )),
        String::new,
        |mut acc, piece| {
            acc.push_str(&piece);
            acc
        },
    )
    .parse(i)
}

/// Splits the directive that starts at byte `start` of `cell` into words.
///
/// Returns the words and the offset just past the directive's terminating
/// line break (where the body starts), or the cell's length.
pub(crate) fn split_words(cell: &str, start: usize) -> Result<(Vec<Word>, usize), LexError> {
    let offset = |rest: &str| cell.len() - rest.len();
    let mut rest = &cell[start..];
    let mut words = Vec::new();
    loop {
        if let Ok((after, ())) = separator(rest) {
            rest = after;
        }
        if rest.is_empty() {
            return Ok((words, cell.len()));
        }
        if let Ok((after, _)) = line_break(rest) {
            return Ok((words, offset(after)));
        }
        match word(rest) {
            Ok((after, text)) => {
                words.push(Word {
                    text,
                    span: offset(rest)..offset(after),
                    is_option: rest.starts_with("--"),
                });
                rest = after;
            }
            Err(nom::Err::Failure(fail) | nom::Err::Error(fail)) => {
                return Err(LexError {
                    // Every character starts some piece, so a failure always
                    // has a cause; the fallback keeps this total anyway.
                    kind: fail.kind.unwrap_or(LexErrorKind::TrailingBackslash),
                    at: offset(fail.at),
                });
            }
            Err(nom::Err::Incomplete(_)) => {
                return Err(LexError {
                    kind: LexErrorKind::TrailingBackslash,
                    at: offset(rest),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<String> {
        split_words(line, 0)
            .unwrap()
            .0
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn joins_adjacent_pieces() {
        assert_eq!(texts(r#"a"b c"d"#), vec!["ab cd"]);
        assert_eq!(texts(r#"'x y'"z"\ w"#), vec!["x yz w"]);
    }

    #[test]
    fn double_quote_escapes_only_the_posix_set() {
        assert_eq!(texts(r#""\\ \" \$ \` \a""#), vec![r#"\ " $ ` \a"#]);
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(texts(r#"'\"$x'"#), vec![r#"\"$x"#]);
    }

    #[test]
    fn backslash_newline_continues() {
        let (words, end) = split_words("a \\\n b\\\r\nc\nbody", 0).unwrap();
        let texts: Vec<_> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, vec!["a", "bc"]);
        assert_eq!(end, "a \\\n b\\\r\nc\n".len());
    }

    #[test]
    fn empty_quotes_make_an_empty_word() {
        assert_eq!(texts("'' \"\""), vec!["", ""]);
    }

    #[test]
    fn reports_unterminated_quotes_at_the_opening_quote() {
        let err = split_words("ab 'cd\nef'", 0).unwrap_err();
        assert_eq!(err.kind, LexErrorKind::UnterminatedSingleQuote);
        assert_eq!(err.at, 3);
        let err = split_words("x \"y", 0).unwrap_err();
        assert_eq!(err.kind, LexErrorKind::UnterminatedDoubleQuote);
        assert_eq!(err.at, 2);
        let err = split_words("x \\", 0).unwrap_err();
        assert_eq!(err.kind, LexErrorKind::TrailingBackslash);
        assert_eq!(err.at, 2);
    }

    #[test]
    fn options_are_recognised_only_when_unquoted() {
        let (words, _) = split_words("--a \"--b\" \\--c", 0).unwrap();
        let flags: Vec<_> = words.iter().map(|w| w.is_option).collect();
        assert_eq!(flags, vec![true, false, false]);
    }
}
