//! From the words of a directive line to a checked [`Directive`].

use std::ops::Range;

use crate::directive::{
    DEFAULT_CHECKPOINT_PERIOD, DEFAULT_ITERATION_VAR, Directive, InvalidValue, Kind, Objective,
    Parallel, Repeat, Selection, Target, check_expression, check_identifier,
};
use crate::error::{ErrorKind, ParseError, line_and_column};
use crate::lexer::{self, LexError, LexErrorKind, Word};

/// A parsed cell: its directive and where its body starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell<'a> {
    /// The directive on the first non-blank line.
    pub directive: Directive,
    /// The byte range of the directive's source text, from `#pragma` to the
    /// end of its last line (without the line break).
    pub directive_span: Range<usize>,
    /// The variables the body only reads, named on `#pragma readonly
    /// NAME[, NAME...]` (or `#pragma ro NAME NAME`) lines right after the
    /// directive (DataSphere's words): a host loads them, never saves them
    /// back, and never counts them as a conflict.
    pub readonly: Vec<String>,
    /// The byte offset where the body starts (after the directive's line
    /// break and its `#pragma readonly` lines).
    pub body_start: usize,
    /// Everything after the directive: the code that runs.
    pub body: &'a str,
}

/// A cell parsed once, owning its text: parse it at the edge (a file, a
/// notebook cell) and pass this on, so that nothing downstream parses it
/// again.
///
/// ```
/// use pragma_parse::{Kind, ParsedCell};
///
/// let cell: ParsedCell = "#pragma repeat --iterations 3 --max-by acc\ntrain()".parse().unwrap();
/// assert_eq!(cell.directive().kind(), Kind::Repeat);
/// assert_eq!(cell.body(), "train()");
/// assert_eq!(cell.text(), "#pragma repeat --iterations 3 --max-by acc\ntrain()");
/// assert!("train()".parse::<ParsedCell>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCell {
    text: String,
    directive: Directive,
    readonly: Vec<String>,
    body_start: usize,
}

impl ParsedCell {
    /// Parses `text` as [`parse_cell`] does, and keeps it.
    pub fn parse(text: impl Into<String>) -> Result<ParsedCell, ParseError> {
        let text = text.into();
        let Cell {
            directive,
            readonly,
            body_start,
            ..
        } = parse_cell(&text)?;
        Ok(ParsedCell {
            text,
            directive,
            readonly,
            body_start,
        })
    }

    /// The whole cell as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Its directive.
    pub fn directive(&self) -> &Directive {
        &self.directive
    }

    /// Its body: the code that runs.
    pub fn body(&self) -> &str {
        &self.text[self.body_start..]
    }

    /// The variables the body only reads (see [`Cell::readonly`]).
    pub fn readonly(&self) -> &[String] {
        &self.readonly
    }
}

impl std::str::FromStr for ParsedCell {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<ParsedCell, ParseError> {
        ParsedCell::parse(text)
    }
}

/// Parses a whole cell: blank lines, then the directive line, then the body.
///
/// ```
/// let cell = "\n#pragma parallel --iterations 8 --parallel-runs 2 --min-by loss\ntrain()\n";
/// let parsed = pragma_parse::parse_cell(cell).unwrap();
/// assert_eq!(parsed.directive.iterations(), 8);
/// assert_eq!(parsed.body, "train()\n");
/// ```
pub fn parse_cell(cell: &str) -> Result<Cell<'_>, ParseError> {
    let Some(line_start) = first_non_blank_line(cell) else {
        return Err(ParseError::new(
            ErrorKind::EmptyCell,
            "the cell is empty: expected a `#pragma` directive",
            cell,
            0..0,
        )
        .with_help(EXAMPLE_HELP));
    };
    // A byte-order mark (a cell saved by some Windows editors) is no text.
    let start = line_start + cell[line_start..].len()
        - cell[line_start..]
            .trim_start_matches([' ', '\t', '\u{feff}'])
            .len();
    let token_end = cell[start..]
        .find([' ', '\t', '\r', '\n'])
        .map_or(cell.len(), |i| start + i);
    if &cell[start..token_end] != "#pragma" {
        return Err(not_a_directive(cell, start..token_end));
    }
    let line_end = cell[start..].find('\n').map_or(cell.len(), |i| start + i);
    if let Some((at, c)) = cell[start..line_end]
        .char_indices()
        .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\r'))
    {
        let at = start + at;
        return Err(ParseError::new(
            ErrorKind::ControlCharacter,
            format!(
                "the directive line holds the control character U+{:04X}, which no option can",
                u32::from(c)
            ),
            cell,
            at..at + c.len_utf8(),
        )
        .with_help("remove it (a directive is one line of plain text)"));
    }
    let (words, body_start) =
        lexer::split_words(cell, token_end).map_err(|e| lex_error(cell, e))?;
    let directive = Words {
        cell,
        pragma: start..token_end,
        words: &words,
    }
    .directive()?;
    let directive_end = cell[..body_start].trim_end_matches(['\n', '\r']).len();
    let (readonly, body_start) = readonly_lines(cell, body_start)?;
    Ok(Cell {
        directive,
        directive_span: start..directive_end.max(token_end),
        readonly,
        body_start,
        body: &cell[body_start..],
    })
}

