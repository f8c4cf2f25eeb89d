//! The checker: every semantic problem of a loaded configuration (unknown
//! upstream names, missing files, zero limits, risky timeouts, ...), each as
//! an error or a warning located by file, line and dotted key.
//!
//! This module only reads the model and the position index; it must never
//! change a setting, open a socket or print anything.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::diagnostic::{ConfigDiagnostic, ConfigError};
use super::hostname::{domain_problem, is_fully_qualified};
use super::model::{
    AdminConfig, BareLineEndings, Config, Limits, ListenerConfig, LogAddresses, Logging, Mode,
    Timeouts, TlsPolicy, UpstreamConfig, UpstreamTls,
};
use super::position::PositionIndex;

impl Config {
    pub(super) fn validate(
        mut self,
        file: &str,
        index: &PositionIndex,
    ) -> Result<Config, ConfigError> {
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
                let key = format!("{at}.helo_name");
                self.hostname(&key, helo);
                if domain_problem(helo).is_none()
                    && !helo.starts_with('[')
                    && !is_fully_qualified(helo)
                {
                    self.warn(
                        &key,
                        format!(
                            "'{helo}' is not fully qualified; relays that check HELO names \
                             (Postfix's reject_non_fqdn_helo_hostname) refuse it: give a \
                             name with a domain, or leave helo_name out (docs/configuration.md)"
                        ),
                    );
                }
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
        if let Some(warning) = admin.console_exposure() {
            self.warn("admin.console", warning);
        }
        match admin.token.as_deref() {
            Some(t) if t.trim().is_empty() || t.chars().any(char::is_control) => self.error(
                "admin.token",
                "the token is empty or holds control characters; give a long random string \
                 (e.g. the output of 'openssl rand -hex 32') or remove 'token'",
            ),
            Some(t) if t.len() < MIN_ADMIN_TOKEN => self.warn(
                "admin.token",
                format!(
                    "the token is shorter than {MIN_ADMIN_TOKEN} characters; a short token can be \
                     guessed (use e.g. 'openssl rand -hex 32')"
                ),
            ),
            Some(_) if !admin.console && !admin.token_on_probes => self.warn(
                "admin.token",
                "the token protects only the console, which is off ('console: false'); \
                 it has no effect unless 'token_on_probes: true'",
            ),
            None if admin.token_on_probes => self.error(
                "admin.token_on_probes",
                "token_on_probes needs 'token'; set one or remove token_on_probes",
            ),
            _ => {}
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

/// Shortest admin token accepted without a warning.
const MIN_ADMIN_TOKEN: usize = 16;

impl AdminConfig {
    /// The warning for a console that anyone on the network could open:
    /// served (`console: true`) on an address that is not loopback, without
    /// a `token`. `None` when the console is off, on loopback, or protected.
    /// `check` and `serve --admin` both report it.
    pub fn console_exposure(&self) -> Option<String> {
        if !self.console || self.listen.ip().is_loopback() || self.token.is_some() {
            return None;
        }
        Some(format!(
            "the console (/ and /explain) is served on {} without a token: whoever reaches it \
             sees the replies being rewritten and the addresses the logs show; set \
             'admin.token', or 'admin.console: false' (docs/operations.md, \"The console\")",
            self.listen
        ))
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
