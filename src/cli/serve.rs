//! `replyfix serve`: the proxy, from a configuration file or the quick-start
//! flags (checked here, each problem naming its flag), until SIGTERM or
//! Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use replyfix::config::{Config, LogFormat};
use replyfix::runtime::{Reloader, Stop, run_until_stop};
use replyfix::server::{RulesSource, Server};

use super::mode_name;

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum FormatArg {
    Text,
    Json,
}

/// `replyfix serve` arguments.
#[derive(clap::Args)]
pub(super) struct ServeArgs {
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
pub(super) struct QuickTls {
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
pub(super) enum PolicyArg {
    None,
    May,
    Encrypt,
    Verify,
}

pub(super) fn serve(args: ServeArgs) -> Result<ExitCode> {
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
    // The control runtime (signals, reloads, the admin endpoint, checks)
    // on this thread; sessions on one single-threaded runtime per core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let workers =
        replyfix::workers::Workers::for_this_machine().context("starting the worker threads")?;
    let handles = workers.handles().to_vec();
    runtime.block_on(async move {
        let mode = mode_name(config.mode);
        let workers = handles.len();
        tracing::info!(rules_version = %rules.version(), rules = rules.len(), mode, workers, "replyfix starting");
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
        let mut server = Server::start(&config, rules, &handles).await?;
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
    drop(workers);
    Ok(ExitCode::SUCCESS)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (capped at 2^20, the
/// usual kernel `nr_open`), as servers commonly do: each session holds one
/// descriptor for the client and one for the upstream (R3 sizes sessions;
/// the descriptor limit should not be what refuses them first).
pub(super) fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(1 << 20) {
        Ok(soft) => tracing::info!(open_files_limit = soft, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
}

/// The quick-start TLS flags, checked before anything starts: each problem
/// names its flag and says what to give instead.
pub(super) fn check_quick_tls(tls: &QuickTls) -> Result<()> {
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

pub(super) fn apply_quick_tls(config: &mut Config, tls: QuickTls) {
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
