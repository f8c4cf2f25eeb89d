//! The `replyfix` command line: `serve`, `check`, `explain`, `test-rules`.
//! anyhow lives here only; the library reports typed errors.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use replyfix::config::{Config, LogFormat};
use replyfix::explain::{explain, parse_reply_arg};
use replyfix::rules::{RuleSet, SessionFacts};
use replyfix::server::{RulesSource, Server};
use replyfix::smtp::CommandKind;

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

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Json,
}

/// Quick-start TLS flags, mirroring the configuration (without `-c`).
#[derive(clap::Args)]
struct QuickTls {
    /// Client leg: certificate chain (PEM); enables STARTTLS.
    #[arg(long, requires = "tls_key", conflicts_with = "config")]
    tls_cert: Option<PathBuf>,
    /// Client leg: private key (PEM).
    #[arg(long, requires = "tls_cert", conflicts_with = "config")]
    tls_key: Option<PathBuf>,
    /// Client leg: TLS from the first byte (port 465 style) instead of STARTTLS.
    #[arg(long, requires = "tls_cert", conflicts_with = "config")]
    implicit_tls: bool,
    /// Upstream leg TLS policy.
    #[arg(long, value_enum, default_value = "may", conflicts_with = "config")]
    upstream_tls: PolicyArg,
    /// Upstream leg: CA bundle (PEM) for `verify` (system roots otherwise).
    #[arg(long, conflicts_with = "config")]
    upstream_ca: Option<PathBuf>,
    /// Upstream leg: TLS from the first byte instead of STARTTLS.
    #[arg(long, conflicts_with = "config")]
    upstream_implicit_tls: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyArg {
    None,
    May,
    Encrypt,
    Verify,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy.
    Serve {
        /// Configuration file (YAML).
        #[arg(short, long, conflicts_with_all = ["listen", "upstream"])]
        config: Option<PathBuf>,
        /// Quick start: address to listen on (repeatable), e.g. 127.0.0.1:2525.
        #[arg(long, requires = "upstream")]
        listen: Vec<SocketAddr>,
        /// Quick start: upstream server HOST:PORT (repeat for failover order).
        #[arg(long, requires = "listen")]
        upstream: Vec<String>,
        /// Quick start: rule file or folder instead of the built-in rules.
        #[arg(long)]
        rules: Vec<PathBuf>,
        /// Log format (overrides the configuration).
        #[arg(long, value_enum)]
        log_format: Option<FormatArg>,
        /// Report what rules would change without changing it.
        #[arg(long)]
        shadow: bool,
        #[command(flatten)]
        tls: QuickTls,
    },
    /// Validate a configuration and its rules; print a summary.
    Check {
        /// Configuration file; without it, only rules are checked.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Rule files or folders to check (instead of, or besides, the config's).
        #[arg(long)]
        rules: Vec<PathBuf>,
    },
    /// Show what the rules do with a reply.
    Explain {
        /// Rule file or folder (repeatable); built-in rules when absent.
        #[arg(long)]
        rules: Vec<PathBuf>,
        /// The command the reply answered.
        #[arg(long, default_value = "other")]
        command: String,
        /// The session had authenticated.
        #[arg(long)]
        authenticated: bool,
        /// The client leg used TLS.
        #[arg(long)]
        tls: bool,
        /// Recipients already accepted in the transaction.
        #[arg(long, default_value_t = 0)]
        recipients_accepted: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// The reply (lines separated by `|` or CRLF); one per line from
        /// standard input when absent.
        reply: Option<String>,
    },
    /// Run every `examples:` entry of the rules.
    TestRules {
        /// Rule files or folders; the built-in rules when absent.
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve {
            config,
            listen,
            upstream,
            rules,
            log_format,
            shadow,
            tls,
        } => serve(config, listen, upstream, rules, log_format, shadow, tls),
        Cmd::Check { config, rules } => check(config, rules),
        Cmd::Explain {
            rules,
            command,
            authenticated,
            tls,
            recipients_accepted,
            json,
            reply,
        } => explain_cmd(
            rules,
            &command,
            authenticated,
            tls,
            recipients_accepted,
            json,
            reply,
        ),
        Cmd::TestRules { files } => test_rules(files),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("replyfix: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_rules(paths: &[PathBuf]) -> Result<RuleSet> {
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

fn serve(
    config: Option<PathBuf>,
    listen: Vec<SocketAddr>,
    upstream: Vec<String>,
    rules: Vec<PathBuf>,
    log_format: Option<FormatArg>,
    shadow: bool,
    tls: QuickTls,
) -> Result<ExitCode> {
    let mut config = match config {
        Some(path) => Config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None if !listen.is_empty() => {
            let mut c = Config::quick(listen, upstream).map_err(|e| anyhow::anyhow!("{e}"))?;
            apply_quick_tls(&mut c, tls);
            c
        }
        None => bail!(
            "nothing to serve: give -c FILE, or --listen ADDR --upstream HOST:PORT (see `replyfix serve --help`)"
        ),
    };
    if !rules.is_empty() {
        config.rules = rules;
    }
    if shadow {
        config.mode = replyfix::config::Mode::Shadow;
    }
    let format = log_format.map(|f| match f {
        FormatArg::Text => LogFormat::Text,
        FormatArg::Json => LogFormat::Json,
    });
    replyfix::logging::init(&config.logging, format);
    let source = RulesSource::from_config(&config);
    let rules = source
        .load()
        .map_err(|e| anyhow::anyhow!("rules not loaded:\n{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        tracing::info!(rules_version = %rules.version(), rules = rules.len(), mode = ?config.mode, "replyfix starting");
        let server = Server::start(&config, rules).await?;
        run_until_signal(&server, &source).await;
        server.shutdown().await;
        tracing::info!("replyfix stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn apply_quick_tls(config: &mut Config, tls: QuickTls) {
    use replyfix::config::{ListenerTls, TlsPolicy};
    if let (Some(cert), Some(key)) = (tls.tls_cert, tls.tls_key) {
        for l in &mut config.listeners {
            l.tls = Some(ListenerTls {
                cert: cert.clone(),
                key: key.clone(),
                implicit: tls.implicit_tls,
                require_tls: false,
            });
        }
    }
    for u in &mut config.upstreams {
        u.tls.policy = match tls.upstream_tls {
            PolicyArg::None => TlsPolicy::None,
            PolicyArg::May => TlsPolicy::May,
            PolicyArg::Encrypt => TlsPolicy::Encrypt,
            PolicyArg::Verify => TlsPolicy::Verify,
        };
        u.tls.ca = tls.upstream_ca.clone();
        u.tls.implicit = tls.upstream_implicit_tls;
    }
}

/// Waits for SIGTERM/SIGINT; reloads rules on SIGHUP (F5: invalid rules
/// change nothing).
async fn run_until_signal(server: &Server, source: &RulesSource) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); return; }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); return; }
            _ = hup.recv() => {
                server.reload_certificates();
                match source.load() {
                    Ok(rules) => {
                        tracing::info!(rules_version = %rules.version(), rules = rules.len(), "rules reloaded");
                        server.swap_rules(rules);
                    }
                    Err(e) => tracing::error!(errors = %e, "rules reload failed; the previous rules stay in force"),
                }
            }
        }
    }
}

