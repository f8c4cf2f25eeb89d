//! The status page (`/`): uptime, rules and mode, sessions per listener,
//! upstream reachability, rewrites per rule over the last hour, and the
//! last rewrites.
//!
//! Session counts are read from the process's own metrics exposition, so
//! the page and `/metrics` never disagree. Addresses appear as the logs
//! show them (docs/protocol.md L3: recorded through the same `AddressLog`),
//! replies escaped (L4). The part under `id="live"` is what the refresh
//! script replaces.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use super::html::{Nav, duration, esc, network, page, reply_lines, utc};
use super::recent::{RECENT_REWRITES, Snapshot};
use super::{Console, REFRESH_SECONDS, chart};
use crate::config::Mode;

/// Sessions of one listener, from the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sessions {
    active: u64,
    total: u64,
}

/// `replyfix_sessions_active` and `replyfix_sessions_total` by listener,
/// read from a Prometheus text exposition.
fn sessions_by_listener(exposition: &str) -> HashMap<String, Sessions> {
    let mut out: HashMap<String, Sessions> = HashMap::new();
    for line in exposition.lines() {
        let (rest, active) = if let Some(r) = line.strip_prefix("replyfix_sessions_active{") {
            (r, true)
        } else if let Some(r) = line.strip_prefix("replyfix_sessions_total{") {
            (r, false)
        } else {
            continue;
        };
        let Some(rest) = rest.strip_prefix("listener=\"") else {
            continue;
        };
        let Some((name, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let Ok(n) = value.trim().parse::<f64>() else {
            continue;
        };
        let entry = out.entry(name.to_string()).or_default();
        let n = n.max(0.0) as u64;
        if active {
            entry.active = n;
        } else {
            entry.total = n;
        }
    }
    out
}

/// The whole status page.
pub fn render(c: &Console) -> String {
    let snapshot = c.recent.snapshot();
    let sessions = sessions_by_listener(&c.metrics.encode_prometheus_text());
    let rules = c.rules();
    let mut body = String::with_capacity(16 * 1024);
    body.push_str(
        "<h1>Status</h1>\
         <p class=\"muted\"><label hidden><input type=\"checkbox\" id=\"autorefresh\" checked> \
         refresh every ",
    );
    let _ = write!(
        body,
        "{REFRESH_SECONDS} s</label> <noscript>Reload the page to update it.</noscript></p>\n\
         <div id=\"live\" data-refresh=\"{REFRESH_SECONDS}\">"
    );

    // Cards.
    let now = SystemTime::now();
    let active: u64 = sessions.values().map(|s| s.active).sum();
    let ready = match c.readiness.check() {
        Ok(()) => "<span class=\"ok\">ready</span>".to_string(),
        Err(why) => format!("<span class=\"bad\">{}</span>", esc(why.as_str())),
    };
    let mode = match c.mode {
        Mode::Enforce => "enforce",
        Mode::Shadow => "shadow <span class=\"warn\">(rewrites only logged)</span>",
    };
    let _ = write!(
        body,
        "<div class=\"cards\">\
         <div class=\"card\"><div class=\"k\">uptime</div><div class=\"v\" id=\"uptime\">{}</div>\
         <div class=\"k\">since {} UTC</div></div>\
         <div class=\"card\"><div class=\"k\">mode</div><div class=\"v\" id=\"mode\">{mode}</div></div>\
         <div class=\"card\"><div class=\"k\">rules</div><div class=\"v mono\" id=\"rules-version\">{}</div>\
         <div class=\"k\">{} rules</div></div>\
         <div class=\"card\"><div class=\"k\">sessions now</div><div class=\"v\" id=\"sessions-now\">{active}</div></div>\
         <div class=\"card\"><div class=\"k\">rewrites since start</div><div class=\"v\" id=\"rewrites-total\">{}</div></div>\
         <div class=\"card\"><div class=\"k\">readiness</div><div class=\"v\" id=\"readiness\">{ready}</div></div>\
         </div>",
        duration(c.started_mono.elapsed()),
        utc(c.started),
        esc(rules.version()),
        rules.len(),
        snapshot.total,
    );

    // Listeners.
    body.push_str(
        "<h2>Listeners</h2><table id=\"listeners\"><thead><tr><th>listener</th><th>address</th>\
         <th>upstream</th><th>sessions now</th><th>sessions since start</th></tr></thead><tbody>",
    );
    for l in &c.listeners {
        let s = sessions.get(&l.name).copied().unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.name),
            esc(&l.address.to_string()),
            esc(&l.upstream),
            s.active,
            s.total
        );
    }
    body.push_str("</tbody></table>");

    // Upstreams.
    let down = c.readiness.unreachable_upstreams();
    body.push_str(
        "<h2>Upstreams</h2><table id=\"upstreams\"><thead><tr><th>upstream</th><th>servers</th>\
         <th>TLS policy</th><th>reachable</th></tr></thead><tbody>",
    );
    for u in &c.upstreams {
        let state = if down.contains(&u.name.as_str()) {
            "<span class=\"bad\">no: the last attempt reached none of its servers (re-checked every 5 s)</span>"
        } else {
            "<span class=\"ok\">yes</span>"
        };
        let servers = u
            .servers
            .iter()
            .map(|s| esc(s))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"mono\">{servers}</td><td>{}</td><td>{state}</td></tr>",
            esc(&u.name),
            u.tls
        );
    }
    body.push_str("</tbody></table>");

    body.push_str("<h2>Rewrites per rule, last hour</h2>");
    body.push_str(&chart::rewrites_per_minute(&snapshot.per_rule));
    recent_table(&mut body, &snapshot);
    let _ = write!(
        body,
        "<p class=\"muted\">As of {} UTC. Addresses appear as the logs show them \
         (<code>logging.log_addresses</code>).</p></div>",
        utc(now)
    );
    page("Status", Nav::Status, &c.hostname, &body, true)
}

