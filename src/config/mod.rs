//! Configuration: the model, loading it from YAML, and validating it.
//!
//! This module owns the settings replyfix runs with: listeners, upstreams,
//! rule file locations, protocol policies (PROTOCOL D2), resource limits
//! (R1–R4), timeouts (F3), logging (L3) and the admin endpoint. It reads one
//! YAML file (or the `serve --listen/--upstream` shortcut), checks it and
//! hands back a [`Config`] the rest of the program trusts.
//!
//! Every problem is reported as a [`ConfigDiagnostic`] naming the file, the
//! line and column, and the dotted key (`listeners[0].upstream`). Syntax and
//! type errors stop at the first one (that is how serde works); semantic
//! errors are all collected and reported together.
//!
//! How lines are found: serde-saphyr errors carry a line and column but no
//! key path, and a typed model loses positions. So the text is parsed twice:
//! once into a position index (a tree of [`serde_saphyr::Spanned`] nodes,
//! flattened into `path -> line:column`), and once into the typed model. A
//! deserialization error's position is looked up in the index to name its
//! key; a semantic error's key is looked up to find its line.
//!
//! This module must never open sockets, start tasks, read rule files (only
//! check that they exist), or log: it returns diagnostics and the caller
//! decides what to print.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_saphyr::Spanned;

/// Largest config file [`Config::load`] reads; anything bigger is a mistake.
const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// The file name used in diagnostics for [`Config::quick`].
const COMMAND_LINE: &str = "command line";

/// Reloading without SIGHUP (F5): watch the configuration, rule and
/// certificate files and reload when one of them changes (a Kubernetes
/// ConfigMap update, a certificate renewal).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Poll the files for changes (size and modification time).
    pub watch: bool,
    /// How often to look.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch: false,
            interval: Duration::from_secs(5),
        }
    }
}

/// Where and how much to record for `replyfix replay`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptConfig {
    /// JSON-lines file, appended to.
    pub path: PathBuf,
    /// Stop recording past this size (default 256 MiB).
    #[serde(default = "default_transcript_max")]
    pub max_bytes: u64,
}

fn default_transcript_max() -> u64 {
    256 * 1024 * 1024
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// Everything replyfix runs with. Built by [`Config::load`],
/// [`Config::from_yaml`] or [`Config::quick`]; always validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Addresses replyfix accepts SMTP clients on; at least one.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// Servers replyfix relays to, by name; at least one.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// Rule files or folders, in order. Empty means the built-in rules.
    /// Relative paths are resolved against the config file's folder.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// Whether rewrites are applied (`enforce`) or only logged (`shadow`).
    #[serde(default)]
    pub mode: Mode,
    /// What to do with a bare CR, bare LF or NUL in message content
    /// (PROTOCOL D2).
    #[serde(default)]
    pub bare_line_endings: BareLineEndings,
    /// Resource limits (PROTOCOL R1–R4).
    #[serde(default)]
    pub limits: Limits,
    /// Timeouts (PROTOCOL F3, RFC 5321 4.5.3.2).
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Log format, level and how envelope addresses appear (PROTOCOL L3).
    #[serde(default)]
    pub logging: Logging,
    /// The metrics and health endpoint; off when absent.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Record judged replies (context, session facts, reply, verdict; never
    /// credentials, content or addresses) for `replyfix replay`; off when
    /// absent.
    #[serde(default)]
    pub transcript: Option<TranscriptConfig>,
    /// How rule and certificate changes are picked up besides SIGHUP.
    #[serde(default)]
    pub reload: ReloadConfig,
    /// The name replyfix uses in replies it writes itself. Default: the
    /// system hostname (`/proc/sys/kernel/hostname`), else `replyfix`.
    #[serde(default = "system_hostname")]
    pub hostname: String,
    /// The file this config was loaded from (not a YAML key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Things that are allowed but probably not what the operator wants
    /// (not a YAML key). Print them at startup and in `replyfix check`.
    #[serde(skip)]
    pub warnings: Vec<ConfigDiagnostic>,
}

/// One address replyfix accepts clients on, and where it sends them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name used in logs, metrics and rules (`listener:` match).
    pub name: String,
    /// IP address and port to bind, e.g. `127.0.0.1:2525` or `[::1]:2525`.
    #[serde(deserialize_with = "de_socket_addr")]
    pub address: SocketAddr,
    /// Name of the upstream (from `upstreams`) this listener relays to.
    pub upstream: String,
    /// TLS on the client leg (docs/tls.md).
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Expect a PROXY protocol header from the connecting peer.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Peers allowed to send a PROXY header; required with `proxy_protocol`.
    #[serde(default, deserialize_with = "de_ip_nets")]
    pub trusted_proxies: Vec<IpNet>,
}

/// Client-leg TLS for one listener (RFC 3207; PROTOCOL T1, T3, T5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// TLS from the first byte (port 465 style, RFC 8314) instead of STARTTLS.
    #[serde(default)]
    pub implicit: bool,
    /// Refuse mail commands before STARTTLS with `530 5.7.0 Must issue a
    /// STARTTLS command first` (PROTOCOL T5).
    #[serde(default)]
    pub require_tls: bool,
}

/// Which PROXY protocol header versions a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// Text header (`PROXY TCP4 ...`).
    V1,
    /// Binary header.
    V2,
    /// Either version, detected from the first bytes.
    Any,
}

/// A named group of servers tried in order (failover).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name listeners refer to.
    pub name: String,
    /// `host:port` entries, tried in order; IPv6 in brackets (`[::1]:25`).
    pub servers: Vec<String>,
    /// Upstream-leg TLS (PROTOCOL T4).
    #[serde(default)]
    pub tls: UpstreamTls,
    /// Name in the EHLO replyfix sends itself before STARTTLS or XCLIENT;
    /// `None`: `hostname`. The client's own EHLO is always relayed unchanged.
    #[serde(default)]
    pub helo_name: Option<String>,
    /// How the real client address is passed upstream.
    #[serde(default)]
    pub send_client_address: ClientAddressForwarding,
}

/// Upstream-leg TLS settings (PROTOCOL T4).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// `none | may | encrypt | verify`, like Postfix's
    /// `smtp_tls_security_level`.
    #[serde(default)]
    pub policy: TlsPolicy,
    /// PEM CA bundle for `verify`; system roots when absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Name to verify and send as SNI; default: the server's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// TLS from the first byte (port 465) instead of STARTTLS.
    #[serde(default)]
    pub implicit: bool,
}

/// Upstream TLS policy (PROTOCOL T4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Plaintext; the upstream's STARTTLS is not used.
    #[default]
    None,
    /// STARTTLS when offered, plaintext otherwise; no certificate check.
    May,
    /// STARTTLS required; no certificate check.
    Encrypt,
    /// STARTTLS (or implicit TLS) required and the certificate verified.
    Verify,
}

impl TlsPolicy {
    /// The policy as written in a configuration file.
    pub const fn as_str(self) -> &'static str {
        match self {
            TlsPolicy::None => "none",
            TlsPolicy::May => "may",
            TlsPolicy::Encrypt => "encrypt",
            TlsPolicy::Verify => "verify",
        }
    }
}

/// How replyfix tells the upstream who the real client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAddressForwarding {
    /// Not at all: the upstream sees replyfix's address.
    #[default]
    None,
    /// PROXY protocol v1 header before the SMTP conversation.
    ProxyV1,
    /// PROXY protocol v2 header before the SMTP conversation.
    ProxyV2,
    /// Postfix `XCLIENT` command after the greeting, when advertised.
    Xclient,
}

/// Whether rules change replies or only report what they would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Rewrite replies as the rules say.
    #[default]
    Enforce,
    /// Judge and log every reply, but relay it unchanged.
    Shadow,
}

/// Policy for bare CR, bare LF and NUL in message content (PROTOCOL D2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndings {
    /// Abort the upstream transaction, answer `550 5.5.2`, close.
    #[default]
    Reject,
    /// Replace the byte with a space (and re-stuff dots, PROTOCOL D3).
    Sanitize,
}

/// Resource limits (PROTOCOL R1–R4). Every buffer has a bound.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent sessions, all listeners together.
    pub max_sessions: usize,
    /// Concurrent sessions per client IPv4 address or IPv6 /64.
    pub max_sessions_per_client: usize,
    /// Longest client command line in octets, CRLF included (R1).
    pub max_command_line: usize,
    /// Longest upstream reply line kept; longer lines are truncated (P2).
    pub max_reply_line: usize,
    /// Largest whole (multi-line) upstream reply in octets.
    pub max_reply: usize,
    /// Outstanding pipelined commands (P1).
    pub max_pipeline: usize,
    /// Longest SASL response line in octets (P4, RFC 4954).
    pub max_sasl_line: usize,
    /// Errors before `421 4.7.0 too many errors` (R4).
    pub max_errors: u32,
    /// Message size cap in octets; `None` leaves it to the upstream.
    pub max_message_size: Option<u64>,
    /// TLS handshakes in progress, all listeners together (R3).
    pub max_tls_handshakes: usize,
    /// Minimum bytes/s during DATA/BDAT; 0 disables the check (R3).
    pub min_data_rate: u64,
    /// Longest a session may last, whatever it does (R3).
    #[serde(deserialize_with = "de_duration")]
    pub max_session_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 1000,
            max_sessions_per_client: 50,
            max_command_line: 2048,
            max_reply_line: 2048,
            max_reply: 65536,
            max_pipeline: 100,
            max_sasl_line: 12288,
            max_errors: 20,
            max_message_size: None,
            max_tls_handshakes: 100,
            min_data_rate: 1024,
            max_session_lifetime: Duration::from_secs(3600),
        }
    }
}

