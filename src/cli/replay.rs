//! `replyfix replay`: a recorded transcript judged again with candidate
//! rules, what would change beside what happened.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::explain::open_input;
use super::load_rules;

pub(super) fn replay_cmd(
    transcript: &Path,
    rules: &[PathBuf],
    changed_only: bool,
    json: bool,
) -> Result<ExitCode> {
    use replyfix::explain::transcript::read_transcript;
    use std::io::Write;
    let rules = load_rules(rules)?;
    let mut bad = 0u64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_err = None;
    let summary = read_transcript(open_input(transcript)?, &rules, |r| {
        let written = match r {
            Ok(e) if changed_only && !e.changed => Ok(()),
            Ok(e) if json => writeln!(out, "{}", e.to_json()),
            Ok(e) => writeln!(out, "{e}"),
            Err(err) => {
                bad += 1;
                eprintln!("warning: {err}");
                Ok(())
            }
        };
        if let Err(e) = written {
            write_err.get_or_insert(e);
        }
    })
    .with_context(|| transcript.display().to_string())?;
    if let Some(e) = write_err {
        return Err(e).context("writing standard output");
    }
    if json {
        let mut v = summary.to_json();
        v["type"] = "summary".into();
        v["rules_version"] = rules.version().into();
        v["bad_lines"] = bad.into();
        writeln!(out, "{v}")?;
    } else {
        write!(out, "{summary}")?;
        if bad > 0 {
            writeln!(out, "  {bad} line(s) could not be read (see warnings)")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
