//! Process metrics for the admin endpoint's `/metrics` (docs/operations.md).
//!
//! This module owns the metric families, their names and labels, and the
//! text encodings (OpenMetrics 1.0 and Prometheus 0.0.4). The server and the
//! session driver report what happened through the small method API on
//! [`Metrics`]; nothing else touches the registry.
//!
//! Labels stay bounded: listener and upstream names come from the
//! configuration, rule ids from the loaded rules, everything else from fixed
//! vocabularies (`&'static str` or the enums below). No address, host name
//! from the network, or other client-controlled text ever becomes a label.
//! Rule ids of rules removed by a reload keep their series (counters must
//! not go backwards), so the bound is "every rule id loaded since start".
//!
//! The per-reply path ([`Metrics::reply`], [`Metrics::bytes`]) uses handles
//! created once in [`Metrics::new`]: an index and an atomic add, no lock, no
//! allocation, no hashing.
//!
//! This module must never do I/O, log, or read the clock.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::smtp::CommandKind;

/// `Content-Type` of [`Metrics::encode`] (OpenMetrics text 1.0.0).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `Content-Type` of [`Metrics::encode_prometheus_text`] (Prometheus text
/// 0.0.4).
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Prefix of every metric name.
const PREFIX: &str = "replyfix";

/// Upper bounds of `replyfix_upstream_connect_seconds`, in seconds: from a
/// loopback relay (sub-millisecond) to the default `timeouts.upstream_connect`
/// (30 s).
const CONNECT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// Reply classes counted by `replyfix_replies_total`, by first digit
/// (`ReplyCode` only admits 2 to 5).
const REPLY_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Which side of the proxy a TLS handshake was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsLeg {
    /// replyfix as the TLS server, facing the SMTP client (T1, T3).
    Client,
    /// replyfix as the TLS client, facing the upstream (T4).
    Upstream,
}

impl TlsLeg {
    /// The `leg` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            TlsLeg::Client => "client",
            TlsLeg::Upstream => "upstream",
        }
    }
}

/// Why a connection was refused before a session started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.max_sessions` reached (R3).
    TooManySessions,
    /// `limits.max_sessions_per_client` reached for the client's address or
    /// IPv6 /64 (R3).
    TooManyPerClient,
    /// A PROXY header listener was reached by a peer outside
    /// `trusted_proxies`.
    UntrustedProxy,
    /// The PROXY header was missing, malformed or of the wrong version.
    BadProxyHeader,
}

impl Refusal {
    /// Every reason, for pre-creating series.
    pub const ALL: [Refusal; 4] = [
        Refusal::TooManySessions,
        Refusal::TooManyPerClient,
        Refusal::UntrustedProxy,
        Refusal::BadProxyHeader,
    ];