/// Timeouts (PROTOCOL F3), chosen to fit inside the client's RFC 5321
/// 4.5.3.2 timers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect to one upstream server.
    #[serde(deserialize_with = "de_duration")]
    pub upstream_connect: Duration,
    /// Upstream reply to a command, the greeting included.
    #[serde(deserialize_with = "de_duration")]
    pub upstream_reply: Duration,
    /// Upstream reply after the end of data (RFC 5321 4.5.3.2.6).
    #[serde(deserialize_with = "de_duration")]
    pub data_end_reply: Duration,
    /// Client silence between commands before `421 4.4.2`.
    #[serde(deserialize_with = "de_duration")]
    pub client_idle: Duration,
    /// A command line must arrive complete within this (R3).
    #[serde(deserialize_with = "de_duration")]
    pub command: Duration,
    /// One TLS handshake, either leg.
    #[serde(deserialize_with = "de_duration")]
    pub tls_handshake: Duration,
    /// On shutdown, how long transactions in flight may finish (F6).
    #[serde(deserialize_with = "de_duration")]
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            upstream_connect: Duration::from_secs(30),
            upstream_reply: Duration::from_secs(240),
            data_end_reply: Duration::from_secs(540),
            client_idle: Duration::from_secs(300),
            command: Duration::from_secs(300),
            tls_handshake: Duration::from_secs(30),
            drain: Duration::from_secs(30),
        }
    }
}

/// Logging settings.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// `auto` (text on a terminal, JSON otherwise), `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter: a level (`info`) or directives
    /// (`info,replyfix::rules=debug`). Overridden by `RUST_LOG`, if the
    /// binary chooses to honour it.
    pub level: String,
    /// How envelope addresses appear in logs (PROTOCOL L3).
    pub log_addresses: LogAddresses,
    /// Secret key for `log_addresses: hash`. Never printed by `Debug`.
    pub hash_key: Option<String>,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            format: LogFormat::Auto,
            level: "info".to_owned(),
            log_addresses: LogAddresses::Domain,
            hash_key: None,
        }
    }
}

impl fmt::Debug for Logging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logging")
            .field("format", &self.format)
            .field("level", &self.level)
            .field("log_addresses", &self.log_addresses)
            .field("hash_key", &self.hash_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON otherwise.
    #[default]
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The concrete format: `Auto` becomes `Text` on a terminal and `Json`
    /// otherwise.
    pub fn resolve(self, stderr_is_terminal: bool) -> LogFormat {
        match self {
            LogFormat::Auto if stderr_is_terminal => LogFormat::Text,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

/// How envelope addresses appear in logs (PROTOCOL L3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogAddresses {
    /// The whole address.
    Full,
    /// Only the domain: `*@example.com`.
    #[default]
    Domain,
    /// A keyed hash of the local part, plus the domain.
    Hash,
}

/// The admin endpoint (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to serve HTTP on; keep it private.
    #[serde(deserialize_with = "de_socket_addr")]
    pub listen: SocketAddr,
}

// ---------------------------------------------------------------------------
// Diagnostics
// ---------------------------------------------------------------------------

/// One problem (or warning) in a configuration, pointing at where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDiagnostic {
    /// The file, or `command line` for [`Config::quick`].
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted key path, e.g. `listeners[0].upstream`; empty for the whole
    /// document.
    pub key: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for ConfigDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A configuration that cannot be used: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_lines(.0))]
pub struct ConfigError(pub Vec<ConfigDiagnostic>);

fn display_lines(diagnostics: &[ConfigDiagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    fn single(file: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError(vec![ConfigDiagnostic {
            file: file.to_owned(),
            line: None,
            column: None,
            key: key.to_owned(),
            message: message.into(),
        }])
    }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

impl Config {
    /// Reads, parses and validates the config file at `path`. Relative paths
    /// in it are resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let io_error =
            |e: std::io::Error| ConfigError::single(&file, "", format!("cannot read: {e}"));
        let size = std::fs::metadata(path).map_err(io_error)?.len();
        if size > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError::single(
                &file,
                "",
                format!(
                    "file is {size} bytes; a config file may be at most {MAX_CONFIG_FILE_BYTES}"
                ),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(io_error)?;
        Config::from_yaml(&file, &text)
    }

    /// Parses and validates YAML `text`. `file_name` names the text in
    /// diagnostics, becomes [`Config::source`], and its folder is the base
    /// for relative paths.
    pub fn from_yaml(file_name: &str, text: &str) -> Result<Config, ConfigError> {
        // Best effort: a document the index cannot read (odd keys, tags)
        // still loads, only with fewer line numbers in semantic errors.
        // Duplicate keys pass through so the index can name them.
        let mut index_options = yaml_options();
        index_options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
        let index = serde_saphyr::from_str_with_options::<Spanned<Node>>(text, index_options)
            .map(|root| PositionIndex::build(&root))
            .unwrap_or_default();
        let mut config: Config = serde_saphyr::from_str_with_options(text, yaml_options())
            .map_err(|e| ConfigError(vec![diagnostic_from_yaml(file_name, &index, &e)]))?;
        config.source = Some(PathBuf::from(file_name));
        let base = Path::new(file_name).parent().unwrap_or(Path::new(""));
        config.resolve_paths(base);
        config.validate(file_name, &index)
    }

    /// The `serve --listen A --upstream H:P` shortcut: one upstream named
    /// `default` with `upstream` as its servers, one listener per address
    /// (named `default` when there is one, else `listener-1`, `listener-2`,
    /// ...), everything else default. Validated like a file.
    pub fn quick(listen: Vec<SocketAddr>, upstream: Vec<String>) -> Result<Config, ConfigError> {
        let single = listen.len() == 1;
        let listeners = listen
            .into_iter()
            .enumerate()
            .map(|(i, address)| ListenerConfig {
                name: if single {
                    "default".to_owned()
                } else {
                    format!("listener-{}", i + 1)
                },
                address,
                upstream: "default".to_owned(),
                tls: None,
                proxy_protocol: None,
                trusted_proxies: Vec::new(),
            })
            .collect();
        let config = Config {
            listeners,
            upstreams: vec![UpstreamConfig {
                name: "default".to_owned(),
                servers: upstream,
                tls: UpstreamTls::default(),
                helo_name: None,
                send_client_address: ClientAddressForwarding::None,
            }],
            rules: Vec::new(),
            mode: Mode::default(),
            bare_line_endings: BareLineEndings::default(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            logging: Logging::default(),
            admin: None,
            transcript: None,
            reload: ReloadConfig::default(),
            hostname: system_hostname(),
            source: None,
            warnings: Vec::new(),
        };
        config.validate(COMMAND_LINE, &PositionIndex::default())
    }

    /// The upstream a listener relays to. Always `Some` for a validated
    /// config.
    pub fn upstream_for(&self, listener: &ListenerConfig) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == listener.upstream)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() && !base.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        self.rules.iter_mut().for_each(resolve);
        if let Some(t) = &mut self.transcript {
            resolve(&mut t.path);
        }
        for listener in &mut self.listeners {
            if let Some(tls) = &mut listener.tls {
                resolve(&mut tls.cert);
                resolve(&mut tls.key);
            }
        }
        for upstream in &mut self.upstreams {
            if let Some(ca) = &mut upstream.tls.ca {
                resolve(ca);
            }
        }
    }

    fn validate(mut self, file: &str, index: &PositionIndex) -> Result<Config, ConfigError> {
        let mut check = Checker {
            file,
            index,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        check.upstreams(&self.upstreams);
        check.listeners(&self.listeners, &self.upstreams);
        check.unused_upstreams(&self.listeners, &self.upstreams);
        check.rules(&self.rules);
        check.limits(&self.limits);
        check.timeouts(&self.timeouts);
        check.logging(&self.logging);
        check.admin(self.admin.as_ref(), &self.listeners);
        check.hostname("hostname", &self.hostname);
        check.policies(self.mode, self.bare_line_endings);
        if check.errors.is_empty() {
            self.warnings = check.warnings;
            Ok(self)
        } else {
            let mut errors = check.errors;
            errors.sort_by_key(|d| (d.line.is_none(), d.line, d.column));
            Err(ConfigError(errors))
        }
    }
}

fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // YAML 1.1's `yes`/`no`/`on`/`off` booleans surprise people; a config
    // takes only `true` and `false`.
    options.strict_booleans = true;
    // We render our own one-line diagnostics.
    options.with_snippet = false;
    options
}

/// The system hostname if it is a usable SMTP domain, else `replyfix`.
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| domain_problem(s).is_none())
        .unwrap_or_else(|| "replyfix".to_owned())
}

