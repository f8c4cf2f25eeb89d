//! Configuration: the settings replyfix runs with, loaded from YAML and
//! checked.
//!
//! This module owns the settings replyfix runs with: listeners, upstreams,
//! rule file locations, protocol policies (docs/protocol.md D2), resource limits
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
//! once into the positioned YAML tree of `crate::yaml` (read the way serde
//! reads the model, `parse_for_structs`), flattened into a position index
//! (`path -> line:column`), and once into the typed model. A
//! deserialization error's position is looked up in the index to name its
//! key; a semantic error's key is looked up to find its line.
//!
//! The parts: `model` (the settings and their defaults), `de` (deserialisers
//! for durations, addresses, networks), `position` (the index),
//! `diagnostic` (problems and how a YAML error becomes one), `check` (the
//! semantic checks), `hostname` (SMTP host names). This file is the public
//! surface (every public type is re-exported here) and loading:
//! [`Config::load`], [`Config::from_yaml`], [`Config::quick`].
//!
//! This module must never open sockets, start tasks, read rule files (only
//! check that they exist), or log: it returns diagnostics and the caller
//! decides what to print.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::yaml;

/// Largest config file [`Config::load`] reads; anything bigger is a mistake.
const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// The file name used in diagnostics for [`Config::quick`].
const COMMAND_LINE: &str = "command line";

mod check;
mod de;
mod diagnostic;
mod hostname;
mod model;
mod position;

pub use de::parse_duration;
pub use diagnostic::{ConfigDiagnostic, ConfigError};
pub use model::{
    AdminConfig, BareLineEndings, ClientAddressForwarding, Config, Limits, ListenerConfig,
    ListenerTls, LogAddresses, LogFormat, Logging, Mode, ProxyProtocol, ReloadConfig, Timeouts,
    TlsPolicy, TranscriptConfig, UpstreamConfig, UpstreamTls,
};

use diagnostic::diagnostic_from_yaml;
pub use hostname::is_fully_qualified;
use hostname::system_hostname;
use position::PositionIndex;

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
        // Best effort: a document the index cannot read (a null or list
        // key, a `.nan` where a string is expected) still loads, only with
        // fewer line numbers in semantic errors. Duplicate keys stay in the
        // tree so the index can name them.
        let index = yaml::parse_for_structs(text)
            .map(|root| PositionIndex::build(&root))
            .unwrap_or_default();
        let mut config: Config = serde_saphyr::from_str_with_options(text, yaml::options())
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

    /// `serve --helo-name NAME`: the name replyfix gives in its own EHLO to
    /// every upstream, checked like `helo_name` in a file.
    pub fn set_helo_name(&mut self, name: &str) -> Result<(), ConfigError> {
        let problem = hostname::domain_problem(name).or_else(|| {
            (!name.starts_with('[') && !is_fully_qualified(name)).then(|| {
                format!(
                    "'{name}' is not fully qualified; relays that check HELO names refuse it (give e.g. relay.example.net)"
                )
            })
        });
        if let Some(message) = problem {
            return Err(ConfigError(vec![ConfigDiagnostic {
                file: COMMAND_LINE.to_owned(),
                line: None,
                column: None,
                key: "--helo-name".to_owned(),
                message,
            }]));
        }
        for u in &mut self.upstreams {
            u.helo_name = Some(name.to_owned());
        }
        Ok(())
    }

    /// The name replyfix gives in its own EHLO to `upstream` (RFC 5321
    /// 4.1.4): its `helo_name`, else `hostname` when that is fully
    /// qualified, else `None`: the address literal of replyfix's end of
    /// each upstream connection is used (`[192.0.2.1]`).
    pub fn helo_for(&self, upstream: &UpstreamConfig) -> Option<String> {
        upstream
            .helo_name
            .clone()
            .or_else(|| is_fully_qualified(&self.hostname).then(|| self.hostname.clone()))
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
}

#[cfg(test)]
mod tests;
