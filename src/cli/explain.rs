//! `replyfix explain`: one reply (or one per line of standard input), a
//! bounce (`--dsn`, a file or a folder summarised), or a mail log
//! (`--log`), judged by the rules; text or JSON.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use replyfix::explain::{explain as explain_one, parse_reply_arg};
use replyfix::rules::SessionFacts;
use replyfix::smtp::CommandKind;

use super::load_rules;

/// The session facts a reply is judged with, as `explain` takes them: one
/// flag per fact of `replyfix::rules::SessionFacts` (the command, TLS on
/// each leg, a successful AUTH, recipients already accepted).
#[derive(clap::Args, Clone, Debug)]
pub(super) struct FactsArgs {
    /// The command the reply answered.
    #[arg(long, default_value = "other")]
    command: String,
    /// The session had authenticated.
    #[arg(long)]
    authenticated: bool,
    /// The client leg used TLS.
    #[arg(long)]
    tls: bool,
    /// replyfix's own leg to the upstream used TLS.
    #[arg(long)]
    upstream_tls: bool,
    /// Recipients already accepted in the transaction.
    #[arg(long, default_value_t = 0)]
    recipients_accepted: u32,
}

impl FactsArgs {
    /// The facts, at `--command` (an error names the flag).
    fn facts(&self) -> Result<SessionFacts<'static>> {
        let command: CommandKind = self
            .command
            .parse()
            .map_err(|e| anyhow::anyhow!("--command: {e}"))?;
        let mut facts = SessionFacts::new(command);
        facts.authenticated = self.authenticated;
        facts.client_tls = self.tls;
        facts.upstream_tls = self.upstream_tls;
        facts.recipients_accepted = self.recipients_accepted;
        Ok(facts)
    }
}

/// `replyfix explain` arguments.
#[derive(clap::Args)]
pub(super) struct ExplainArgs {
    /// Rule file or folder (repeatable); built-in rules when absent.
    #[arg(long)]
    rules: Vec<PathBuf>,
    #[command(flatten)]
    facts: FactsArgs,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Read a bounce message (an RFC 3464 DSN or the bounce text of a
    /// common MTA or provider) from FILE, or `-` for standard input; a
    /// folder, or several files, are summarised (streamed).
    #[arg(long, value_name = "FILE|DIR|-", num_args = 1.., conflicts_with_all = ["log", "reply", "command"])]
    dsn: Vec<PathBuf>,
    /// Summarise a Postfix, Exim or Sendmail log from FILE, or `-` for
    /// standard input (streamed).
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["reply", "command"])]
    log: Option<PathBuf>,
    /// With --log or a folder of --dsn: print only the summary, not
    /// each reply or recipient found.
    #[arg(long)]
    summary_only: bool,
    /// With --log or a folder of --dsn: how many remote hosts to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// The reply (lines separated by `|` or CRLF); one per line from
    /// standard input when absent.
    reply: Option<String>,
}

/// Runs `explain` in the mode its arguments ask for.
pub(super) fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let base = ExplainBase {
        rules: args.rules,
        facts: args.facts,
        json: args.json,
    };
    match (args.dsn.as_slice(), &args.log) {
        ([path], _) if !path.is_dir() => explain_dsn(base, path),
        ([_, ..], _) => explain_dsn_many(base, &args.dsn, args.summary_only, args.top),
        ([], Some(path)) => explain_log(base, path, args.summary_only, args.top),
        ([], None) => explain_reply(base, args.reply),
    }
}

