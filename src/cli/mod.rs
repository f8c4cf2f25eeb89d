//! The `replyfix` command line: the subcommands, one file each (`serve`,
//! `demo`, `check`, `explain`, `replay`, `test-rules`), and what they share
//! (loading rules, printing to a pipe that may close, saying an error
//! once). anyhow lives in the binary only; the library reports typed errors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use replyfix::rules::RuleSet;

/// `println!` that ends the program quietly when standard output is a
/// closed pipe (`replyfix explain ... | head`), like other Unix tools,
/// instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::emit(format_args!($($arg)*))
    };
}

mod check;
mod demo;
mod explain;
mod replay;
mod serve;
mod test_rules;

use self::serve::ServeArgs;

#[derive(Parser)]
#[command(
    name = "replyfix",
    version,
    about = "SMTP proxy that rewrites misleading replies (misused 530s) into accurate codes"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// See replyfix at work: a sample upstream that misuses 530, replyfix in
    /// front of it, and what the client gets (no other software needed).
    Demo {
        /// Where replyfix listens (loopback only).
        #[arg(long, default_value = "127.0.0.1:2525")]
        listen: SocketAddr,
        /// Stop after the walk-through instead of waiting for your client.
        #[arg(long)]
        once: bool,
    },
    /// Run the proxy.
    Serve(ServeArgs),
    /// Validate a configuration and its rules; print a summary.
    Check {
        /// Configuration file; without it, only rules are checked.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Rule files or folders to check (instead of, or besides, the config's).
        #[arg(long)]
        rules: Vec<PathBuf>,
    },
    /// Show what the rules do with a reply, a bounce (--dsn) or a mail log (--log).
    Explain(explain::ExplainArgs),
    /// Judge a recorded transcript again with candidate rules and show what
    /// would change, side by side with what happened.
    Replay {
        /// Transcript file (JSON lines written by the proxy), or `-`.
        transcript: PathBuf,
        /// Candidate rule file or folder (repeatable); built-in rules when absent.
        #[arg(long)]
        rules: Vec<PathBuf>,
        /// Show only the replies that would change.
        #[arg(long)]
        changed_only: bool,
        /// Machine-readable output (JSON lines, then a summary object).
        #[arg(long)]
        json: bool,
    },
    /// Run every `examples:` entry of the rules.
    TestRules {
        /// Rule files or folders; the built-in rules when absent.
        files: Vec<PathBuf>,
    },
}

pub(crate) fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}")
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Parses the command line and runs the subcommand.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo { listen, once } => demo::demo(listen, once),
        Cmd::Serve(args) => serve::serve(args),
        Cmd::Check { config, rules } => check::check(config, rules),
        Cmd::Explain(args) => explain::explain(args),
        Cmd::Replay {
            transcript,
            rules,
            changed_only,
            json,
        } => replay::replay_cmd(&transcript, &rules, changed_only, json),
        Cmd::TestRules { files } => test_rules::test_rules(files),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("replyfix: {}", said_once(&e));
            ExitCode::FAILURE
        }
    }
}

/// The mode as a configuration file writes it.
pub(super) fn mode_name(mode: replyfix::config::Mode) -> &'static str {
    match mode {
        replyfix::config::Mode::Enforce => "enforce",
        replyfix::config::Mode::Shadow => "shadow",
    }
}

/// The error and its causes, each said once: a cause whose text the message
/// already contains (errors that name their source) is not repeated.
pub(super) fn said_once(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

pub(super) fn load_rules(paths: &[PathBuf]) -> Result<RuleSet> {
    if paths.is_empty() {
        return Ok(RuleSet::builtin());
    }
    match RuleSet::load_paths(paths) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            Ok(loaded.rules)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            bail!("{} error(s) in the rules; nothing loaded", errors.0.len())
        }
    }
}