// ---------------------------------------------------------------------------
// Value parsers used during deserialization
// ---------------------------------------------------------------------------

/// Parses `30s`, `5m`, `1h30m`, `500ms`, `2d`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let help = "write a number with a unit, e.g. 30s, 5m, 1h, 1h30m, 500ms (units: ms, s, m, h, d)";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration: {help}"));
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration '{text}': {help}"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration '{text}': number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            "d" => number.checked_mul(86400).map(Duration::from_secs),
            "" => {
                return Err(format!(
                    "invalid duration '{text}': unit missing after {number}; {help}"
                ));
            }
            unit => {
                return Err(format!(
                    "invalid duration '{text}': unknown unit '{unit}'; {help}"
                ));
            }
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("invalid duration '{text}': too large"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 30s, 5m or 1h")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("negative duration {v}")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "duration {v} has a fraction; use a smaller unit, e.g. 1500ms"
            )))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
    deserializer.deserialize_any(Visitor)
}

fn de_socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.trim().parse().map_err(|_| {
        de::Error::custom(format!(
            "'{text}' is not an IP address with a port; write e.g. 127.0.0.1:2525 or [::1]:2525 \
             (bind addresses are IP addresses, not host names)"
        ))
    })
}

/// A network for `trusted_proxies`; a bare address means just that host.
struct TrustedNet(IpNet);

impl<'de> Deserialize<'de> for TrustedNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(TrustedNet(net));
        }
        if let Ok(ip) = text.parse::<std::net::IpAddr>() {
            return Ok(TrustedNet(IpNet::from(ip)));
        }
        Err(de::Error::custom(format!(
            "'{text}' is not an IP address or network; write e.g. 10.0.0.1, 10.0.0.0/8 or 2001:db8::/32"
        )))
    }
}

fn de_ip_nets<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let nets = Vec::<TrustedNet>::deserialize(deserializer)?;
    Ok(nets.into_iter().map(|n| n.0).collect())
}

// ---------------------------------------------------------------------------
// Position index: dotted key path <-> line:column
// ---------------------------------------------------------------------------

/// A YAML node with positions, read only to build the [`PositionIndex`].
enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Map(entries))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// 1-based line and column.
type Pos = (usize, usize);

fn pos_of<T>(spanned: &Spanned<T>) -> Option<Pos> {
    let loc = spanned.referenced;
    let line = usize::try_from(loc.line()).ok()?;
    let column = usize::try_from(loc.column()).ok()?;
    (line > 0).then_some((line, column))
}

/// Where each key and value of the document is.
#[derive(Default)]
struct PositionIndex {
    /// Path of a value -> its position.
    values: HashMap<String, Pos>,
    /// Path of a mapping entry -> position of its key.
    keys: HashMap<String, Pos>,
    /// Every (position, path, is_key, is_map), for reverse lookup.
    all: Vec<(Pos, String, bool, bool)>,
}

impl PositionIndex {
    fn build(root: &Spanned<Node>) -> Self {
        let mut index = PositionIndex::default();
        index.add(String::new(), root);
        index
    }

    fn add(&mut self, path: String, node: &Spanned<Node>) {
        let is_map = matches!(node.value, Node::Map(_));
        if let Some(pos) = pos_of(node) {
            self.values.insert(path.clone(), pos);
            self.all.push((pos, path.clone(), false, is_map));
        }
        match &node.value {
            Node::Map(entries) => {
                for (key, value) in entries {
                    let child = if path.is_empty() {
                        key.value.clone()
                    } else {
                        format!("{path}.{}", key.value)
                    };
                    if let Some(pos) = pos_of(key) {
                        self.keys.insert(child.clone(), pos);
                        self.all.push((pos, child.clone(), true, false));
                    }
                    self.add(child, value);
                }
            }
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.add(format!("{path}[{i}]"), item);
                }
            }
            Node::Scalar => {}
        }
    }

    fn contains(&self, path: &str) -> bool {
        self.values.contains_key(path) || self.keys.contains_key(path)
    }

    /// Position of `path`'s value (or key); when the path is not in the
    /// document (a default), the nearest ancestor that is, short of the
    /// document itself (line 1 would tell the reader nothing).
    fn locate(&self, path: &str) -> Option<Pos> {
        let mut path = path;
        while !path.is_empty() {
            if let Some(pos) = self.values.get(path).or_else(|| self.keys.get(path)) {
                return Some(*pos);
            }
            path = parent_path(path)?;
        }
        None
    }

    /// The key path at `pos`: a key there wins (unknown keys are reported
    /// at the key), then the deepest value there; else the nearest entry
    /// before `pos`.
    fn path_at(&self, pos: Pos) -> Option<&str> {
        let exact = |want_key: bool| {
            self.all
                .iter()
                .filter(|(p, _, is_key, _)| *p == pos && *is_key == want_key)
                .max_by_key(|(_, path, _, _)| path.len())
        };
        if let Some((_, path, _, _)) = exact(true).or_else(|| exact(false)) {
            return Some(path);
        }
        self.all
            .iter()
            .filter(|(p, _, _, _)| *p <= pos)
            .max_by_key(|(p, path, _, _)| (*p, path.len()))
            .map(|(_, path, _, _)| path.as_str())
    }

    /// The path of the mapping a missing-field error at `pos` is about.
    /// serde-saphyr reports it at the last key read in that mapping, or at
    /// the mapping itself when it has no keys.
    fn map_missing_a_field(&self, pos: Pos) -> Option<&str> {
        let key_here = self
            .all
            .iter()
            .filter(|(p, _, is_key, _)| *p == pos && *is_key)
            .max_by_key(|(_, path, _, _)| path.len());
        if let Some((_, path, _, _)) = key_here {
            return parent_path(path);
        }
        self.all
            .iter()
            .filter(|(p, _, is_key, is_map)| *p == pos && !is_key && *is_map)
            .max_by_key(|(_, path, _, _)| path.len())
            .map(|(_, path, _, _)| path.as_str())
    }
}

fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Turns a serde-saphyr error into a diagnostic with file, line, key.
fn diagnostic_from_yaml(
    file: &str,
    index: &PositionIndex,
    error: &serde_saphyr::Error,
) -> ConfigDiagnostic {
    use serde_saphyr::Error as E;
    let error = error.without_snippet();
    let pos = error.location().and_then(|loc| {
        let line = usize::try_from(loc.line()).ok()?;
        let column = usize::try_from(loc.column()).ok()?;
        (line > 0).then_some((line, column))
    });
    let here = pos.and_then(|p| index.path_at(p)).unwrap_or("").to_owned();
    let mut pos = pos;
    let (key, message) = match error {
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            // Without an index (unreadable document) still name the key.
            if here.ends_with(field.as_str()) {
                here
            } else {
                join_path(&here, field)
            },
            format!(
                "unknown key '{field}' (check the spelling; allowed here: {})",
                expected.join(", ")
            ),
        ),
        E::SerdeMissingField { field, .. } => {
            let map = pos.and_then(|p| index.map_missing_a_field(p)).unwrap_or("");
            // Point at the mapping that lacks the key, not its last entry.
            if let Some(start) = index.values.get(map).filter(|_| !map.is_empty()) {
                pos = Some(*start);
            }
            (
                join_path(map, field),
                format!("required key '{field}' is missing"),
            )
        }
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            here,
            format!(
                "'{variant}' is not a valid value; use one of: {}",
                expected.join(", ")
            ),
        ),
        E::DuplicateMappingKey { .. } => (here, "key given twice; keep one".to_owned()),
        E::InvalidScalar { ty, .. } => (here, format!("expected {}", describe_type(ty))),
        E::Unexpected { expected, .. } => (here, format!("expected {}", describe_type(expected))),
        other => (here, strip_location(&other.to_string())),
    };
    ConfigDiagnostic {
        file: file.to_owned(),
        line: pos.map(|p| p.0),
        column: pos.map(|p| p.1),
        key,
        message,
    }
}

/// Plain words for the types serde-saphyr names in its errors.
fn describe_type(ty: &str) -> &str {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "usize" | "u128" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "isize" | "i128" => "a whole number",
        "f32" | "f64" => "a number",
        "bool" => "true or false",
        "sequence start" => "a list (one '- item' per line, or [a, b])",
        "mapping start" => "a mapping of keys to values (key: value)",
        other => other,
    }
}

/// serde-saphyr's `Display` ends with ` at line N, column M`; we print the
/// position in front instead.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(cut) if message[cut..].contains(", column ") => message[..cut].to_owned(),
        _ => message.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Semantic validation
// ---------------------------------------------------------------------------