/// One reply (or one per line of standard input), judged at `--command`.
fn explain_reply(base: ExplainBase, reply: Option<String>) -> Result<ExitCode> {
    let rules = load_rules(&base.rules)?;
    let facts = base.facts.facts()?;
    let json = base.json;
    let mut status = ExitCode::SUCCESS;
    let mut one = |text: &str| match parse_reply_arg(text) {
        Ok(reply) => {
            let e = explain_one(&rules, reply, &facts);
            if json {
                out!("{}", e.to_json());
            } else {
                out!("{e}");
            }
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            status = ExitCode::FAILURE;
        }
    };
    match reply {
        Some(text) => one(&text),
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("reading replies from standard input, one per line (Ctrl-D ends)");
            }
            for line in std::io::stdin().lock().lines() {
                let line = line.context("reading standard input")?;
                if !line.trim().is_empty() {
                    one(&line);
                }
            }
        }
    }
    Ok(status)
}

/// The `explain` options every mode uses.
pub(super) struct ExplainBase {
    rules: Vec<PathBuf>,
    facts: FactsArgs,
    json: bool,
}

impl ExplainBase {
    /// The facts of `--dsn` and `--log`: their command comes from each
    /// bounce or log line, so `other` here.
    fn facts(&self) -> SessionFacts<'static> {
        let mut facts = self
            .facts
            .facts()
            .unwrap_or_else(|_| SessionFacts::new(CommandKind::Other));
        facts.command = CommandKind::Other;
        facts
    }
}

/// Opens FILE, or standard input for `-`.
pub(super) fn open_input(path: &Path) -> Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Box::new(std::io::BufReader::with_capacity(
        256 * 1024,
        file,
    )))
}