/// The table of the last rewrites, newest first.
fn recent_table(body: &mut String, snapshot: &Snapshot) {
    let _ = write!(
        body,
        "<h2>Last rewrites <span class=\"muted\">(newest first, up to {RECENT_REWRITES})</span></h2>"
    );
    if snapshot.recent.is_empty() {
        body.push_str("<p class=\"muted\" id=\"no-rewrites\">No reply rewritten since start.</p>");
        return;
    }
    body.push_str(
        "<table id=\"rewrites\"><thead><tr><th>time (UTC)</th><th>listener</th><th>command</th>\
         <th>original reply</th><th>reply sent</th><th>rule</th><th>address</th><th>client</th>\
         <th>session</th></tr></thead><tbody>",
    );
    for r in &snapshot.recent {
        let sent_note = if r.shadow {
            "<div class=\"warn\">shadow mode: the client got the original</div>"
        } else {
            ""
        };
        let cut = if r.cut {
            "<div class=\"muted\">(cut)</div>"
        } else {
            ""
        };
        let explain = format!(
            "/explain?command={}&amp;text={}",
            r.context.as_str(),
            esc(&super::form::encode(
                String::from_utf8_lossy(&r.original).trim_end_matches(['\r', '\n'])
            ))
        );
        let _ = write!(
            body,
            "<tr class=\"rewrite\"><td class=\"mono nowrap\">{}</td><td>{}</td><td class=\"mono\">{}</td>\
             <td><pre class=\"original\">{}</pre>{cut}<a href=\"{explain}\">explain</a></td>\
             <td><pre class=\"sent\">{}</pre>{sent_note}</td><td class=\"mono rule\">{}</td>\
             <td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
            utc(r.at),
            esc(&r.listener),
            r.context.as_str(),
            reply_lines(&r.original),
            reply_lines(&r.sent),
            esc(&r.rule),
            r.address.as_deref().map(esc).unwrap_or_default(),
            esc(&r.client.to_string()),
            network(r.session.as_bytes(), 64),
        );
    }
    body.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_counts_are_read_per_listener_from_the_exposition() {
        let m = crate::metrics::Metrics::new();
        m.session_started("a");
        m.session_started("a");
        m.session_started("b");
        m.session_ended("a", "client_quit");
        let s = sessions_by_listener(&m.encode_prometheus_text());
        assert_eq!(
            s.get("a"),
            Some(&Sessions {
                active: 1,
                total: 2
            })
        );
        assert_eq!(
            s.get("b"),
            Some(&Sessions {
                active: 1,
                total: 1
            })
        );
    }
}