/// Collects every error and warning, each located through the index.
struct Checker<'a> {
    file: &'a str,
    index: &'a PositionIndex,
    errors: Vec<ConfigDiagnostic>,
    warnings: Vec<ConfigDiagnostic>,
}

impl Checker<'_> {
    fn diagnostic(&self, key: &str, message: String) -> ConfigDiagnostic {
        let pos = self.index.locate(key);
        ConfigDiagnostic {
            file: self.file.to_owned(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            key: key.to_owned(),
            message,
        }
    }

    fn error(&mut self, key: &str, message: impl Into<String>) {
        let d = self.diagnostic(key, message.into());
        self.errors.push(d);
    }

    fn warn(&mut self, key: &str, message: impl Into<String>) {
        let d = self.diagnostic(key, message.into());
        self.warnings.push(d);
    }

    fn name(&mut self, key: &str, name: &str, what: &str) {
        if name.is_empty() {
            self.error(key, format!("{what} name is empty; give it a short name"));
        } else if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            self.error(
                key,
                format!(
                    "{what} name '{name}' may use only letters, digits, '-', '_' and '.' \
                     (it appears in logs and metric labels)"
                ),
            );
        }
    }

    fn upstreams(&mut self, upstreams: &[UpstreamConfig]) {
        if upstreams.is_empty() {
            self.error(
                "upstreams",
                "no upstream defined: add at least one entry under 'upstreams' \
                 (name and servers), or pass --upstream HOST:PORT",
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, upstream) in upstreams.iter().enumerate() {
            let at = format!("upstreams[{i}]");
            self.name(&format!("{at}.name"), &upstream.name, "upstream");
            let first = *seen.entry(&upstream.name).or_insert(i);
            if first != i {
                self.error(
                    &format!("{at}.name"),
                    format!(
                        "upstream name '{}' is already used by upstreams[{first}]; names must be unique",
                        upstream.name
                    ),
                );
            }
            if upstream.servers.is_empty() {
                self.error(
                    &format!("{at}.servers"),
                    "no servers: list at least one host:port, e.g. 'mail.example.com:25'",
                );
            }
            let mut servers = HashSet::new();
            for (j, server) in upstream.servers.iter().enumerate() {
                let key = format!("{at}.servers[{j}]");
                if let Err(problem) = check_server(server) {
                    self.error(&key, problem);
                } else if !servers.insert(server.as_str()) {
                    self.warn(&key, format!("server '{server}' is listed twice"));
                } else if upstream.tls.policy == TlsPolicy::None && !server_is_local(server) {
                    self.warn(
                        &key,
                        format!(
                            "mail to '{server}' crosses the network in plaintext (upstream TLS \
                             policy 'none', the default); unless that network is yours, set \
                             'tls: {{policy: verify}}' (or 'may') on this upstream (docs/tls.md)"
                        ),
                    );
                }
            }
            if let Some(helo) = &upstream.helo_name {
                self.hostname(&format!("{at}.helo_name"), helo);
            }
            self.upstream_tls(&at, &upstream.tls);
        }
    }

    fn upstream_tls(&mut self, at: &str, tls: &UpstreamTls) {
        if tls.implicit && tls.policy == TlsPolicy::None {
            self.error(
                &format!("{at}.tls.implicit"),
                "implicit TLS needs 'policy: encrypt' or 'policy: verify' \
                 (with policy 'none' nothing would be encrypted)",
            );
        }
        if tls.implicit && tls.policy == TlsPolicy::May {
            self.error(
                &format!("{at}.tls.implicit"),
                "implicit TLS cannot fall back to plaintext; use 'policy: encrypt' or 'policy: verify'",
            );
        }
        if let Some(ca) = &tls.ca {
            let key = format!("{at}.tls.ca");
            if !ca.is_file() {
                self.error(
                    &key,
                    format!(
                        "CA file {} does not exist; fix the path or remove 'ca' to use the system roots",
                        ca.display()
                    ),
                );
            } else if tls.policy != TlsPolicy::Verify {
                self.warn(
                    &key,
                    "'ca' is used only with 'policy: verify'; it is ignored here",
                );
            }
        }
        if let Some(name) = &tls.server_name {
            self.hostname(&format!("{at}.tls.server_name"), name);
        }
    }

    fn listeners(&mut self, listeners: &[ListenerConfig], upstreams: &[UpstreamConfig]) {
        if listeners.is_empty() {
            self.error(
                "listeners",
                "no listener defined: add at least one entry under 'listeners' \
                 (name, address, upstream), or pass --listen ADDRESS",
            );
        }
        let defined = upstreams
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut addresses: HashMap<SocketAddr, usize> = HashMap::new();
        for (i, listener) in listeners.iter().enumerate() {
            let at = format!("listeners[{i}]");
            self.name(&format!("{at}.name"), &listener.name, "listener");
            let first = *names.entry(&listener.name).or_insert(i);
            if first != i {
                self.error(
                    &format!("{at}.name"),
                    format!(
                        "listener name '{}' is already used by listeners[{first}]; names must be unique",
                        listener.name
                    ),
                );
            }
            let first = *addresses.entry(listener.address).or_insert(i);
            if first != i {
                self.error(
                    &format!("{at}.address"),
                    format!(
                        "address {} is already used by listeners[{first}]; each listener needs its own",
                        listener.address
                    ),
                );
            }
            if !upstreams.iter().any(|u| u.name == listener.upstream) {
                let defined = if defined.is_empty() {
                    "none".to_owned()
                } else {
                    defined.clone()
                };
                self.error(
                    &format!("{at}.upstream"),
                    format!(
                        "no upstream named '{}' (defined: {defined})",
                        listener.upstream
                    ),
                );
            }
            if listener.proxy_protocol.is_some() && listener.trusted_proxies.is_empty() {
                self.error(
                    &format!("{at}.proxy_protocol"),
                    "proxy_protocol without trusted_proxies would let any client claim any \
                     address; list the load balancers' addresses under 'trusted_proxies'",
                );
            }
            if listener.proxy_protocol.is_none() && !listener.trusted_proxies.is_empty() {
                self.warn(
                    &format!("{at}.trusted_proxies"),
                    "trusted_proxies has no effect without proxy_protocol",
                );
            }
            if let Some(tls) = &listener.tls {
                for (name, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                    if !path.is_file() {
                        self.error(
                            &format!("{at}.tls.{name}"),
                            format!(
                                "{name} file {} does not exist; fix the path or remove 'tls'",
                                path.display()
                            ),
                        );
                    }
                }
                if tls.implicit && tls.require_tls {
                    self.warn(
                        &format!("{at}.tls.require_tls"),
                        "require_tls has no effect with implicit TLS (the whole session is TLS)",
                    );
                }
            }
        }
    }

    fn unused_upstreams(&mut self, listeners: &[ListenerConfig], upstreams: &[UpstreamConfig]) {
        for (i, upstream) in upstreams.iter().enumerate() {
            if !listeners.iter().any(|l| l.upstream == upstream.name) {
                self.warn(
                    &format!("upstreams[{i}].name"),
                    format!("no listener uses upstream '{}'", upstream.name),
                );
            }
        }
    }

    fn rules(&mut self, rules: &[PathBuf]) {
        for (i, path) in rules.iter().enumerate() {
            if !path.exists() {
                self.error(
                    &format!("rules[{i}]"),
                    format!(
                        "{} does not exist; fix the path (relative paths start at the config \
                         file's folder) or remove it to use the built-in rules",
                        path.display()
                    ),
                );
            }
        }
    }

    fn limits(&mut self, limits: &Limits) {
        let positive = [
            ("max_sessions", limits.max_sessions),
            ("max_sessions_per_client", limits.max_sessions_per_client),
            ("max_command_line", limits.max_command_line),
            ("max_reply_line", limits.max_reply_line),
            ("max_reply", limits.max_reply),
            ("max_pipeline", limits.max_pipeline),
            ("max_sasl_line", limits.max_sasl_line),
            ("max_tls_handshakes", limits.max_tls_handshakes),
        ];
        for (name, value) in positive {
            if value == 0 {
                self.error(
                    &format!("limits.{name}"),
                    "must be greater than 0 (0 would refuse every session); remove it for the default",
                );
            }
        }
        if limits.max_errors == 0 {
            self.error(
                "limits.max_errors",
                "must be greater than 0; remove it for the default (20)",
            );
        }
        if limits.max_message_size == Some(0) {
            self.error(
                "limits.max_message_size",
                "must be greater than 0; remove it to leave the size limit to the upstream",
            );
        }
        if limits.max_session_lifetime.is_zero() {
            self.error(
                "limits.max_session_lifetime",
                "must be greater than 0; remove it for the default (1h)",
            );
        }
        for (name, value, minimum, source) in [
            (
                "max_command_line",
                limits.max_command_line,
                512,
                "RFC 5321 4.5.3.1.4",
            ),
            (
                "max_reply_line",
                limits.max_reply_line,
                512,
                "RFC 5321 4.5.3.1.5",
            ),
            ("max_sasl_line", limits.max_sasl_line, 12288, "RFC 4954 4"),
        ] {
            if value > 0 && value < minimum {
                self.warn(
                    &format!("limits.{name}"),
                    format!("{value} is below the {minimum} octets {source} requires; conforming peers may be cut off"),
                );
            }
        }
        if limits.max_reply_line > limits.max_reply {
            let key = if self.index.contains("limits.max_reply_line") {
                "limits.max_reply_line"
            } else {
                "limits.max_reply"
            };
            self.error(
                key,
                format!(
                    "max_reply_line ({}) is larger than max_reply ({}); a whole reply holds at \
                     least one line, so raise max_reply or lower max_reply_line",
                    limits.max_reply_line, limits.max_reply
                ),
            );
        }
        if limits.max_sessions_per_client > limits.max_sessions {
            self.warn(
                "limits.max_sessions_per_client",
                format!(
                    "{} is more than max_sessions ({}); it can never be reached",
                    limits.max_sessions_per_client, limits.max_sessions
                ),
            );
        }
    }

    fn timeouts(&mut self, timeouts: &Timeouts) {
        let all = [
            ("upstream_connect", timeouts.upstream_connect),
            ("upstream_reply", timeouts.upstream_reply),
            ("data_end_reply", timeouts.data_end_reply),
            ("client_idle", timeouts.client_idle),
            ("command", timeouts.command),
            ("tls_handshake", timeouts.tls_handshake),
            ("drain", timeouts.drain),
        ];
        for (name, value) in all {
            if value.is_zero() {
                self.error(
                    &format!("timeouts.{name}"),
                    "must be greater than 0 (a zero timeout fails every wait); remove it for the default",
                );
            }
        }
        if timeouts.upstream_reply >= Duration::from_secs(300) {
            self.warn(
                "timeouts.upstream_reply",
                "clients give up after 5 minutes (RFC 5321 4.5.3.2); at 300s or more they may \
                 time out before replyfix can answer with 451",
            );
        }
        if timeouts.data_end_reply >= Duration::from_secs(600) {
            self.warn(
                "timeouts.data_end_reply",
                "clients give up 10 minutes after the end of data (RFC 5321 4.5.3.2.6); at 600s \
                 or more they may retry a message the upstream still accepts (a duplicate)",
            );
        }
    }

    fn logging(&mut self, logging: &Logging) {
        if let Err(problem) = check_log_level(&logging.level) {
            self.error("logging.level", problem);
        }
        match (&logging.log_addresses, logging.hash_key.as_deref()) {
            (LogAddresses::Hash, None | Some("")) => self.error(
                "logging.log_addresses",
                "'hash' needs a secret 'logging.hash_key' (the same on every instance so hashes \
                 can be compared); set one or use 'domain'",
            ),
            (LogAddresses::Hash, Some(key)) if key.len() < 16 => self.warn(
                "logging.hash_key",
                "hash_key is shorter than 16 characters; a short key makes hashed addresses easy to guess",
            ),
            (LogAddresses::Full | LogAddresses::Domain, Some(_)) => self.warn(
                "logging.hash_key",
                "hash_key is used only with 'log_addresses: hash'; it is ignored here",
            ),
            _ => {}
        }
    }

    fn admin(&mut self, admin: Option<&AdminConfig>, listeners: &[ListenerConfig]) {
        let Some(admin) = admin else { return };
        if let Some(i) = listeners.iter().position(|l| l.address == admin.listen) {
            self.error(
                "admin.listen",
                format!(
                    "{} is also listeners[{i}].address; give the admin endpoint its own port",
                    admin.listen
                ),
            );
        }
        if !admin.listen.ip().is_loopback() {
            self.warn(
                "admin.listen",
                "the admin endpoint is not on a loopback address; make sure only operators can reach it",
            );
        }
    }

    fn hostname(&mut self, key: &str, name: &str) {
        if let Some(problem) = domain_problem(name) {
            self.error(key, problem);
        }
    }

    fn policies(&mut self, mode: Mode, bare: BareLineEndings) {
        if mode == Mode::Shadow {
            self.warn(
                "mode",
                "shadow mode: rules are judged and logged, but no reply is rewritten",
            );
        }
        if bare == BareLineEndings::Sanitize {
            self.warn(
                "bare_line_endings",
                "sanitize changes message content (a bare CR/LF/NUL becomes a space), which \
                 breaks DKIM body signatures; 'reject' is the safe default",
            );
        }
    }
}