fn explain_dsn(base: ExplainBase, path: &Path) -> Result<ExitCode> {
    use replyfix::explain::dsn;
    let rules = load_rules(&base.rules)?;
    let raw = dsn::read_capped(open_input(path)?, dsn::MAX_BOUNCE)
        .with_context(|| format!("reading {}", path.display()))?;
    let bounce = dsn::parse_bounce(&raw).with_context(|| path.display().to_string())?;
    let reports = dsn::explain_bounce(&rules, &bounce, &base.facts());
    if base.json {
        let v = serde_json::json!({
            "style": bounce.style,
            "rfc3464": bounce.rfc3464,
            "rules_version": rules.version(),
            "recipients": reports.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        });
        out!("{v}");
    } else {
        out!(
            "bounce: {} style, {} failed recipient(s), rules {}",
            bounce.style,
            reports.len(),
            rules.version()
        );
        for r in &reports {
            out!("");
            print!("{r}");
        }
    }
    if reports.is_empty() {
        eprintln!("no failed recipient found in the bounce");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Deepest folder level `explain --dsn DIR` descends to.
const MAX_DSN_DEPTH: usize = 8;

/// `explain --dsn DIR` or several files: each bounce read (at most the
/// bounce cap of each file), judged and counted; one line per recipient
/// unless `summary_only`, then the summary. Folders are walked as they are
/// listed, never collected whole.
fn explain_dsn_many(
    base: ExplainBase,
    paths: &[PathBuf],
    summary_only: bool,
    top: usize,
) -> Result<ExitCode> {
    use replyfix::explain::bounce::summary::{BounceSummary, recipient_json, recipient_line};
    use replyfix::explain::dsn;
    use std::io::Write;
    let rules = load_rules(&base.rules)?;
    let facts = base.facts();
    let show_progress = std::io::stderr().is_terminal();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut summary = BounceSummary::default();
    let mut one = |path: &Path, out: &mut dyn Write| -> Result<()> {
        let name = path.display().to_string();
        let raw = match open_input(path).and_then(|r| {
            dsn::read_capped(r, dsn::MAX_BOUNCE).with_context(|| format!("reading {name}"))
        }) {
            Ok(raw) => raw,
            Err(e) => {
                eprintln!("warning: {e:#}");
                summary.add_unreadable(0);
                return Ok(());
            }
        };
        let Ok(bounce) = dsn::parse_bounce(&raw) else {
            summary.add_unreadable(raw.len() as u64);
            return Ok(());
        };
        let reports = dsn::explain_bounce(&rules, &bounce, &facts);
        if !summary_only {
            for r in &reports {
                if base.json {
                    writeln!(out, "{}", recipient_json(&name, r))?;
                } else {
                    writeln!(out, "{}", recipient_line(&name, r))?;
                }
            }
        }
        summary.add(&name, raw.len() as u64, &bounce, &reports);
        // Each bounce's lines go out as it is read (a pipe sees them live).
        out.flush()?;
        if show_progress && summary.files % 100 == 0 {
            eprint!(
                "\r{} files, {} recipients, {} misused 530s   ",
                summary.files, summary.recipients, summary.misused_530
            );
        }
        Ok(())
    };
    for path in paths {
        if !path.is_dir() {
            one(path, &mut out).context("writing standard output")?;
            continue;
        }
        // Depth-first over the folder, one listing open per level.
        let mut stack =
            vec![std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?];
        while let Some(dir) = stack.last_mut() {
            let Some(entry) = dir.next() else {
                stack.pop();
                continue;
            };
            let Ok(entry) = entry else {
                eprintln!(
                    "warning: an entry under {} could not be listed",
                    path.display()
                );
                continue;
            };
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if hidden || kind.is_symlink() {
                continue;
            }
            let p = entry.path();
            if kind.is_dir() {
                if stack.len() < MAX_DSN_DEPTH
                    && let Ok(rd) = std::fs::read_dir(&p)
                {
                    stack.push(rd);
                }
            } else if kind.is_file() {
                one(&p, &mut out).context("writing standard output")?;
            }
        }
    }
    if show_progress {
        eprintln!();
    }
    write_summary(
        &mut out,
        &base,
        rules.version(),
        summary.to_json(top),
        summary.display(top),
        !summary_only && summary.recipients > 0,
    )?;
    Ok(if summary.recipients > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn explain_log(base: ExplainBase, path: &Path, summary_only: bool, top: usize) -> Result<ExitCode> {
    use replyfix::explain::maillog;
    use std::io::Write;
    let rules = load_rules(&base.rules)?;
    let facts = base.facts();
    let show_progress = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_err = None;
    let summary = maillog::summarise(
        open_input(path)?,
        &rules,
        &facts,
        |line, f, e| {
            if summary_only || write_err.is_some() {
                return;
            }
            let r = if base.json {
                writeln!(out, "{}", maillog::finding_json(line, f, e))
            } else {
                writeln!(out, "{}", maillog::finding_line(line, f, e))
            };
            if let Err(err) = r {
                write_err = Some(err);
            }
        },
        |bytes, lines| {
            if show_progress {
                let secs = started.elapsed().as_secs_f64().max(0.001);
                eprint!(
                    "\r{:.0} MiB, {lines} lines, {:.0} MiB/s   ",
                    bytes as f64 / 1048576.0,
                    bytes as f64 / 1048576.0 / secs
                );
            }
        },
    )
    .with_context(|| format!("reading {}", path.display()))?;
    if show_progress {
        eprintln!();
    }
    if let Some(e) = write_err {
        return Err(e).context("writing standard output");
    }
    write_summary(
        &mut out,
        &base,
        rules.version(),
        summary.to_json(top),
        summary.display(top),
        !summary_only && summary.replies > 0,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The last thing `--log` and `--dsn DIR` print: the summary as one JSON
/// object (`type: summary`, with the rules version) or as text tables,
/// after a blank line when lines were printed above it.
fn write_summary(
    out: &mut impl std::io::Write,
    base: &ExplainBase,
    rules_version: &str,
    mut json: serde_json::Value,
    text: impl std::fmt::Display,
    after_lines: bool,
) -> Result<()> {
    if base.json {
        json["type"] = "summary".into();
        json["rules_version"] = rules_version.into();
        writeln!(out, "{json}")?;
    } else {
        if after_lines {
            writeln!(out)?;
        }
        write!(out, "{text}")?;
    }
    out.flush()?;
    Ok(())
}