/// The names on the `#pragma readonly` (or `#pragma ro`) lines from `at`
/// on, and where the body starts after them.
///
/// ```
/// let cell = "#pragma async\n#pragma readonly x_train, y_train\n#pragma ro model\nfit()\n";
/// let parsed = pragma_parse::parse_cell(cell).unwrap();
/// assert_eq!(parsed.readonly, ["x_train", "y_train", "model"]);
/// assert_eq!(parsed.body, "fit()\n");
/// ```
fn readonly_lines(cell: &str, mut at: usize) -> Result<(Vec<String>, usize), ParseError> {
    let mut names = Vec::new();
    while at < cell.len() {
        let line_end = cell[at..].find('\n').map_or(cell.len(), |i| at + i);
        let line = &cell[at..line_end];
        let pragma = at + (line.len() - line.trim_start_matches([' ', '\t']).len());
        let Some(after) = cell[pragma..line_end].strip_prefix("#pragma") else {
            break;
        };
        if !after.starts_with([' ', '\t']) {
            break;
        }
        let keyword_start = line_end - after.trim_start_matches([' ', '\t']).len();
        let keyword_end = cell[keyword_start..line_end]
            .find(|c: char| c.is_whitespace() || c == ',')
            .map_or(line_end, |i| keyword_start + i);
        if !matches!(&cell[keyword_start..keyword_end], "readonly" | "ro") {
            break;
        }
        let before = names.len();
        let mut word_start = None;
        for (i, c) in cell[keyword_end..line_end]
            .char_indices()
            .chain([(line_end - keyword_end, ' ')])
        {
            let i = keyword_end + i;
            let separator = c == ',' || c.is_whitespace();
            match (word_start, separator) {
                (None, false) => word_start = Some(i),
                (Some(from), true) => {
                    let name = &cell[from..i];
                    if check_identifier(name).is_err() {
                        return Err(ParseError::new(
                            ErrorKind::InvalidIdentifier,
                            format!("`{name}` is not a variable name"),
                            cell,
                            from..i,
                        )
                        .with_help(
                            "a name is letters, digits and `_`, not starting with a digit",
                        ));
                    }
                    names.push(name.to_owned());
                    word_start = None;
                }
                _ => {}
            }
        }
        if names.len() == before {
            return Err(ParseError::new(
                ErrorKind::MissingValue,
                format!(
                    "`#pragma {}` names no variable",
                    &cell[keyword_start..keyword_end]
                ),
                cell,
                pragma..line_end,
            )
            .with_help(
                "name the variables the body only reads: `#pragma readonly x_train, y_train`",
            ));
        }
        at = (line_end + 1).min(cell.len());
    }
    Ok((names, at))
}