/// Checks an upstream server string: `host:port` or `[ipv6]:port`.
fn check_server(server: &str) -> Result<(), String> {
    let example = "write host:port, e.g. mail.example.com:25, 192.0.2.1:25 or [2001:db8::1]:25";
    let (host, port) = if let Some(rest) = server.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once("]:") else {
            return Err(format!("'{server}' is not a valid server: {example}"));
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(format!("'{ip}' in '{server}' is not an IPv6 address"));
        }
        (None, port)
    } else {
        let Some((host, port)) = server.rsplit_once(':') else {
            return Err(format!("'{server}' has no port: {example}"));
        };
        if host.contains(':') {
            return Err(format!(
                "'{server}': put an IPv6 address in brackets, e.g. [2001:db8::1]:25"
            ));
        }
        (Some(host), port)
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(format!(
                "'{port}' in '{server}' is not a port (1-65535): {example}"
            ));
        }
    }
    if let Some(host) = host
        && host.parse::<Ipv4Addr>().is_err()
        && let Some(problem) = domain_problem(host)
    {
        return Err(format!("'{server}': {problem}"));
    }
    Ok(())
}

/// True when a (valid) `host:port` names this machine or a private network:
/// `localhost`, a loopback, private (RFC 1918, RFC 4193) or link-local
/// address. Host names other than `localhost` are not known to be local.
fn server_is_local(server: &str) -> bool {
    let host = match server.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(ip, _)| ip),
        None => server.rsplit_once(':').map_or(server, |(host, _)| host),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => {
            let first = ip.segments()[0];
            ip.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
        Err(_) => false,
    }
}

/// Why `name` is not usable as an SMTP domain (RFC 5321 4.1.2), if it isn't.
/// Address literals (`[192.0.2.1]`, `[IPv6:...]`) are accepted.
fn domain_problem(name: &str) -> Option<String> {
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        let ok = match inner.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
            None => inner.parse::<Ipv4Addr>().is_ok(),
        };
        return (!ok).then(|| format!("'{name}' is not a valid address literal"));
    }
    if name.is_empty() {
        return Some("empty host name".to_owned());
    }
    if name.len() > 253 {
        return Some(format!("host name '{name}' is longer than 253 characters"));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !name.trim_end_matches('.').split('.').all(valid_label) {
        return Some(format!(
            "'{}' is not a valid host name (letters, digits and '-' in dot-separated labels)",
            name.escape_debug()
        ));
    }
    None
}

