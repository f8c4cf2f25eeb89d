//! The configuration model: the settings replyfix runs with, as structs and
//! enums with their YAML shape and their defaults.
//!
//! This module only describes the settings; it must never read a file, check
//! one setting against another (that is `check`), or know where a key was
//! written in the YAML text.
//!
//! The ids in the docs below (D2, R1, T4, ...) are those of docs/protocol.md.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::de::{de_duration, de_ip_nets, de_socket_addr};
use super::diagnostic::ConfigDiagnostic;
use super::hostname::system_hostname;

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
    /// (D2).
    #[serde(default)]
    pub bare_line_endings: BareLineEndings,
    /// Resource limits (R1–R4).
    #[serde(default)]
    pub limits: Limits,
    /// Timeouts (F3, RFC 5321 4.5.3.2).
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Log format, level and how envelope addresses appear (L3).
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

/// Client-leg TLS for one listener (RFC 3207; T1, T3, T5).
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
    /// STARTTLS command first` (T5).
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
    /// Upstream-leg TLS (T4).
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

/// Upstream-leg TLS settings (T4).
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

/// Upstream TLS policy (T4).
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

/// Policy for bare CR, bare LF and NUL in message content (D2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndings {
    /// Abort the upstream transaction, answer `550 5.5.2`, close.
    #[default]
    Reject,
    /// Replace the byte with a space (and re-stuff dots, D3).
    Sanitize,
}

/// Resource limits (R1–R4). Every buffer has a bound.
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

/// Timeouts (F3), chosen to fit inside the client's RFC 5321
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
    /// How envelope addresses appear in logs (L3).
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

/// How envelope addresses appear in logs (L3).
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

/// The admin endpoint: `/metrics`, `/healthz`, `/readyz`, and the console
/// pages `/` (status) and `/explain` (docs/operations.md).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to serve HTTP on; keep it private.
    #[serde(deserialize_with = "de_socket_addr")]
    pub listen: SocketAddr,
    /// Serve the console pages `/` and `/explain`.
    #[serde(default = "console_default")]
    pub console: bool,
    /// The console's secret: sent as `Authorization: Bearer TOKEN`, or as
    /// the password of HTTP basic auth (any user name) so a browser can
    /// log in. Absent: the console is open to anyone who reaches `listen`.
    /// Never printed, not even by `Debug`.
    #[serde(default)]
    pub token: Option<String>,
    /// Require the token on `/metrics`, `/healthz` and `/readyz` too
    /// (default: only the console pages need it, so probes and Prometheus
    /// work unchanged).
    #[serde(default)]
    pub token_on_probes: bool,
}

fn console_default() -> bool {
    true
}

impl AdminConfig {
    /// The endpoint on `listen` with every other setting at its default
    /// (`serve --admin ADDR` without an `admin:` section).
    pub fn new(listen: SocketAddr) -> Self {
        AdminConfig {
            listen,
            console: console_default(),
            token: None,
            token_on_probes: false,
        }
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("console", &self.console)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_on_probes", &self.token_on_probes)
            .finish()
    }
}
