//! `pragma check CELL [--json]`: parse a cell and print its directive.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use clap::Args;

use crate::failure::exit;

/// Arguments of `pragma check`.
#[derive(Args)]
pub(crate) struct CheckArgs {
    /// The cell file to check (`-` reads standard input).
    cell: PathBuf,
    /// Print the directive as one JSON object instead of its canonical line.
    #[arg(long)]
    json: bool,
}

/// Checks the cell; prints the directive on `out` and problems on stderr.
/// Returns the exit code; `Err` only for failures to write `out`.
pub(crate) fn run(args: &CheckArgs, out: &mut impl Write) -> io::Result<u8> {
    let name = if args.cell.as_os_str() == "-" {
        "<stdin>".to_owned()
    } else {
        args.cell.display().to_string()
    };
    let text = match read_cell(&args.cell) {
        Ok(text) => text,
        Err(message) => {
            errln!("error: cannot read cell `{name}`: {message}");
            return Ok(exit::USAGE);
        }
    };
    let cell = match pragma_parse::parse_cell(&text) {
        Ok(cell) => cell,
        Err(error) => {
            err!("{}", error.render(&text, &name));
            return Ok(exit::USAGE);
        }
    };
    if args.json {
        let mut value = serde_json::to_value(&cell.directive).map_err(io::Error::other)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("canonical".into(), cell.directive.to_string().into());
            object.insert(
                "body_line".into(),
                (text[..cell.body_start].matches('\n').count() + 1).into(),
            );
        }
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "{}", cell.directive)?;
    }
    Ok(exit::OK)
}

/// Reads a cell file (`-`: standard input) as UTF-8 text.
/// The most of a cell that is read: far more than any script, far less
/// than `/dev/zero`.
pub(crate) const CELL_LIMIT: usize = 16 << 20;

pub(crate) fn read_cell(path: &PathBuf) -> Result<String, String> {
    let mut bytes = Vec::new();
    // One more byte than allowed tells a cell that is too large.
    let limit = CELL_LIMIT as u64 + 1;
    let read = if path.as_os_str() == "-" {
        io::stdin().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    read.map_err(|e| e.to_string())?;
    if bytes.len() > CELL_LIMIT {
        return Err(format!(
            "it is larger than {} MiB, which no cell is (a `#pragma` line and a script): \
             is it the right file?",
            CELL_LIMIT >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "it is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}