fn check(config: Option<PathBuf>, rules: Vec<PathBuf>) -> Result<ExitCode> {
    let mut failed = false;
    let mut rule_paths = rules;
    if let Some(path) = &config {
        match Config::load(path) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "config {}: {} listener(s), {} upstream(s), mode {:?}",
                    path.display(),
                    c.listeners.len(),
                    c.upstreams.len(),
                    c.mode
                );
                for l in &c.listeners {
                    println!(
                        "  listener {} on {} -> upstream {}",
                        l.name, l.address, l.upstream
                    );
                }
                if rule_paths.is_empty() {
                    rule_paths = c.rules.clone();
                }
            }
            Err(e) => {
                for d in &e.0 {
                    eprintln!("error: {d}");
                }
                failed = true;
            }
        }
    }
    match load_rules(&rule_paths) {
        Ok(rules) => {
            let from = if rule_paths.is_empty() {
                "built-in rules".to_string()
            } else {
                rule_paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "rules ({from}): {} rule(s), version {}",
                rules.len(),
                rules.version()
            );
        }
        Err(e) => {
            eprintln!("{e}");
            failed = true;
        }
    }
    if failed {
        eprintln!("check failed: fix the errors above (each names file, line and key or rule id)");
        Ok(ExitCode::FAILURE)
    } else {
        println!("ok");
        Ok(ExitCode::SUCCESS)
    }
}

#[allow(clippy::too_many_arguments)]
fn explain_cmd(
    rules: Vec<PathBuf>,
    command: &str,
    authenticated: bool,
    tls: bool,
    recipients_accepted: u32,
    json: bool,
    reply: Option<String>,
) -> Result<ExitCode> {
    let rules = load_rules(&rules)?;
    let kind: CommandKind = command
        .parse()
        .map_err(|e| anyhow::anyhow!("--command: {e}"))?;
    let mut facts = SessionFacts::new(kind);
    facts.authenticated = authenticated;
    facts.client_tls = tls;
    facts.recipients_accepted = recipients_accepted;
    let mut status = ExitCode::SUCCESS;
    let mut one = |text: &str| match parse_reply_arg(text) {
        Ok(reply) => {
            let e = explain(&rules, reply, &facts);
            if json {
                println!("{}", e.to_json());
            } else {
                println!("{e}");
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

fn test_rules(files: Vec<PathBuf>) -> Result<ExitCode> {
    let rules = load_rules(&files)?;
    let outcomes = rules.run_examples();
    let mut passed = 0;
    let mut failed = 0;
    for o in &outcomes {
        if o.passed {
            passed += 1;
        } else {
            failed += 1;
            println!(
                "FAIL {}:{}: rule '{}': {}\n     {}",
                o.file, o.line, o.rule, o.example, o.message
            );
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