/// Accepts what `tracing_subscriber::EnvFilter` accepts, but refuses a bare
/// word that is not a level: EnvFilter would read `inf` as "target `inf` at
/// trace" and silence everything else.
fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let help = "use a level (error, warn, info, debug, trace, off) or directives such as \
                'info,replyfix::rules=debug'";
    if level.trim().is_empty() {
        return Err(format!("empty log level; {help}"));
    }
    for directive in level.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        if !directive.contains('=') && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!("'{directive}' is not a log level; {help}"));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(|_| ())
        .map_err(|e| format!("invalid log filter '{level}': {e}; {help}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "\
listeners:
  - name: main
    address: 127.0.0.1:2525
    upstream: relay
upstreams:
  - name: relay
    servers: [\"127.0.0.1:25\"]
";

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml("test.yaml", text)
    }

    fn errors(text: &str) -> Vec<ConfigDiagnostic> {
        match load(text) {
            Ok(config) => panic!("expected errors, got {config:?}"),
            Err(e) => e.0,
        }
    }

    fn only_error(text: &str) -> ConfigDiagnostic {
        let mut errors = errors(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.remove(0)
    }

    fn with(extra: &str) -> String {
        format!("{BASE}{extra}")
    }

    fn at(d: &ConfigDiagnostic) -> (Option<usize>, Option<usize>, &str) {
        (d.line, d.column, d.key.as_str())
    }

    // --- defaults -------------------------------------------------------

    #[test]
    fn minimal_config_gets_every_default() {
        let config = load(BASE).expect("loads");
        assert_eq!(config.mode, Mode::Enforce);
        assert_eq!(config.bare_line_endings, BareLineEndings::Reject);
        assert!(config.rules.is_empty());
        assert!(config.admin.is_none());
        assert!(!config.hostname.is_empty());
        assert_eq!(config.source, Some(PathBuf::from("test.yaml")));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);

        let l = &config.limits;
        assert_eq!(l.max_sessions, 1000);
        assert_eq!(l.max_sessions_per_client, 50);
        assert_eq!(l.max_command_line, 2048);
        assert_eq!(l.max_reply_line, 2048);
        assert_eq!(l.max_reply, 65536);
        assert_eq!(l.max_pipeline, 100);
        assert_eq!(l.max_sasl_line, 12288);
        assert_eq!(l.max_errors, 20);
        assert_eq!(l.max_message_size, None);
        assert_eq!(l.max_tls_handshakes, 100);
        assert_eq!(l.min_data_rate, 1024);
        assert_eq!(l.max_session_lifetime, Duration::from_secs(3600));

        let t = &config.timeouts;
        assert_eq!(t.upstream_connect, Duration::from_secs(30));
        assert_eq!(t.upstream_reply, Duration::from_secs(240));
        assert_eq!(t.data_end_reply, Duration::from_secs(540));
        assert_eq!(t.client_idle, Duration::from_secs(300));
        assert_eq!(t.command, Duration::from_secs(300));
        assert_eq!(t.tls_handshake, Duration::from_secs(30));
        assert_eq!(t.drain, Duration::from_secs(30));

        assert_eq!(config.logging.format, LogFormat::Auto);
        assert_eq!(config.logging.level, "info");
        assert_eq!(config.logging.log_addresses, LogAddresses::Domain);
        assert_eq!(config.logging.hash_key, None);

        let listener = &config.listeners[0];
        assert!(listener.tls.is_none());
        assert!(listener.proxy_protocol.is_none());
        assert!(listener.trusted_proxies.is_empty());
        let upstream = config.upstream_for(listener).expect("upstream");
        assert_eq!(upstream.tls.policy, TlsPolicy::None);
        assert!(!upstream.tls.implicit);
        assert_eq!(upstream.send_client_address, ClientAddressForwarding::None);
        assert_eq!(upstream.helo_name, None);
    }

    #[test]
    fn auto_log_format_is_text_on_a_terminal_and_json_otherwise() {
        assert_eq!(LogFormat::Auto.resolve(true), LogFormat::Text);
        assert_eq!(LogFormat::Auto.resolve(false), LogFormat::Json);
        assert_eq!(LogFormat::Json.resolve(true), LogFormat::Json);
        assert_eq!(LogFormat::Text.resolve(false), LogFormat::Text);
    }

    #[test]
    fn hash_key_is_not_shown_by_debug() {
        let logging = Logging {
            hash_key: Some("very-secret-value".to_owned()),
            ..Logging::default()
        };
        assert!(!format!("{logging:?}").contains("very-secret-value"));
    }

    // --- enum spellings -------------------------------------------------

    #[test]
    fn every_enum_spelling_is_accepted() {
        for (text, mode) in [("enforce", Mode::Enforce), ("shadow", Mode::Shadow)] {
            assert_eq!(load(&with(&format!("mode: {text}\n"))).unwrap().mode, mode);
        }
        for (text, want) in [
            ("reject", BareLineEndings::Reject),
            ("sanitize", BareLineEndings::Sanitize),
        ] {
            let c = load(&with(&format!("bare_line_endings: {text}\n"))).unwrap();
            assert_eq!(c.bare_line_endings, want);
        }
        for (text, want) in [
            ("auto", LogFormat::Auto),
            ("text", LogFormat::Text),
            ("json", LogFormat::Json),
        ] {
            let c = load(&with(&format!("logging:\n  format: {text}\n"))).unwrap();
            assert_eq!(c.logging.format, want);
        }
        for (text, want) in [
            ("full", LogAddresses::Full),
            ("domain", LogAddresses::Domain),
            ("hash", LogAddresses::Hash),
        ] {
            let c = load(&with(&format!(
                "logging:\n  log_addresses: {text}\n  hash_key: 0123456789abcdef0123\n"
            )))
            .unwrap();
            assert_eq!(c.logging.log_addresses, want);
        }
        for (text, want) in [
            ("none", TlsPolicy::None),
            ("may", TlsPolicy::May),
            ("encrypt", TlsPolicy::Encrypt),
            ("verify", TlsPolicy::Verify),
        ] {
            let yaml = BASE.replace(
                "servers: [\"127.0.0.1:25\"]",
                &format!("servers: [\"127.0.0.1:25\"]\n    tls:\n      policy: {text}"),
            );
            assert_eq!(load(&yaml).unwrap().upstreams[0].tls.policy, want);
        }
        for (text, want) in [
            ("none", ClientAddressForwarding::None),
            ("proxy-v1", ClientAddressForwarding::ProxyV1),
            ("proxy-v2", ClientAddressForwarding::ProxyV2),
            ("xclient", ClientAddressForwarding::Xclient),
        ] {
            let yaml = BASE.replace(
                "servers: [\"127.0.0.1:25\"]",
                &format!("servers: [\"127.0.0.1:25\"]\n    send_client_address: {text}"),
            );
            assert_eq!(load(&yaml).unwrap().upstreams[0].send_client_address, want);
        }
        for (text, want) in [
            ("v1", ProxyProtocol::V1),
            ("v2", ProxyProtocol::V2),
            ("any", ProxyProtocol::Any),
        ] {
            let yaml = BASE.replace(
                "upstream: relay",
                &format!(
                    "upstream: relay\n    proxy_protocol: {text}\n    trusted_proxies: [10.0.0.0/8]"
                ),
            );
            assert_eq!(load(&yaml).unwrap().listeners[0].proxy_protocol, Some(want));
        }
    }

    #[test]
    fn misspelled_enum_value_names_line_key_and_choices() {
        let d = only_error(&with("mode: enforcing\n"));
        assert_eq!(at(&d), (Some(8), Some(7), "mode"));
        assert!(d.message.contains("enforce, shadow"), "{}", d.message);
    }

    // --- structural errors ------------------------------------------------

    #[test]
    fn unknown_top_level_key_names_file_line_and_key() {
        let d = only_error(&with("mdoe: shadow\n"));
        assert_eq!(d.file, "test.yaml");
        assert_eq!(at(&d), (Some(8), Some(1), "mdoe"));
        assert!(d.message.contains("unknown key 'mdoe'"), "{}", d.message);
        assert_eq!(
            d.to_string().lines().next().unwrap_or(""),
            d.to_string(),
            "one line"
        );
        assert!(
            d.to_string()
                .starts_with("test.yaml:8:1: mdoe: unknown key")
        );
    }

    #[test]
    fn unknown_nested_key_names_its_full_path() {
        let yaml = BASE.replace("upstream: relay", "upstream: relay\n    upsteam: relay");
        let d = only_error(&yaml);
        assert_eq!(at(&d), (Some(5), Some(5), "listeners[0].upsteam"));

        let d = only_error(&with("timeouts:\n  client_idle: 5m\n  drian: 10s\n"));
        assert_eq!(at(&d), (Some(10), Some(3), "timeouts.drian"));

        let d = only_error(&with("admin:\n  listen: 127.0.0.1:9925\n  port: 1\n"));
        assert_eq!(at(&d), (Some(10), Some(3), "admin.port"));
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let d = only_error(&with("limits:\n  max_sessions: lots\n"));
        assert_eq!(at(&d), (Some(9), Some(17), "limits.max_sessions"));
        assert!(d.message.contains("whole number"), "{}", d.message);

        let d = only_error(&with("limits:\n  max_sessions: -1\n"));
        assert_eq!(d.key, "limits.max_sessions");

        let d = only_error(&with("limits: 5\n"));
        assert_eq!(at(&d), (Some(8), Some(9), "limits"));

        let d = only_error(&with("rules: rules.yaml\n"));
        assert_eq!(d.key, "rules");
        assert_eq!(d.line, Some(8));
    }

    #[test]
    fn yes_is_not_a_boolean() {
        let yaml = BASE.replace(
            "servers: [\"127.0.0.1:25\"]",
            "servers: [\"127.0.0.1:25\"]\n    tls:\n      implicit: yes",
        );
        let d = only_error(&yaml);
        assert_eq!(d.key, "upstreams[0].tls.implicit");
        assert_eq!(d.line, Some(9));
    }

    #[test]
    fn missing_required_key_names_the_key() {
        let d = only_error(
            "listeners:\n  - name: main\n    upstream: relay\nupstreams:\n  - name: relay\n    servers: [\"a:25\"]\n",
        );
        assert_eq!(at(&d), (Some(2), Some(5), "listeners[0].address"));
        assert!(d.message.contains("'address' is missing"), "{}", d.message);
    }

    #[test]
    fn missing_key_is_found_past_nested_mappings() {
        let d = only_error(&BASE.replace(
            "upstream: relay",
            "upstream: relay\n    tls:\n      cert: c.pem",
        ));
        assert_eq!(at(&d), (Some(6), Some(7), "listeners[0].tls.key"));

        let d = only_error(&BASE.replace(
            "    upstream: relay",
            "    tls:\n      cert: c.pem\n      key: k.pem",
        ));
        assert_eq!(at(&d), (Some(2), Some(5), "listeners[0].upstream"));

        let d = only_error(&with("admin: {}\n"));
        assert_eq!(d.key, "admin.listen");
        assert_eq!(d.line, Some(8));
    }

    #[test]
    fn bad_listener_address_names_line_and_key() {
        let d = only_error(&BASE.replace("127.0.0.1:2525", "localhost:2525"));
        assert_eq!(at(&d), (Some(3), Some(14), "listeners[0].address"));
        assert!(d.message.contains("not an IP address"), "{}", d.message);
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let d = only_error(&with("mode: enforce\nmode: shadow\n"));
        assert_eq!(at(&d), (Some(9), Some(1), "mode"));
    }

    #[test]
    fn syntax_error_has_a_line() {
        let d = only_error(&with("limits: [\n"));
        assert!(d.line.is_some(), "{d:?}");
    }

    #[test]
    fn top_level_list_is_an_error() {
        let d = only_error("- a\n- b\n");
        assert_eq!(d.line, Some(1));
    }

    // --- semantic errors ----------------------------------------------------

    #[test]
    fn empty_document_needs_listeners_and_upstreams() {
        let errors = errors("");
        let keys: Vec<_> = errors.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["upstreams", "listeners"]);
        assert!(errors.iter().all(|d| d.line.is_none()));
        assert!(
            errors[0]
                .to_string()
                .starts_with("test.yaml: upstreams: no upstream")
        );
    }

    #[test]
    fn listener_naming_unknown_upstream_lists_the_defined_ones() {
        let yaml = "\
listeners:
  - name: main
    address: 127.0.0.1:2525
    upstream: relay
upstreams:
  - name: main
    servers: [\"a.example:25\"]
  - name: backup
    servers: [\"b.example:25\"]
";
        let d = only_error(yaml);
        assert_eq!(at(&d), (Some(4), Some(15), "listeners[0].upstream"));
        assert_eq!(
            d.to_string(),
            "test.yaml:4:15: listeners[0].upstream: no upstream named 'relay' (defined: main, backup)"
        );
    }

    #[test]
    fn duplicate_names_and_addresses_are_errors() {
        let yaml = "\
listeners:
  - name: a
    address: 127.0.0.1:2525
    upstream: u
  - name: a
    address: 127.0.0.1:2525
    upstream: u
upstreams:
  - name: u
    servers: [\"h:25\"]
  - name: u
    servers: [\"h:26\"]
";
        let errors = errors(yaml);
        let found: Vec<_> = errors.iter().map(at).collect();
        assert_eq!(
            found,
            [
                (Some(5), Some(11), "listeners[1].name"),
                (Some(6), Some(14), "listeners[1].address"),
                (Some(11), Some(11), "upstreams[1].name"),
            ]
        );
    }

    #[test]
    fn server_strings_must_be_host_and_port() {
        let yaml = BASE.replace(
            "servers: [\"127.0.0.1:25\"]",
            "servers:\n      - mail.example.com\n      - \"2001:db8::1:25\"\n      - h:0\n      - h:99999\n      - \"[::1]:25\"\n      - \"[nope]:25\"\n      - bad_name:25\n      - ok.example:587",
        );
        let errors = errors(&yaml);
        let keys: Vec<_> = errors.iter().map(|d| (d.line, d.key.as_str())).collect();
        assert_eq!(
            keys,
            [
                (Some(8), "upstreams[0].servers[0]"),
                (Some(9), "upstreams[0].servers[1]"),
                (Some(10), "upstreams[0].servers[2]"),
                (Some(11), "upstreams[0].servers[3]"),
                (Some(13), "upstreams[0].servers[5]"),
                (Some(14), "upstreams[0].servers[6]"),
            ]
        );
        assert!(errors[0].message.contains("no port"));
        assert!(errors[1].message.contains("brackets"));
    }

    #[test]
    fn upstream_without_servers_is_an_error() {
        let d = only_error(&BASE.replace("[\"127.0.0.1:25\"]", "[]"));
        assert_eq!(at(&d), (Some(7), Some(14), "upstreams[0].servers"));
    }

    #[test]
    fn proxy_protocol_without_trusted_proxies_is_an_error() {
        let d =
            only_error(&BASE.replace("upstream: relay", "upstream: relay\n    proxy_protocol: v1"));
        assert_eq!(at(&d), (Some(5), Some(21), "listeners[0].proxy_protocol"));
        assert!(d.message.contains("any client"), "{}", d.message);
    }

    #[test]
    fn trusted_proxies_accept_networks_and_single_addresses() {
        let c = load(&BASE.replace(
            "upstream: relay",
            "upstream: relay\n    proxy_protocol: any\n    trusted_proxies: [10.0.0.0/8, 192.0.2.7, \"2001:db8::/32\", \"::1\"]",
        ))
        .unwrap();
        let nets: Vec<String> = c.listeners[0]
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            nets,
            ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "::1/128"]
        );

        let d = only_error(&BASE.replace(
            "upstream: relay",
            "upstream: relay\n    proxy_protocol: any\n    trusted_proxies: [10.0.0.0/8, lb.example]",
        ));
        assert_eq!(
            at(&d),
            (Some(6), Some(35), "listeners[0].trusted_proxies[1]")
        );
    }

    #[test]
    fn zero_limits_and_timeouts_are_errors() {
        let errors = errors(&with(
            "limits:\n  max_sessions: 0\n  max_pipeline: 0\n  max_errors: 0\n  max_message_size: 0\n  max_session_lifetime: 0s\ntimeouts:\n  upstream_reply: 0\n  drain: 0s\n",
        ));
        let keys: Vec<_> = errors.iter().map(|d| (d.line, d.key.as_str())).collect();
        assert_eq!(
            keys,
            [
                (Some(9), "limits.max_sessions"),
                (Some(10), "limits.max_pipeline"),
                (Some(11), "limits.max_errors"),
                (Some(12), "limits.max_message_size"),
                (Some(13), "limits.max_session_lifetime"),
                (Some(15), "timeouts.upstream_reply"),
                (Some(16), "timeouts.drain"),
            ]
        );
    }

    #[test]
    fn min_data_rate_zero_disables_the_check() {
        let c = load(&with("limits:\n  min_data_rate: 0\n")).unwrap();
        assert_eq!(c.limits.min_data_rate, 0);
    }

    #[test]
    fn reply_line_longer_than_reply_is_an_error() {
        let d = only_error(&with("limits:\n  max_reply: 1000\n"));
        assert_eq!(at(&d), (Some(9), Some(14), "limits.max_reply"));
        let d = only_error(&with(
            "limits:\n  max_reply: 4096\n  max_reply_line: 8192\n",
        ));
        assert_eq!(d.key, "limits.max_reply_line");
        assert_eq!(d.line, Some(10));
    }

    #[test]
    fn upstream_ca_must_exist_but_verify_without_ca_is_fine() {
        let verify = BASE.replace(
            "servers: [\"127.0.0.1:25\"]",
            "servers: [\"127.0.0.1:25\"]\n    tls:\n      policy: verify",
        );
        assert!(load(&verify).is_ok());
        let d = only_error(&format!("{verify}      ca: no-such-ca.pem\n"));
        assert_eq!(at(&d), (Some(10), Some(11), "upstreams[0].tls.ca"));
        assert!(d.message.contains("no-such-ca.pem"));
    }

    #[test]
    fn implicit_upstream_tls_needs_a_policy_that_encrypts() {
        let yaml = BASE.replace(
            "servers: [\"127.0.0.1:25\"]",
            "servers: [\"127.0.0.1:465\"]\n    tls:\n      implicit: true",
        );
        assert_eq!(only_error(&yaml).key, "upstreams[0].tls.implicit");
    }

    #[test]
    fn listener_tls_files_must_exist_and_each_is_named() {
        let yaml = BASE.replace(
            "upstream: relay",
            "upstream: relay\n    tls:\n      cert: missing-cert.pem\n      key: missing-key.pem",
        );
        let errors = errors(&yaml);
        let found: Vec<_> = errors.iter().map(at).collect();
        assert_eq!(
            found,
            [
                (Some(6), Some(13), "listeners[0].tls.cert"),
                (Some(7), Some(12), "listeners[0].tls.key"),
            ]
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let dir = std::env::temp_dir().join(format!("replyfix-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        std::fs::write(dir.join("certs/c.pem"), "x").unwrap();
        std::fs::write(dir.join("certs/k.pem"), "x").unwrap();
        std::fs::write(dir.join("local.yaml"), "x").unwrap();
        let yaml = BASE.replace(
            "upstream: relay",
            "upstream: relay\n    tls:\n      cert: certs/c.pem\n      key: certs/k.pem",
        ) + "rules: [local.yaml]\n";
        let file = dir.join("replyfix.yaml");
        std::fs::write(&file, yaml).unwrap();
        let c = Config::load(&file).unwrap();
        let tls = c.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.cert, dir.join("certs/c.pem"));
        assert_eq!(tls.key, dir.join("certs/k.pem"));
        assert_eq!(c.rules, [dir.join("local.yaml")]);
        assert_eq!(c.source, Some(file));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_rules_path_is_an_error() {
        let d = only_error(&with("rules:\n  - no-such-rules.yaml\n"));
        assert_eq!(at(&d), (Some(9), Some(5), "rules[0]"));
    }

    #[test]
    fn hash_addresses_without_hash_key_is_an_error() {
        let d = only_error(&with("logging:\n  log_addresses: hash\n"));
        assert_eq!(at(&d), (Some(9), Some(18), "logging.log_addresses"));
        assert!(d.message.contains("hash_key"));
    }

    #[test]
    fn log_level_must_be_a_level_or_directives() {
        for good in [
            "info",
            "DEBUG",
            "off",
            "warn,replyfix::rules=debug",
            "replyfix=trace",
        ] {
            let c = load(&with(&format!("logging:\n  level: \"{good}\"\n")));
            assert!(c.is_ok(), "{good}: {c:?}");
        }
        for bad in ["inf", "", "info,replyfix=loud"] {
            let d = only_error(&with(&format!("logging:\n  level: \"{bad}\"\n")));
            assert_eq!(d.key, "logging.level", "{bad}");
            assert_eq!(d.line, Some(9), "{bad}");
        }
    }

    #[test]
    fn hostname_must_be_a_domain() {
        let d = only_error(&with("hostname: \"mx.example.com\\r\\n250 OK\"\n"));
        assert_eq!(at(&d), (Some(8), Some(11), "hostname"));
        assert!(load(&with("hostname: mx.example.com\n")).is_ok());
        assert!(load(&with("hostname: \"[192.0.2.1]\"\n")).is_ok());
    }

    #[test]
    fn admin_must_not_share_a_listener_address() {
        let d = only_error(&with("admin:\n  listen: 127.0.0.1:2525\n"));
        assert_eq!(at(&d), (Some(9), Some(11), "admin.listen"));
    }

    #[test]
    fn several_errors_are_reported_together_in_file_order() {
        let yaml = "\
listeners:
  - name: main
    address: 127.0.0.1:2525
    upstream: nowhere
    proxy_protocol: v2
upstreams:
  - name: relay
    servers: [\"relay.example\"]
limits:
  max_sessions: 0
timeouts:
  command: 0s
";
        let err = load(yaml).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "listeners[0].upstream",
                "listeners[0].proxy_protocol",
                "upstreams[0].servers[0]",
                "limits.max_sessions",
                "timeouts.command",
            ]
        );
        let text = err.to_string();
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.lines().all(|l| l.starts_with("test.yaml:")), "{text}");
    }

    // --- warnings -----------------------------------------------------------

    #[test]
    fn sanitize_and_shadow_load_with_warnings() {
        let c = load(&with("bare_line_endings: sanitize\nmode: shadow\n")).unwrap();
        let keys: Vec<_> = c
            .warnings
            .iter()
            .map(|d| (d.line, d.key.as_str()))
            .collect();
        assert_eq!(keys, [(Some(9), "mode"), (Some(8), "bare_line_endings")]);
    }

    #[test]
    fn unused_upstream_is_a_warning() {
        let c = load(&with("  - name: spare\n    servers: [\"127.0.0.2:25\"]\n")).unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(c.warnings[0].key, "upstreams[1].name");
    }

    // --- durations ------------------------------------------------------------

    #[test]
    fn durations_take_units_and_plain_seconds() {
        let ok = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("2d", 172_800_000),
            ("45", 45_000),
            (" 10s ", 10_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in ["", "s", "10x", "1.5s", "-1s", "10 s", "5 minutes", "m5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("99999999999999999999999s").is_err());
        assert!(parse_duration("999999999999999999d").is_err());
    }

    #[test]
    fn durations_in_yaml_accept_strings_and_integers() {
        let c = load(&with("timeouts:\n  client_idle: 5m\n  drain: 45\n")).unwrap();
        assert_eq!(c.timeouts.client_idle, Duration::from_secs(300));
        assert_eq!(c.timeouts.drain, Duration::from_secs(45));
    }

    #[test]
    fn bad_duration_names_line_key_and_units() {
        let d = only_error(&with("timeouts:\n  client_idle: 5 minutes\n"));
        assert_eq!(at(&d), (Some(9), Some(16), "timeouts.client_idle"));
        assert!(d.message.contains("units"), "{}", d.message);
        let d = only_error(&with("timeouts:\n  drain: -5\n"));
        assert_eq!(d.key, "timeouts.drain");
    }

    // --- quick() and IPv6 -----------------------------------------------------

    #[test]
    fn quick_builds_one_default_upstream_and_named_listeners() {
        let one = Config::quick(
            vec!["127.0.0.1:2525".parse().unwrap()],
            vec!["mail.example.com:25".to_owned(), "[::1]:25".to_owned()],
        )
        .unwrap();
        assert_eq!(one.listeners.len(), 1);
        assert_eq!(one.listeners[0].name, "default");
        assert_eq!(one.listeners[0].upstream, "default");
        assert_eq!(one.upstreams[0].name, "default");
        assert_eq!(one.upstreams[0].servers.len(), 2);
        assert_eq!(one.limits, Limits::default());
        assert_eq!(one.source, None);

        let two = Config::quick(
            vec![
                "127.0.0.1:2525".parse().unwrap(),
                "[::1]:2525".parse().unwrap(),
            ],
            vec!["mail.example.com:25".to_owned()],
        )
        .unwrap();
        let names: Vec<_> = two.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["listener-1", "listener-2"]);
    }

    #[test]
    fn quick_start_and_a_file_without_tls_share_one_upstream_policy() {
        let quick = Config::quick(
            vec!["127.0.0.1:2525".parse().unwrap()],
            vec!["127.0.0.1:25".to_owned()],
        )
        .unwrap();
        let file = Config::from_yaml(
            "t.yaml",
            "listeners:\n  - {name: l, address: \"127.0.0.1:2525\", upstream: u}\n\
             upstreams:\n  - {name: u, servers: [\"127.0.0.1:25\"]}\n",
        )
        .unwrap();
        assert_eq!(quick.upstreams[0].tls.policy, TlsPolicy::None);
        assert_eq!(file.upstreams[0].tls.policy, quick.upstreams[0].tls.policy);
    }

    #[test]
    fn plaintext_upstream_beyond_local_networks_is_a_warning() {
        for (server, warned) in [
            ("127.0.0.1:25", false),
            ("localhost:25", false),
            ("10.1.2.3:25", false),
            ("192.168.0.9:25", false),
            ("[::1]:25", false),
            ("[fd00::5]:25", false),
            ("[fe80::1]:25", false),
            ("mx.example.net:25", true),
            ("192.0.2.1:25", true),
            ("[2001:db8::1]:25", true),
        ] {
            let quick = Config::quick(
                vec!["127.0.0.1:2525".parse().unwrap()],
                vec![server.to_owned()],
            )
            .unwrap();
            let text: Vec<String> = quick.warnings.iter().map(|w| w.to_string()).collect();
            assert_eq!(
                text.iter().any(|w| w.contains("in plaintext")),
                warned,
                "{server}: {text:?}"
            );
        }
    }

    #[test]
    fn quick_reports_bad_servers_and_missing_parts() {
        let err = Config::quick(vec![], vec!["no-port".to_owned()]).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["upstreams[0].servers[0]", "listeners"]);
        assert!(err.0.iter().all(|d| d.file == "command line"));
        assert!(err.to_string().contains("--listen"));
    }

    #[test]
    fn ipv6_listeners_and_servers_load() {
        let yaml = "\
listeners:
  - name: v6
    address: \"[::1]:2525\"
    upstream: relay
  - name: v6-any
    address: \"[::]:2526\"
    upstream: relay
upstreams:
  - name: relay
    servers: [\"[2001:db8::25]:25\", \"[::1]:2500\"]
";
        let c = load(yaml).unwrap();
        assert_eq!(c.listeners[0].address, "[::1]:2525".parse().unwrap());
        assert!(c.listeners[1].address.is_ipv6());
        let d = only_error(&yaml.replace("\"[::1]:2525\"", "\"::1:2525\""));
        assert_eq!(at(&d), (Some(3), Some(14), "listeners[0].address"));
    }

    // --- shipped examples -------------------------------------------------------

    #[test]
    fn every_shipped_example_config_loads_without_warnings() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(config.warnings.is_empty(), "{:?}", config.warnings);
                loaded += 1;
            }
        }
        assert!(
            loaded >= 2,
            "found {loaded} configs in {}",
            folder.display()
        );
    }

    #[test]
    fn full_example_has_two_listeners_and_failover_upstreams() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/replyfix.yaml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.upstreams.len(), 2);
        assert!(c.upstreams.iter().all(|u| u.servers.len() >= 2));
        assert!(c.admin.is_some());
    }

    #[test]
    fn missing_file_is_reported_with_its_name() {
        let err = Config::load(Path::new("/nonexistent/replyfix.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/replyfix.yaml: cannot read")
        );
    }
}