    /// The `reason` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManySessions => "too_many_sessions",
            Refusal::TooManyPerClient => "too_many_per_client",
            Refusal::UntrustedProxy => "untrusted_proxy",
            Refusal::BadProxyHeader => "bad_proxy_header",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    listener: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplyLabels {
    context: &'static str,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RewriteLabels {
    rule: Arc<str>,
    original_code: u16,
    new_code: u16,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerUpstreamLabels {
    listener: String,
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsLabels {
    leg: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn connect_histogram() -> Histogram {
    Histogram::new(CONNECT_BUCKETS)
}

/// Every metric replyfix exports. Create one per process, share it as
/// `Arc<Metrics>`; all methods take `&self` and are cheap.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sessions: Family<ListenerLabels, Counter>,
    sessions_active: Family<ListenerLabels, Gauge>,
    sessions_ended: Family<EndLabels, Counter>,
    /// `replyfix_replies_total` handles, `[CommandKind as usize][class]`.
    replies: Vec<[Counter; REPLY_CLASSES.len()]>,
    rewrites: Family<RewriteLabels, Counter>,
    upstream_connect_failures: Family<UpstreamLabels, Counter>,
    upstream_connect_seconds: HistogramFamily<UpstreamLabels>,
    upstream_tls_demanded: Family<ListenerUpstreamLabels, Counter>,
    tls_handshakes: Family<TlsLabels, Counter>,
    bytes_client_to_upstream: Counter,
    bytes_upstream_to_client: Counter,
    rules_info: Family<VersionLabels, Gauge>,
    reload_ok: Counter,
    reload_failed: Counter,
    rules_last_reload_success: Gauge,
    refused: Family<ReasonLabels, Counter>,
    accept_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every family. Series with fixed label sets (reply
    /// classes, TLS results, byte directions, reload results, refusal
    /// reasons) are created at zero, so a rate over them is defined from
    /// the first scrape.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);

        let sessions = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "sessions",
            "SMTP sessions started, by listener",
            sessions.clone(),
        );
        let sessions_active = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "sessions_active",
            "SMTP sessions in progress, by listener",
            sessions_active.clone(),
        );
        let sessions_ended = Family::<EndLabels, Counter>::default();
        registry.register(
            "sessions_ended",
            "SMTP sessions ended, by listener and end reason (the session log's `end` field)",
            sessions_ended.clone(),
        );

        let replies_family = Family::<ReplyLabels, Counter>::default();
        registry.register(
            "replies",
            "Upstream replies relayed, by command context and reply class",
            replies_family.clone(),
        );
        let replies = CommandKind::ALL
            .iter()
            .map(|kind| {
                REPLY_CLASSES.map(|class| {
                    replies_family.get_or_create_owned(&ReplyLabels {
                        context: kind.as_str(),
                        class,
                    })
                })
            })
            .collect();

        let rewrites = Family::<RewriteLabels, Counter>::default();
        registry.register(
            "rewrites",
            "Replies rewritten (mode=enforce) or that would have been (mode=shadow), by rule id and codes",
            rewrites.clone(),
        );

        let upstream_connect_failures = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_connect_failures",
            "Upstream server connection attempts that failed (refused, unreachable, timed out), by upstream",
            upstream_connect_failures.clone(),
        );
        let upstream_tls_demanded = Family::<ListenerUpstreamLabels, Counter>::default();
        registry.register(
            "upstream_tls_demanded",
            "Sessions in which the upstream demanded TLS on replyfix's plaintext connection to it (set the upstream's tls.policy), by listener and upstream",
            upstream_tls_demanded.clone(),
        );
        let upstream_connect_seconds: HistogramFamily<UpstreamLabels> =
            Family::new_with_constructor(connect_histogram);
        registry.register_with_unit(
            "upstream_connect",
            "Time to a successful TCP connection to an upstream server, by upstream",
            Unit::Seconds,
            upstream_connect_seconds.clone(),
        );

        let tls_handshakes = Family::<TlsLabels, Counter>::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes, by leg (client, upstream) and result (ok, failed)",
            tls_handshakes.clone(),
        );
        for leg in [TlsLeg::Client, TlsLeg::Upstream] {
            for result in ["ok", "failed"] {
                let _ = tls_handshakes.get_or_create(&TlsLabels {
                    leg: leg.as_str(),
                    result,
                });
            }
        }

        let bytes = Family::<DirectionLabels, Counter>::default();
        registry.register("bytes", "Bytes relayed, by direction", bytes.clone());
        let bytes_client_to_upstream = bytes.get_or_create_owned(&DirectionLabels {
            direction: "client_to_upstream",
        });
        let bytes_upstream_to_client = bytes.get_or_create_owned(&DirectionLabels {
            direction: "upstream_to_client",
        });

