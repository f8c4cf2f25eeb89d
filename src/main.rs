//! The `replyfix` command line: `serve`, `check`, `explain` (a reply, a
//! bounce with `--dsn`, a mail log with `--log`), `replay`, `test-rules`.
//! anyhow lives here only; the library reports typed errors.

use std::io::{BufRead, IsTerminal, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use replyfix::config::{Config, LogFormat};
use replyfix::explain::{explain, parse_reply_arg};
use replyfix::rules::{RuleSet, SessionFacts};
use replyfix::runtime::{Reloader, Stop, run_until_stop};
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

/// `replyfix serve` arguments.
#[derive(clap::Args)]
struct ServeArgs {
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
    /// Serve /metrics, /healthz, /readyz and the console on this address (e.g.
    /// 127.0.0.1:9725); overrides the configuration's `admin.listen`.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Quick start: the name in replyfix's own EHLO to the upstream [default:
    /// the host's fully qualified name, else the address literal of
    /// replyfix's end of the connection].
    #[arg(long, conflicts_with = "config")]
    helo_name: Option<String>,
    #[command(flatten)]
    tls: QuickTls,
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
    /// Upstream leg TLS policy [default: none, as in a configuration file
    /// without `tls:`; see docs/tls.md].
    #[arg(long, value_enum, conflicts_with = "config")]
    upstream_tls: Option<PolicyArg>,
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
        /// Read a bounce message (RFC 3464 DSN, or a Postfix, Exim,
        /// Exchange or Gmail bounce) from FILE, or `-` for standard input.
        #[arg(long, value_name = "FILE|-", conflicts_with_all = ["log", "reply", "command"])]
        dsn: Option<PathBuf>,
        /// Summarise a Postfix, Exim or Sendmail log from FILE, or `-` for
        /// standard input (streamed).
        #[arg(long, value_name = "FILE|-", conflicts_with_all = ["reply", "command"])]
        log: Option<PathBuf>,
        /// With --log: print only the summary, not each reply found.
        #[arg(long, requires = "log")]
        summary_only: bool,
        /// With --log: how many remote hosts to list.
        #[arg(long, default_value_t = 10, requires = "log")]
        top: usize,
        /// The reply (lines separated by `|` or CRLF); one per line from
        /// standard input when absent.
        reply: Option<String>,
    },
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

/// `println!` that ends the program quietly when standard output is a
/// closed pipe (`replyfix explain ... | head`), like other Unix tools,
/// instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        emit(format_args!($($arg)*))
    };
}

fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}")
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo { listen, once } => demo(listen, once),
        Cmd::Serve(args) => serve(args),
        Cmd::Check { config, rules } => check(config, rules),
        Cmd::Explain {
            rules,
            command,
            authenticated,
            tls,
            recipients_accepted,
            json,
            dsn,
            log,
            summary_only,
            top,
            reply,
        } => {
            let base = ExplainBase {
                rules,
                authenticated,
                tls,
                recipients_accepted,
                json,
            };
            match (dsn, log) {
                (Some(path), _) => explain_dsn(base, &path),
                (None, Some(path)) => explain_log(base, &path, summary_only, top),
                (None, None) => explain_cmd(
                    base.rules,
                    &command,
                    authenticated,
                    tls,
                    recipients_accepted,
                    json,
                    reply,
                ),
            }
        }
        Cmd::Replay {
            transcript,
            rules,
            changed_only,
            json,
        } => replay_cmd(&transcript, &rules, changed_only, json),
        Cmd::TestRules { files } => test_rules(files),
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
fn mode_name(mode: replyfix::config::Mode) -> &'static str {
    match mode {
        replyfix::config::Mode::Enforce => "enforce",
        replyfix::config::Mode::Shadow => "shadow",
    }
}