/// Parses text that holds only a directive (blank lines around it are fine).
///
/// ```
/// let d = pragma_parse::parse_directive("#pragma async\n").unwrap();
/// assert_eq!(d, pragma_parse::Directive::Async);
/// assert!(pragma_parse::parse_directive("#pragma async\nbody").is_err());
/// ```
pub fn parse_directive(text: &str) -> Result<Directive, ParseError> {
    let cell = parse_cell(text)?;
    let trailing = cell.body.trim_start();
    if trailing.is_empty() {
        Ok(cell.directive)
    } else {
        let at = text.len() - trailing.len();
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        Err(ParseError::new(
            ErrorKind::TrailingText,
            "unexpected text after the directive",
            text,
            at..end,
        )
        .with_help("a directive is one line; use `parse_cell` to parse a directive with a body"))
    }
}

/// Splits one line into words by the directive's quoting rules, the way
/// Python's `shlex.split` does (see the crate docs for the three places where
/// the POSIX shell's rules are followed instead).
///
/// A backslash before a line break joins the next line; anything after an
/// unescaped line break is an error.
///
/// ```
/// assert_eq!(
///     pragma_parse::split_words(r#"a"b c"d 'it'\''s' \$x"#).unwrap(),
///     vec!["ab cd", "it's", "$x"]
/// );
/// ```
pub fn split_words(line: &str) -> Result<Vec<String>, ParseError> {
    let (words, end) = lexer::split_words(line, 0).map_err(|e| lex_error(line, e))?;
    if !line[end..].trim().is_empty() {
        let at = end + (line[end..].len() - line[end..].trim_start().len());
        return Err(ParseError::new(
            ErrorKind::TrailingText,
            "unexpected text after the end of the line",
            line,
            at..line.len(),
        )
        .with_help("end the line with `\\` to continue it on the next line"));
    }
    Ok(words.into_iter().map(|w| w.text).collect())
}

impl std::str::FromStr for Directive {
    type Err = ParseError;

    /// Same as [`parse_directive`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_directive(s)
    }
}

const EXAMPLE_HELP: &str =
    "a background cell starts with a line such as `#pragma repeat --iterations 10 --max-by EXPR`";

fn first_non_blank_line(cell: &str) -> Option<usize> {
    let mut line_start = 0;
    for line in cell.split('\n') {
        if !line.trim_matches([' ', '\t', '\r']).is_empty() {
            return Some(line_start);
        }
        line_start += line.len() + 1;
    }
    None
}

fn not_a_directive(cell: &str, token: Range<usize>) -> ParseError {
    let text = &cell[token.clone()];
    let error =
        |message: &str| ParseError::new(ErrorKind::NotADirective, message, cell, token.clone());
    if let Some(kind) = text.strip_prefix("#pragma") {
        return error("expected a space after `#pragma`")
            .with_suggestion(Some(format!("#pragma {}", shown(kind))));
    }
    if text == "#"
        && cell[token.end..]
            .trim_start_matches([' ', '\t'])
            .starts_with("pragma")
    {
        return error("the cell does not start with a `#pragma` directive")
            .with_suggestion(Some("#pragma".to_owned()));
    }
    let close =
        text.len() <= 16 && strsim::damerau_levenshtein(&text.to_lowercase(), "#pragma") <= 2;
    let error = error("the cell does not start with a `#pragma` directive");
    if close {
        error.with_suggestion(Some("#pragma".to_owned()))
    } else {
        error.with_help(EXAMPLE_HELP)
    }
}

fn lex_error(cell: &str, error: LexError) -> ParseError {
    let (kind, message, help, width) = match error.kind {
        LexErrorKind::UnterminatedSingleQuote => (
            ErrorKind::UnterminatedQuote,
            "unterminated single quote",
            "close the quote on the same line; to continue the directive on the next line, end the line with `\\` outside the quotes",
            1,
        ),
        LexErrorKind::UnterminatedDoubleQuote => (
            ErrorKind::UnterminatedQuote,
            "unterminated double quote",
            "close the quote on the same line, or end the line with `\\` to continue the directive on the next line",
            1,
        ),
        LexErrorKind::TrailingBackslash => (
            ErrorKind::TrailingBackslash,
            "backslash at the end of the cell escapes nothing",
            "remove it, or write `\\\\` for a literal backslash",
            1,
        ),
    };
    ParseError::new(kind, message, cell, error.at..error.at + width).with_help(help)
}

/// The options a directive may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Iterations,
    CheckpointPeriod,
    ParallelRuns,
    IterationVar,
    MaxBy,
    MinBy,
    Patience,
    Target,
}

