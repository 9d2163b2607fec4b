//! The parser's error: what is wrong, where, and how to fix it.

use std::fmt;
use std::ops::Range;

/// What kind of problem a [`ParseError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The cell has no non-blank line.
    EmptyCell,
    /// The first non-blank line does not start with `#pragma`.
    NotADirective,
    /// `#pragma` is not followed by a kind.
    MissingKind,
    /// The word after `#pragma` is not `repeat`, `parallel` or `async`.
    UnknownKind,
    /// An option name that no kind has.
    UnknownOption,
    /// An option that exists, but not for this kind.
    OptionNotForKind,
    /// The same option given twice.
    DuplicateOption,
    /// Both `--max-by` and `--min-by`.
    ConflictingSelection,
    /// An option without its value.
    MissingValue,
    /// A word that is neither an option nor an option's value.
    UnexpectedArgument,
    /// A required option is missing (`--iterations`).
    MissingOption,
    /// Neither `--max-by` nor `--min-by`.
    MissingSelection,
    /// A count that is not a whole number.
    InvalidNumber,
    /// A count below 1 or above the largest supported value.
    NumberOutOfRange,
    /// `--iteration-var` is not an identifier.
    InvalidIdentifier,
    /// The selection expression is blank.
    EmptyExpression,
    /// A quote that does not close on the directive line.
    UnterminatedQuote,
    /// A backslash at the very end of the cell, with nothing to escape.
    TrailingBackslash,
    /// Text after the directive where only a directive was expected
    /// ([`parse_directive`](crate::parse_directive)).
    TrailingText,
    /// A NUL or another control character in the directive line, which no
    /// option value can hold.
    ControlCharacter,
}

/// A problem in a cell's directive, with its position.
///
/// `Display` gives the one-line message; [`ParseError::render`] gives a
/// rustc-style report with the offending line and a caret under the span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    kind: ErrorKind,
    message: String,
    span: Range<usize>,
    line: usize,
    column: usize,
    suggestion: Option<String>,
    help: Option<String>,
}

impl ParseError {
    pub(crate) fn new(
        kind: ErrorKind,
        message: impl Into<String>,
        source: &str,
        span: Range<usize>,
    ) -> Self {
        let (line, column) = line_and_column(source, span.start);
        ParseError {
            kind,
            message: message.into(),
            span,
            line,
            column,
            suggestion: None,
            help: None,
        }
    }

    /// Adds the closest valid spelling; the help line becomes "did you mean".
    pub(crate) fn with_suggestion(mut self, suggestion: Option<String>) -> Self {
        if let Some(s) = &suggestion {
            self.help = Some(format!("did you mean `{s}`?"));
        }
        self.suggestion = suggestion;
        self
    }

    /// Adds a hint on how to fix the problem.
    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What is wrong, in one sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The byte range of the offending text in the cell (empty at the end of input).
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The 1-based line of the span's start.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The 1-based column (in characters) of the span's start.
    pub fn column(&self) -> usize {
        self.column
    }

    /// The closest valid name, for a misspelt kind or option (`--iterations`).
    pub fn suggestion(&self) -> Option<&str> {
        self.suggestion.as_deref()
    }

    /// How to fix the problem, when there is something useful to say.
    pub fn help(&self) -> Option<&str> {
        self.help.as_deref()
    }

    /// A rustc-style report: the message, the position as `file:line:col`,
    /// the offending line with a caret under the span, then the help.
    ///
    /// `source` must be the text that was parsed; `file` names it.
    ///
    /// ```
    /// let cell = "#pragma repeat --iteratons 20 --max-by acc\nbody\n";
    /// let err = pragma_parse::parse_cell(cell).unwrap_err();
    /// assert_eq!(
    ///     err.render(cell, "train.cell"),
    ///     "error: unknown option `--iteratons`\n \
    ///      --> train.cell:1:16\n  \
    ///       |\n\
    ///      1 | #pragma repeat --iteratons 20 --max-by acc\n  \
    ///       |                ^^^^^^^^^^^\n  \
    ///       = help: did you mean `--iterations`?\n"
    /// );
    /// ```
    pub fn render(&self, source: &str, file: &str) -> String {
        let start = self.span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line_text = source[line_start..line_end].trim_end_matches('\r');
        let number = self.line.to_string();
        let gutter = " ".repeat(number.len());
        // Pad with the line's own tabs so the caret lines up in any terminal.
        let pad: String = source[line_start..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let line_limit = (line_start + line_text.len()).max(start);
        let end = self.span.end.clamp(start, line_limit);
        let carets = "^".repeat(source[start..end].chars().count().max(1));
        let mut out = format!(
            "error: {}\n{gutter}--> {file}:{}:{}\n{gutter} |\n{number} | {line_text}\n{gutter} | {pad}{carets}\n",
            self.message, self.line, self.column
        );
        if let Some(help) = &self.help {
            out.push_str(&format!("{gutter} = help: {help}\n"));
        }
        out
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