        let rules_info = Family::<VersionLabels, Gauge>::default();
        registry.register(
            "rules_info",
            "The rules version in force for new transactions (value is always 1)",
            rules_info.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "rules_reload",
            "Rule reloads (SIGHUP or file watch), by result (ok, failed)",
            reloads.clone(),
        );
        let reload_ok = reloads.get_or_create_owned(&ResultLabels { result: "ok" });
        let reload_failed = reloads.get_or_create_owned(&ResultLabels { result: "failed" });
        let rules_last_reload_success = Gauge::default();
        registry.register(
            "rules_last_reload_success",
            "1 if the last rule reload succeeded (or none was tried), 0 if it failed",
            rules_last_reload_success.clone(),
        );
        rules_last_reload_success.set(1);

        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "refused_connections",
            "Connections refused before a session started, by reason",
            refused.clone(),
        );
        for reason in Refusal::ALL {
            let _ = refused.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }

        let accept_errors = Counter::default();
        registry.register(
            "accept_errors",
            "Failed accept() calls on the listeners (e.g. out of file descriptors); each backs off 100 ms",
            accept_errors.clone(),
        );

        Metrics {
            registry,
            sessions,
            sessions_active,
            sessions_ended,
            replies,
            rewrites,
            upstream_connect_failures,
            upstream_connect_seconds,
            upstream_tls_demanded,
            tls_handshakes,
            bytes_client_to_upstream,
            bytes_upstream_to_client,
            rules_info,
            reload_ok,
            reload_failed,
            rules_last_reload_success,
            refused,
            accept_errors,
        }
    }

    /// A session was admitted on `listener` (a configured listener name).
    pub fn session_started(&self, listener: &str) {
        let labels = ListenerLabels {
            listener: listener.to_owned(),
        };
        self.sessions.get_or_create(&labels).inc();
        self.sessions_active.get_or_create(&labels).inc();
    }

    /// A session started with [`Metrics::session_started`] ended; `reason`
    /// is `EndReason::as_str()`.
    pub fn session_ended(&self, listener: &str, reason: &'static str) {
        let listener = listener.to_owned();
        self.sessions_active
            .get_or_create(&ListenerLabels {
                listener: listener.clone(),
            })
            .dec();
        self.sessions_ended
            .get_or_create(&EndLabels { listener, reason })
            .inc();
    }

    /// A complete upstream reply was relayed in `context` (the command it
    /// answers, P1). Lock- and allocation-free.
    pub fn reply(&self, context: CommandKind, code: u16) {
        let class = match code / 100 {
            2 => 0,
            3 => 1,
            4 => 2,
            5 => 3,
            // ReplyCode cannot hold anything else; not worth a series.
            _ => return,
        };
        if let Some(row) = self.replies.get(context as usize) {
            row[class].inc();
        }
    }

    /// A rule rewrote a reply (`shadow == false`) or would have in shadow
    /// mode (W5). `rule` is the rule id from the loaded rules.
    pub fn rewrite(&self, rule: &str, original: u16, new: u16, shadow: bool) {
        self.rewrites
            .get_or_create(&RewriteLabels {
                rule: Arc::from(rule),
                original_code: original,
                new_code: new,
                mode: if shadow { "shadow" } else { "enforce" },
            })
            .inc();
    }

    /// One TCP connection attempt to a server of `upstream` (a configured
    /// upstream name) finished: `ok` with its duration in seconds, or
    /// failed (counted; the duration of a failure is not observed, so a
    /// timeout does not skew the latency histogram).
    pub fn upstream_connect(&self, upstream: &str, ok: bool, seconds: f64) {
        let labels = UpstreamLabels {
            upstream: upstream.to_owned(),
        };
        if ok {
            self.upstream_connect_seconds
                .get_or_create(&labels)
                .observe(seconds);
        } else {
            self.upstream_connect_failures.get_or_create(&labels).inc();
        }
    }

    /// The upstream demanded TLS on replyfix's plaintext leg to it, in a
    /// session of `listener` (configured names only: bounded labels).
    pub fn upstream_tls_demanded(&self, listener: &str, upstream: &str) {
        self.upstream_tls_demanded
            .get_or_create(&ListenerUpstreamLabels {
                listener: listener.to_owned(),
                upstream: upstream.to_owned(),
            })
            .inc();
    }

    /// A TLS handshake on `leg` finished, successfully or not.
    pub fn tls_handshake(&self, leg: TlsLeg, ok: bool) {
        self.tls_handshakes
            .get_or_create(&TlsLabels {
                leg: leg.as_str(),
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// Bytes relayed since the last call, each way. Lock- and
    /// allocation-free; call it per write or once per session.
    pub fn bytes(&self, client_to_upstream: u64, upstream_to_client: u64) {
        if client_to_upstream > 0 {
            self.bytes_client_to_upstream.inc_by(client_to_upstream);
        }
        if upstream_to_client > 0 {
            self.bytes_upstream_to_client.inc_by(upstream_to_client);
        }
    }

    /// The rules loaded at startup: sets `replyfix_rules_info{version}`.
    /// Not counted as a reload.
    pub fn rules_loaded(&self, version: &str) {
        self.set_rules_version(version);
    }

    /// A reload succeeded and `version` is now in force for new
    /// transactions (F5).
    pub fn rules_reload_ok(&self, version: &str) {
        self.set_rules_version(version);
        self.reload_ok.inc();
        self.rules_last_reload_success.set(1);
    }

    /// A reload failed; the previous rules (and their version) stay (F5).
    pub fn rules_reload_failed(&self) {
        self.reload_failed.inc();
        self.rules_last_reload_success.set(0);
    }

    fn set_rules_version(&self, version: &str) {
        // One series at a time: the old version disappears. Clear and set
        // are two steps; a scrape between them sees no version, never two.
        self.rules_info.clear();
        self.rules_info
            .get_or_create(&VersionLabels {
                version: version.to_owned(),
            })
            .set(1);
    }

    /// A connection was refused before a session started.
    pub fn refused(&self, reason: Refusal) {
        self.refused
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// A listener's `accept()` failed (EMFILE, ENFILE, ENOBUFS, ...): the
    /// connection stays in the kernel's queue and the accept loop backs off.
    pub fn accept_error(&self) {
        self.accept_errors.inc();
    }

    /// Every metric in the OpenMetrics text format, ending with `# EOF`
    /// ([`OPENMETRICS_CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail; our metrics are all classic, so
        // the encoder has nothing it could reject either.
        let _ = text::encode(&mut out, &self.registry);
        out
    }

    /// Every metric in the Prometheus text format 0.0.4
    /// ([`PROMETHEUS_TEXT_CONTENT_TYPE`]), for scrapers and people that do
    /// not ask for OpenMetrics.
    pub fn encode_prometheus_text(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines (not `#` comments) of an exposition, for exact
    /// comparisons that do not depend on HELP texts.
    fn samples(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    fn sample_lines_starting(text: &str, name: &str) -> Vec<String> {
        samples(text)
            .into_iter()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect()
    }

    /// Parses `name{labels} value` into (name, labels, value); panics on
    /// anything else, which is the point of the test.
    fn parse_sample(line: &str) -> (String, Vec<(String, String)>, f64) {
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value.parse().expect("value is a number");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels closed");
                let labels = body
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').expect("label has =");
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .expect("quoted");
                        (k.to_owned(), v.to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), Vec::new()),
        };
        (name, labels, value)
    }

    #[test]
    fn every_sample_line_parses_and_openmetrics_ends_with_eof() {
        let m = Metrics::new();
        m.session_started("smtp");
        m.upstream_connect("relay", true, 0.003);
        m.rewrite("auth-misuse", 530, 550, false);
        let text = m.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in samples(&text) {
            let (name, _, _) = parse_sample(&line);
            assert!(name.starts_with("replyfix_"), "{line}");
        }
        let prom = m.encode_prometheus_text();
        assert!(!prom.contains("# EOF"));
        for line in samples(&prom) {
            parse_sample(&line);
        }
    }

    #[test]
    fn sessions_count_started_active_and_ended_by_reason() {
        let m = Metrics::new();
        m.session_started("submission");
        m.session_started("submission");
        m.session_started("smtp");
        m.session_ended("submission", "quit");
        let text = m.encode();
        let mut started = sample_lines_starting(&text, "replyfix_sessions_total");
        started.sort();
        assert_eq!(
            started,
            [
                "replyfix_sessions_total{listener=\"smtp\"} 1",
                "replyfix_sessions_total{listener=\"submission\"} 2",
            ]
        );
        let mut active = sample_lines_starting(&text, "replyfix_sessions_active");
        active.sort();
        assert_eq!(
            active,
            [
                "replyfix_sessions_active{listener=\"smtp\"} 1",
                "replyfix_sessions_active{listener=\"submission\"} 1",
            ]
        );
        assert_eq!(
            sample_lines_starting(&text, "replyfix_sessions_ended_total"),
            ["replyfix_sessions_ended_total{listener=\"submission\",reason=\"quit\"} 1"]
        );
    }

    #[test]
    fn replies_are_counted_by_context_and_class() {
        let m = Metrics::new();
        m.reply(CommandKind::Rcpt, 250);
        m.reply(CommandKind::Rcpt, 250);
        m.reply(CommandKind::Rcpt, 530);
        m.reply(CommandKind::DataEnd, 451);
        m.reply(CommandKind::Rcpt, 199); // not a reply code: ignored
        let text = m.encode();
        let lines = samples(&text);
        for expected in [
            "replyfix_replies_total{context=\"rcpt\",class=\"2xx\"} 2",
            "replyfix_replies_total{context=\"rcpt\",class=\"5xx\"} 1",
            "replyfix_replies_total{context=\"data_end\",class=\"4xx\"} 1",
            "replyfix_replies_total{context=\"greeting\",class=\"2xx\"} 0",
        ] {
            assert!(lines.iter().any(|l| l == expected), "{expected}\n{text}");
        }
        // Every context x class exists from the start, and nothing else.
        let all = sample_lines_starting(&text, "replyfix_replies_total");
        assert_eq!(all.len(), CommandKind::ALL.len() * 4);
        let total: f64 = all.iter().map(|l| parse_sample(l).2).sum();
        assert_eq!(total, 4.0);
    }

    #[test]
    fn rewrites_are_counted_per_rule_codes_and_mode() {
        let m = Metrics::new();
        m.rewrite("rcpt-530-unknown-user", 530, 550, false);
        m.rewrite("rcpt-530-unknown-user", 530, 550, false);
        m.rewrite("rcpt-530-unknown-user", 530, 550, true);
        m.rewrite("relay-denied", 530, 554, false);
        let mut lines = sample_lines_starting(&m.encode(), "replyfix_rewrites_total");
        lines.sort();
        assert_eq!(
            lines,
            [
                "replyfix_rewrites_total{rule=\"rcpt-530-unknown-user\",original_code=\"530\",new_code=\"550\",mode=\"enforce\"} 2",
                "replyfix_rewrites_total{rule=\"rcpt-530-unknown-user\",original_code=\"530\",new_code=\"550\",mode=\"shadow\"} 1",
                "replyfix_rewrites_total{rule=\"relay-denied\",original_code=\"530\",new_code=\"554\",mode=\"enforce\"} 1",
            ]
        );
    }

    #[test]
    fn upstream_failures_are_counted_and_successes_observed() {
        let m = Metrics::new();
        m.upstream_connect("relay", true, 0.002);
        m.upstream_connect("relay", true, 0.2);
        m.upstream_connect("relay", false, 30.0);
        let text = m.encode();
        assert_eq!(
            sample_lines_starting(&text, "replyfix_upstream_connect_failures_total"),
            ["replyfix_upstream_connect_failures_total{upstream=\"relay\"} 1"]
        );
        let lines = samples(&text);
        for expected in [
            "replyfix_upstream_connect_seconds_count{upstream=\"relay\"} 2",
            "replyfix_upstream_connect_seconds_bucket{le=\"0.001\",upstream=\"relay\"} 0",
            "replyfix_upstream_connect_seconds_bucket{le=\"0.0025\",upstream=\"relay\"} 1",
            "replyfix_upstream_connect_seconds_bucket{le=\"0.25\",upstream=\"relay\"} 2",
            "replyfix_upstream_connect_seconds_bucket{le=\"+Inf\",upstream=\"relay\"} 2",
        ] {
            assert!(lines.iter().any(|l| l == expected), "{expected}\n{text}");
        }
        let sum = lines
            .iter()
            .find(|l| l.starts_with("replyfix_upstream_connect_seconds_sum"))
            .map(|l| parse_sample(l).2);
        assert!(sum.is_some_and(|s| (s - 0.202).abs() < 1e-9), "{sum:?}");
    }

    #[test]
    fn tls_bytes_and_refusals_have_fixed_series() {
        let m = Metrics::new();
        m.tls_handshake(TlsLeg::Client, true);
        m.tls_handshake(TlsLeg::Upstream, false);
        m.bytes(100, 20);
        m.bytes(0, 5);
        m.refused(Refusal::TooManyPerClient);
        let text = m.encode();
        let mut tls = sample_lines_starting(&text, "replyfix_tls_handshakes_total");
        tls.sort();
        assert_eq!(
            tls,
            [
                "replyfix_tls_handshakes_total{leg=\"client\",result=\"failed\"} 0",
                "replyfix_tls_handshakes_total{leg=\"client\",result=\"ok\"} 1",
                "replyfix_tls_handshakes_total{leg=\"upstream\",result=\"failed\"} 1",
                "replyfix_tls_handshakes_total{leg=\"upstream\",result=\"ok\"} 0",
            ]
        );
        let mut bytes = sample_lines_starting(&text, "replyfix_bytes_total");
        bytes.sort();
        assert_eq!(
            bytes,
            [
                "replyfix_bytes_total{direction=\"client_to_upstream\"} 100",
                "replyfix_bytes_total{direction=\"upstream_to_client\"} 25",
            ]
        );
        let mut refused = sample_lines_starting(&text, "replyfix_refused_connections_total");
        refused.sort();
        assert_eq!(
            refused,
            [
                "replyfix_refused_connections_total{reason=\"bad_proxy_header\"} 0",
                "replyfix_refused_connections_total{reason=\"too_many_per_client\"} 1",
                "replyfix_refused_connections_total{reason=\"too_many_sessions\"} 0",
                "replyfix_refused_connections_total{reason=\"untrusted_proxy\"} 0",
            ]
        );
    }

    #[test]
    fn a_reload_replaces_the_rules_version_and_a_failure_keeps_it() {
        let m = Metrics::new();
        m.rules_loaded("a1b2");
        let text = m.encode();
        assert_eq!(
            sample_lines_starting(&text, "replyfix_rules_info"),
            ["replyfix_rules_info{version=\"a1b2\"} 1"]
        );
        assert_eq!(
            sample_lines_starting(&text, "replyfix_rules_last_reload_success"),
            ["replyfix_rules_last_reload_success 1"]
        );

        m.rules_reload_ok("c3d4");
        m.rules_reload_failed();
        let text = m.encode();
        assert_eq!(
            sample_lines_starting(&text, "replyfix_rules_info"),
            ["replyfix_rules_info{version=\"c3d4\"} 1"]
        );
        let mut reloads = sample_lines_starting(&text, "replyfix_rules_reload_total");
        reloads.sort();
        assert_eq!(
            reloads,
            [
                "replyfix_rules_reload_total{result=\"failed\"} 1",
                "replyfix_rules_reload_total{result=\"ok\"} 1",
            ]
        );
        assert_eq!(
            sample_lines_starting(&text, "replyfix_rules_last_reload_success"),
            ["replyfix_rules_last_reload_success 0"]
        );
    }

    #[test]
    fn label_values_from_config_are_escaped() {
        let m = Metrics::new();
        m.session_started("we\"ird\\name");
        let text = m.encode();
        assert!(
            text.contains("replyfix_sessions_total{listener=\"we\\\"ird\\\\name\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn metrics_are_shared_across_threads() {
        let m = Arc::new(Metrics::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.reply(CommandKind::Mail, 250);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(
            samples(&m.encode())
                .contains(&"replyfix_replies_total{context=\"mail\",class=\"2xx\"} 4000".into())
        );
    }
}