impl Opt {
    const ALL: [Opt; 8] = [
        Opt::Iterations,
        Opt::CheckpointPeriod,
        Opt::ParallelRuns,
        Opt::Patience,
        Opt::Target,
        Opt::IterationVar,
        Opt::MaxBy,
        Opt::MinBy,
    ];

    fn name(self) -> &'static str {
        match self {
            Opt::Iterations => "iterations",
            Opt::CheckpointPeriod => "checkpoint-period",
            Opt::ParallelRuns => "parallel-runs",
            Opt::IterationVar => "iteration-var",
            Opt::MaxBy => "max-by",
            Opt::MinBy => "min-by",
            Opt::Patience => "patience",
            Opt::Target => "target",
        }
    }

    fn belongs_to(self, kind: Kind) -> bool {
        !matches!(
            (self, kind),
            (_, Kind::Async)
                | (Opt::CheckpointPeriod | Opt::Patience, Kind::Parallel)
                | (Opt::ParallelRuns, Kind::Repeat)
        )
    }
}

/// The closest candidate to a misspelt `word`, if one is close enough to be
/// a likely typo (an edit distance of at most 2, or a prefix of 3+ letters).
fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    // Long words are no typos; skipping them keeps the cost linear.
    if word.len() > 40 {
        return None;
    }
    let word = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&word, c), c))
        .filter(|&(distance, c)| distance <= 2 || (word.len() >= 3 && c.starts_with(&word)))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, c)| c)
}

/// A value as a message names what was found: quoted, or `nothing`.
fn found(text: &str) -> String {
    if text.is_empty() {
        "nothing".to_owned()
    } else {
        format!("`{}`", shown(text))
    }
}

/// Shows user text in a message, cut short when it is long.
fn shown(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

struct Words<'a> {
    cell: &'a str,
    pragma: Range<usize>,
    words: &'a [Word],
}

/// The options seen so far, with where each was given.
#[derive(Default)]
struct Seen {
    iterations: Option<u64>,
    checkpoint_period: Option<u64>,
    parallel_runs: Option<u64>,
    iteration_var: Option<String>,
    select: Option<(Objective, String)>,
    patience: Option<u64>,
    target: Option<Target>,
    spans: [Option<Range<usize>>; Opt::ALL.len()],
}