/// The error and its causes, each said once: a cause whose text the message
/// already contains (errors that name their source) is not repeated.
fn said_once(e: &anyhow::Error) -> String {
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

fn serve(args: ServeArgs) -> Result<ExitCode> {
    let ServeArgs {
        config,
        listen,
        upstream,
        rules,
        log_format,
        shadow,
        admin,
        helo_name,
        tls,
    } = args;
    let config_path = config.clone();
    let rules_override = !rules.is_empty();
    let mut config = match config {
        Some(path) => Config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None if !listen.is_empty() => {
            check_quick_tls(&tls)?;
            let mut c = Config::quick(listen, upstream).map_err(|e| anyhow::anyhow!("{e}"))?;
            apply_quick_tls(&mut c, tls);
            if let Some(name) = &helo_name {
                c.set_helo_name(name).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            c
        }
        None => bail!(
            "nothing to serve: give -c FILE, or --listen ADDR --upstream HOST:PORT (see `replyfix serve --help`)"
        ),
    };
    if !rules.is_empty() {
        config.rules = rules;
    }
    // Flags that change a checked setting carry the checker's warning with
    // them, naming the flag.
    let flag_warning = |key: &str, message: &str| replyfix::config::ConfigDiagnostic {
        file: "command line".into(),
        line: None,
        column: None,
        key: key.into(),
        message: message.into(),
    };
    if shadow {
        config.mode = replyfix::config::Mode::Shadow;
        config.warnings.push(flag_warning(
            "--shadow",
            "shadow mode: rules are judged and logged, but no reply is rewritten",
        ));
    }
    if let Some(listen) = admin {
        // The flag moves the endpoint; the file's other admin settings stay.
        let a = config
            .admin
            .get_or_insert_with(|| replyfix::config::AdminConfig::new(listen));
        a.listen = listen;
        let exposed = a.console_exposure();
        if !listen.ip().is_loopback() {
            config.warnings.push(flag_warning(
                "--admin",
                "the admin endpoint is not on a loopback address; make sure only operators can reach it",
            ));
        }
        if let Some(w) = exposed {
            config.warnings.push(flag_warning("--admin", &w));
        }
    }
    let format = log_format.map(|f| match f {
        FormatArg::Text => LogFormat::Text,
        FormatArg::Json => LogFormat::Json,
    });
    let _log_guard = replyfix::logging::init(&config.logging, format);
    raise_open_files_limit();
    let source = RulesSource::from_config(&config);
    let rules = source
        .load()
        .map_err(|e| anyhow::anyhow!("rules not loaded:\n{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mode = mode_name(config.mode);
        tracing::info!(rules_version = %rules.version(), rules = rules.len(), mode, "replyfix starting");
        // What `check` prints as warnings, `serve` logs at start.
        for w in &config.warnings {
            tracing::warn!(
                file = %w.file,
                line = w.line.map(|l| l as u64),
                key = %w.key,
                "configuration: {}",
                w.message
            );
        }
        let mut server = Server::start(&config, rules).await?;
        let watch = config.reload.watch.then_some(config.reload.interval);
        let mut reloader = Reloader::new(config_path, rules_override, config);
        if run_until_stop(&server, &mut reloader, watch).await == Stop::Interrupt {
            // Ctrl-C in a terminal: the same drain, shorter.
            server.limit_drain(std::time::Duration::from_secs(5));
        }
        server.shutdown().await;
        tracing::info!("replyfix stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `replyfix demo`: the sample upstream, replyfix in front of it, the
/// walk-through on stdout, then (without `--once`) both keep running for
/// the user's own client until Ctrl-C.
fn demo(listen: SocketAddr, once: bool) -> Result<ExitCode> {
    use replyfix::demo::{Demo, capture::Captured, report, try_it};
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let captured = Captured::default();
    // Rewrite records are shown by the demo; warnings and errors still go
    // to stderr.
    let _ = tracing_subscriber::registry()
        .with(captured.layer())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let demo = Demo::start(listen).await.map_err(|e| {
            anyhow::anyhow!(
                "{e}\n(another process on {listen}? try: replyfix demo --listen 127.0.0.1:2526)"
            )
        })?;
        let shown = demo.walk(&captured).await?;
        let rules = demo.server.rules.load().version().to_string();
        out!("{}", report(&shown, demo.upstream.addr, demo.addr, &rules));
        if !once {
            out!("{}", try_it(demo.addr));
            captured.echo();
            let _ = tokio::signal::ctrl_c().await;
        }
        demo.server.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (capped at 2^20, the
/// usual kernel `nr_open`), as servers commonly do: each session holds one
/// descriptor for the client and one for the upstream (R3 sizes sessions;
/// the descriptor limit should not be what refuses them first).
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(1 << 20) {
        Ok(soft) => tracing::info!(open_files_limit = soft, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
}

/// The quick-start TLS flags, checked before anything starts: each problem
/// names its flag and says what to give instead.
fn check_quick_tls(tls: &QuickTls) -> Result<()> {
    let files = [
        (
            "--tls-cert",
            &tls.tls_cert,
            "the client leg's certificate chain (PEM, leaf first)",
        ),
        (
            "--tls-key",
            &tls.tls_key,
            "the client leg's private key (PEM)",
        ),
        (
            "--upstream-ca",
            &tls.upstream_ca,
            "the CA bundle (PEM) that verifies the upstream",
        ),
    ];
    for (flag, path, what) in files {
        if let Some(path) = path
            && !path.is_file()
        {
            bail!("{flag} {}: no such file; give {what}", path.display());
        }
    }
    let encrypts = matches!(
        tls.upstream_tls,
        Some(PolicyArg::Encrypt | PolicyArg::Verify)
    );
    if tls.upstream_implicit_tls && !encrypts {
        bail!(
            "--upstream-implicit-tls needs --upstream-tls encrypt or verify (TLS from the first byte cannot fall back to plaintext)"
        );
    }
    Ok(())
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
        // Without the flag the policy stays the configuration's default:
        // the same words give the same proxy.
        if let Some(policy) = tls.upstream_tls {
            u.tls.policy = match policy {
                PolicyArg::None => TlsPolicy::None,
                PolicyArg::May => TlsPolicy::May,
                PolicyArg::Encrypt => TlsPolicy::Encrypt,
                PolicyArg::Verify => TlsPolicy::Verify,
            };
        }
        u.tls.ca = tls.upstream_ca.clone();
        u.tls.implicit = tls.upstream_implicit_tls;
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
                out!(
                    "config {}: {} listener(s), {} upstream(s), mode {}",
                    path.display(),
                    c.listeners.len(),
                    c.upstreams.len(),
                    mode_name(c.mode)
                );
                for l in &c.listeners {
                    out!(
                        "  listener {} on {} -> upstream {}",
                        l.name,
                        l.address,
                        l.upstream
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
            out!(
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
        out!("ok");
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

/// The `explain` options shared by `--dsn` and `--log`.
struct ExplainBase {
    rules: Vec<PathBuf>,
    authenticated: bool,
    tls: bool,
    recipients_accepted: u32,
    json: bool,
}

impl ExplainBase {
    fn facts(&self) -> SessionFacts<'static> {
        let mut facts = SessionFacts::new(CommandKind::Other);
        facts.authenticated = self.authenticated;
        facts.client_tls = self.tls;
        facts.recipients_accepted = self.recipients_accepted;
        facts
    }
}

/// Opens FILE, or standard input for `-`.
fn open_input(path: &Path) -> Result<Box<dyn BufRead>> {
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
    let mut raw = Vec::new();
    open_input(path)?
        .take(dsn::MAX_BOUNCE as u64)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading {}", path.display()))?;
    let bounce = dsn::parse_bounce(&raw).with_context(|| path.display().to_string())?;
    let reports = dsn::explain_bounce(&rules, &bounce, &base.facts());
    if base.json {
        let v = serde_json::json!({
            "style": bounce.style.as_str(),
            "rules_version": rules.version(),
            "recipients": reports.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        });
        out!("{v}");
    } else {
        out!(
            "bounce: {} style, {} failed recipient(s), rules {}",
            bounce.style.as_str(),
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
    if base.json {
        let mut v = summary.to_json(top);
        v["type"] = "summary".into();
        v["rules_version"] = rules.version().into();
        writeln!(out, "{v}")?;
    } else {
        if !summary_only && summary.replies > 0 {
            writeln!(out)?;
        }
        write!(out, "{}", summary.display(top))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn replay_cmd(
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
            out!(
                "FAIL {}:{}: rule '{}': {}\n     {}",
                o.file,
                o.line,
                o.rule,
                o.example,
                o.message
            );
        }
    }
    out!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