impl Words<'_> {
    fn error(&self, kind: ErrorKind, message: impl Into<String>, span: Range<usize>) -> ParseError {
        ParseError::new(kind, message, self.cell, span)
    }

    fn directive(&self) -> Result<Directive, ParseError> {
        let Some((kind_word, options)) = self.words.split_first() else {
            return Err(self
                .error(
                    ErrorKind::MissingKind,
                    "`#pragma` must be followed by a kind: `repeat`, `parallel` or `async`",
                    self.pragma.clone(),
                )
                .with_help(EXAMPLE_HELP));
        };
        let kind = self.kind(kind_word)?;
        if kind == Kind::Async {
            return match options.first() {
                None => Ok(Directive::Async),
                Some(word) => Err(self
                    .error(
                        ErrorKind::OptionNotForKind,
                        "`#pragma async` takes no options",
                        word.span.clone(),
                    )
                    .with_help(
                        "use `#pragma repeat` or `#pragma parallel` to run the body more than once",
                    )),
            };
        }
        let seen = self.options(kind, options)?;
        let Some(iterations) = seen.iterations else {
            return Err(self
                .error(
                    ErrorKind::MissingOption,
                    format!("`#pragma {kind}` needs `--iterations`"),
                    kind_word.span.clone(),
                )
                .with_help("add how many times the body runs, e.g. `--iterations 10`"));
        };
        let Some((objective, expr)) = seen.select else {
            return Err(self
                .error(
                    ErrorKind::MissingSelection,
                    format!("`#pragma {kind}` needs a selection rule"),
                    kind_word.span.clone(),
                )
                .with_help("add `--max-by EXPR` to keep the highest score or `--min-by EXPR` to keep the lowest"));
        };
        let select = Selection { objective, expr };
        let iteration_var = seen
            .iteration_var
            .unwrap_or_else(|| DEFAULT_ITERATION_VAR.to_owned());
        Ok(match kind {
            Kind::Repeat => Directive::Repeat(Repeat {
                iterations,
                checkpoint_period: seen.checkpoint_period.unwrap_or(DEFAULT_CHECKPOINT_PERIOD),
                patience: seen.patience,
                target: seen.target,
                iteration_var,
                select,
            }),
            Kind::Parallel | Kind::Async => Directive::Parallel(Parallel {
                iterations,
                parallel_runs: seen.parallel_runs,
                target: seen.target,
                iteration_var,
                select,
            }),
        })
    }

    fn kind(&self, word: &Word) -> Result<Kind, ParseError> {
        if let Some(kind) = Kind::ALL.into_iter().find(|k| k.as_str() == word.text) {
            return Ok(kind);
        }
        if word.is_option {
            return Err(self
                .error(
                    ErrorKind::MissingKind,
                    "expected a kind before the options: `repeat`, `parallel` or `async`",
                    word.span.clone(),
                )
                .with_help("write the kind right after `#pragma`, e.g. `#pragma repeat --iterations 10 ...`"));
        }
        let error = self.error(
            ErrorKind::UnknownKind,
            format!("unknown kind `{}`", shown(&word.text)),
            word.span.clone(),
        );
        Err(
            match closest(&word.text, Kind::ALL.iter().map(|k| k.as_str())) {
                Some(kind) => error.with_suggestion(Some(kind.to_owned())),
                None => error.with_help("the kinds are `repeat`, `parallel` and `async`"),
            },
        )
    }

    fn options(&self, kind: Kind, words: &[Word]) -> Result<Seen, ParseError> {
        let mut seen = Seen::default();
        let mut last_value_of: Option<Opt> = None;
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            i += 1;
            let Some(flag) = word.text.strip_prefix("--").filter(|_| word.is_option) else {
                let error = self.error(
                    ErrorKind::UnexpectedArgument,
                    format!(
                        "unexpected `{}`: options start with `--`",
                        shown(&word.text)
                    ),
                    word.span.clone(),
                );
                let looks_like_count = seen.iterations.is_none()
                    && !word.text.is_empty()
                    && word.text.bytes().all(|b| b.is_ascii_digit());
                return Err(match last_value_of {
                    _ if looks_like_count => error
                        .with_suggestion(Some(format!("--iterations {}", word.text))),
                    Some(opt) => error.with_help(format!(
                        "if this belongs to the value of `--{}`, quote the whole value: `--{} \"...\"`",
                        opt.name(),
                        opt.name()
                    )),
                    None => error,
                });
            };
            let (name, inline_value) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (flag, None),
            };
            let name_span = self.name_span(word, name);
            let opt = self.option(kind, name, name_span.clone())?;
            if let Some(first) = &seen.spans[opt as usize] {
                let (line, column) = line_and_column(self.cell, first.start);
                return Err(self
                    .error(
                        ErrorKind::DuplicateOption,
                        format!("`--{}` is given twice", opt.name()),
                        name_span,
                    )
                    .with_help(format!(
                        "it is first given at line {line}, column {column}; keep one"
                    )));
            }
            if let Some((other, _)) = &seen.select
                && matches!(opt, Opt::MaxBy | Opt::MinBy)
            {
                return Err(self
                    .error(
                        ErrorKind::ConflictingSelection,
                        format!(
                            "`--{}` and `--{}` cannot both be given",
                            opt.name(),
                            other.option_name()
                        ),
                        name_span,
                    )
                    .with_help("keep one selection rule: `--max-by` keeps the highest score, `--min-by` the lowest"));
            }
            seen.spans[opt as usize] = Some(name_span.clone());
            let (value, value_span) = match inline_value {
                Some(value) => {
                    // The value's source follows `--name=` when that is
                    // written literally; otherwise point at the whole word.
                    let literal_equals = name_span.end < word.span.end
                        && self.cell.as_bytes()[name_span.end] == b'=';
                    let at = if literal_equals {
                        name_span.end + 1
                    } else {
                        word.span.start
                    };
                    (value.to_owned(), at..word.span.end)
                }
                None => match words.get(i).filter(|next| !next.is_option) {
                    Some(next) => {
                        i += 1;
                        last_value_of = Some(opt);
                        (next.text.clone(), next.span.clone())
                    }
                    None => {
                        return Err(self
                            .error(
                                ErrorKind::MissingValue,
                                format!("`--{}` needs a value", opt.name()),
                                name_span,
                            )
                            .with_help(format!(
                                "write `--{0} VALUE` or `--{0}=VALUE`; quote a value that starts with `--`",
                                opt.name()
                            )));
                    }
                },
            };
            if inline_value.is_some() {
                last_value_of = Some(opt);
            }
            self.store(&mut seen, opt, value, value_span)?;
        }
        Ok(seen)
    }

    /// The span of `--name` inside an option word, or the whole word when
    /// quoting makes the two differ.
    fn name_span(&self, word: &Word, name: &str) -> Range<usize> {
        let end = word.span.start + 2 + name.len();
        if self.cell.get(word.span.start + 2..end) == Some(name) {
            word.span.start..end
        } else {
            word.span.clone()
        }
    }

    fn option(&self, kind: Kind, name: &str, span: Range<usize>) -> Result<Opt, ParseError> {
        let Some(opt) = Opt::ALL.into_iter().find(|o| o.name() == name) else {
            let of_kind = Opt::ALL
                .into_iter()
                .filter(|o| o.belongs_to(kind))
                .map(Opt::name);
            let suggestion =
                closest(name, of_kind).or_else(|| closest(name, Opt::ALL.map(Opt::name)));
            let error = self.error(
                ErrorKind::UnknownOption,
                format!("unknown option `--{}`", shown(name)),
                span,
            );
            return Err(match suggestion {
                Some(s) => error.with_suggestion(Some(format!("--{s}"))),
                None => error.with_help(format!(
                    "the options of `#pragma {kind}` are {}",
                    Opt::ALL
                        .into_iter()
                        .filter(|o| o.belongs_to(kind))
                        .map(|o| format!("`--{}`", o.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            });
        };
        if !opt.belongs_to(kind) {
            let owner = if matches!(opt, Opt::CheckpointPeriod | Opt::Patience) {
                "repeat"
            } else {
                "parallel"
            };
            return Err(self
                .error(
                    ErrorKind::OptionNotForKind,
                    format!("`--{}` is not an option of `#pragma {kind}`", opt.name()),
                    span,
                )
                .with_help(format!("`--{}` belongs to `#pragma {owner}`", opt.name())));
        }
        Ok(opt)
    }

    fn store(
        &self,
        seen: &mut Seen,
        opt: Opt,
        value: String,
        span: Range<usize>,
    ) -> Result<(), ParseError> {
        match opt {
            Opt::Iterations => seen.iterations = Some(self.count(opt, &value, span)?),
            Opt::CheckpointPeriod => seen.checkpoint_period = Some(self.count(opt, &value, span)?),
            Opt::ParallelRuns => seen.parallel_runs = Some(self.count(opt, &value, span)?),
            Opt::Patience => seen.patience = Some(self.count(opt, &value, span)?),
            Opt::Target => seen.target = Some(self.target(&value, span)?),
            Opt::IterationVar => {
                if let Err(InvalidValue::InvalidIdentifier(_)) = check_identifier(&value) {
                    let message = if value.is_empty() {
                        "`--iteration-var` is empty".to_owned()
                    } else {
                        format!(
                            "`{}` is not a valid name for `--iteration-var`",
                            shown(&value)
                        )
                    };
                    return Err(self
                        .error(ErrorKind::InvalidIdentifier, message, span)
                        .with_help("use letters, digits and `_`, not starting with a digit, e.g. `--iteration-var step`"));
                }
                seen.iteration_var = Some(value);
            }
            Opt::MaxBy | Opt::MinBy => {
                match check_expression(&value) {
                    Ok(()) => {}
                    Err(InvalidValue::EmptyExpression) => {
                        return Err(self
                            .error(
                                ErrorKind::EmptyExpression,
                                format!("the expression of `--{}` is empty", opt.name()),
                                span,
                            )
                            .with_help(format!(
                                "give the expression the host evaluates to score a state, e.g. `--{} \"accuracy\"`",
                                opt.name()
                            )));
                    }
                    Err(problem) => {
                        return Err(self
                            .error(
                                ErrorKind::ControlCharacter,
                                format!("the expression of `--{}`: {problem}", opt.name()),
                                span,
                            )
                            .with_help("a directive is one line of plain text: remove it"));
                    }
                }
                let objective = if opt == Opt::MaxBy {
                    Objective::Max
                } else {
                    Objective::Min
                };
                seen.select = Some((objective, value));
            }
        }
        Ok(())
    }

    /// `--target`'s value: a finite number.
    fn target(&self, text: &str, span: Range<usize>) -> Result<Target, ParseError> {
        let help = "give the score at which to stop, e.g. `--target 0.95`";
        let number = text
            .parse::<f64>()
            .ok()
            // Rust reads `inf`, `NaN` and `infinity` as numbers; people
            // write them only by mistake.
            .filter(|_| text.bytes().any(|b| b.is_ascii_digit()));
        match number.map(Target::new) {
            Some(Ok(target)) => Ok(target),
            Some(Err(_)) => Err(self
                .error(
                    ErrorKind::NumberOutOfRange,
                    format!(
                        "`--target` must be a finite number, found `{}`",
                        shown(text)
                    ),
                    span,
                )
                .with_help(help)),
            None => {
                let found = found(text);
                Err(self
                    .error(
                        ErrorKind::InvalidNumber,
                        format!("`--target` expects a number, found {found}"),
                        span,
                    )
                    .with_help(help))
            }
        }
    }

    /// A count option's value: a whole number from 1 up.
    fn count(&self, opt: Opt, text: &str, span: Range<usize>) -> Result<u64, ParseError> {
        let name = opt.name();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let example = format!("e.g. `--{name} 10`");
        if digits(text) {
            return match text.parse::<u64>() {
                Ok(0) => Err(self
                    .error(
                        ErrorKind::NumberOutOfRange,
                        format!("`--{name}` must be at least 1, found `0`"),
                        span,
                    )
                    .with_help(example)),
                Ok(n) => Ok(n),
                Err(_) => Err(self
                    .error(
                        ErrorKind::NumberOutOfRange,
                        format!("`--{name}` is too large: `{}`", shown(text)),
                        span,
                    )
                    .with_help(format!("the largest allowed value is {}", u64::MAX))),
            };
        }
        if text.strip_prefix('-').is_some_and(digits) {
            return Err(self
                .error(
                    ErrorKind::NumberOutOfRange,
                    format!("`--{name}` must be at least 1, found `{}`", shown(text)),
                    span,
                )
                .with_help(example));
        }
        let found = found(text);
        Err(self
            .error(
                ErrorKind::InvalidNumber,
                format!("`--{name}` expects a whole number, found {found}"),
                span,
            )
            .with_help(example))
    }
}

/// A [`Directive`] in serde as its canonical text (`#pragma repeat
/// --iterations 20 ...`), not as a structure: for records that store
/// directives, whose bytes stay those of the text. Use it as
/// `#[serde(with = "pragma_parse::canonical")]`.
///
/// ```
/// use pragma_parse::Directive;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Record {
///     #[serde(with = "pragma_parse::canonical")]
///     directive: Directive,
/// }
///
/// let record = Record { directive: "#pragma repeat --iterations 3 --max-by acc".parse().unwrap() };
/// let json = serde_json::to_string(&record).unwrap();
/// assert!(json.starts_with(r##"{"directive":"#pragma repeat --iterations 3 --checkpoint-period"##), "{json}");
/// let back: Record = serde_json::from_str(&json).unwrap();
/// assert_eq!(back.directive, record.directive);
/// assert!(serde_json::from_str::<Record>(r##"{"directive":"#pragma nope"}"##).is_err());
/// ```
pub mod canonical {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::Directive;

    /// Writes `directive` as its canonical text.
    pub fn serialize<S: Serializer>(directive: &Directive, out: S) -> Result<S::Ok, S::Error> {
        out.collect_str(directive)
    }

    /// Reads a directive from its text (canonical or not).
    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Directive, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(input)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
