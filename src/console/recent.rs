//! The console's memory of live traffic: the last rewrites and a count per
//! rule per minute over the last hour, written by sessions, read by the
//! status page.
//!
//! Recording must never slow a session: no await, no I/O, no unbounded
//! growth. The record is built outside the lock; the lock is held for a
//! push, a pop and a counter bump (a `std` mutex, uncontended in practice:
//! the only other holder is a page render taking a snapshot, a copy of at
//! most [`RECENT_REWRITES`] pointers and 60 small counters). Addresses are
//! kept only as the logs show them (docs/protocol.md L3), reply bytes only
//! up to [`MAX_KEPT_REPLY`].

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::logging::AddressLog;
use crate::session::core::Rewrite;
use crate::smtp::CommandKind;

/// Rewrites kept for the status page's table.
pub const RECENT_REWRITES: usize = 50;

/// Octets of each reply kept (the page shows them escaped, L4); a longer
/// reply is cut and marked.
pub const MAX_KEPT_REPLY: usize = 2048;

/// Minutes of per-rule counts kept (the chart's width).
pub const MINUTES: usize = 60;

/// Distinct rules counted per minute; further rules in the same minute are
/// counted under [`OTHER_RULES`].
const MAX_RULES_PER_MINUTE: usize = 32;

/// The chart's name for rules past [`MAX_RULES_PER_MINUTE`] in one minute.
pub const OTHER_RULES: &str = "(other rules)";

/// One rewrite as the status page shows it.
#[derive(Debug)]
pub struct RewriteRecord {
    /// When the session saw it.
    pub at: SystemTime,
    /// The listener's name (configuration).
    pub listener: Arc<str>,
    /// The session id, as in the logs.
    pub session: Box<str>,
    /// The client's address, as the rewrite log shows it.
    pub client: IpAddr,
    /// The command the reply answered (P1).
    pub context: CommandKind,
    /// The MAIL or RCPT address concerned, per `log_addresses` (L3).
    pub address: Option<String>,
    /// The rule that matched.
    pub rule: Arc<str>,
    /// The upstream's reply, raw, at most [`MAX_KEPT_REPLY`] octets.
    pub original: Box<[u8]>,
    /// The reply sent to the client (in shadow mode: the one that would
    /// have been), raw, at most [`MAX_KEPT_REPLY`] octets.
    pub sent: Box<[u8]>,
    /// Either reply was longer than [`MAX_KEPT_REPLY`].
    pub cut: bool,
    /// Shadow mode: the client got the original.
    pub shadow: bool,
}

/// What a page render copies out: the recent rewrites, newest first, and
/// per-rule counts for each of the last [`MINUTES`] minutes (oldest first,
/// the current minute last).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Newest first.
    pub recent: Vec<Arc<RewriteRecord>>,
    /// Per rule: counts per minute, oldest first; rules sorted by their
    /// hour total, largest first.
    pub per_rule: Vec<(Arc<str>, [u32; MINUTES])>,
    /// Rewrites recorded since start.
    pub total: u64,
}

#[derive(Default)]
struct Minute {
    /// Minutes since [`Recent::new`]; a slot whose index is old is empty.
    index: u64,
    counts: Vec<(Arc<str>, u32)>,
}

struct Ring {
    recent: VecDeque<Arc<RewriteRecord>>,
    minutes: [Minute; MINUTES],
    total: u64,
}

/// The shared buffer; one per process, behind an `Arc`.
pub struct Recent {
    started: Instant,
    ring: Mutex<Ring>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent::new()
    }
}

impl Recent {
    /// An empty buffer; minutes count from now.
    pub fn new() -> Recent {
        Recent {
            started: Instant::now(),
            ring: Mutex::new(Ring {
                recent: VecDeque::with_capacity(RECENT_REWRITES),
                minutes: std::array::from_fn(|_| Minute::default()),
                total: 0,
            }),
        }
    }

    fn minute_now(&self) -> u64 {
        self.started.elapsed().as_secs() / 60
    }

    /// Adds one record; the oldest falls out past [`RECENT_REWRITES`].
    pub fn push(&self, record: RewriteRecord) {
        let record = Arc::new(record);
        let minute = self.minute_now();
        let dropped;
        {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            ring.total += 1;
            let slot = &mut ring.minutes[(minute % MINUTES as u64) as usize];
            if slot.index != minute {
                slot.index = minute;
                slot.counts.clear();
            }
            count(&mut slot.counts, &record.rule);
            dropped = if ring.recent.len() >= RECENT_REWRITES {
                ring.recent.pop_back()
            } else {
                None
            };
            ring.recent.push_front(record);
        }
        // The last reference to a dropped record is freed outside the lock.
        drop(dropped);
    }

    /// Copies out what the status page shows.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.minute_now();
        let mut per_rule: Vec<(Arc<str>, [u32; MINUTES])> = Vec::new();
        let (recent, total) = {
            let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            for slot in &ring.minutes {
                // Minutes ago; slots older than an hour (or never used but
                // for minute 0 of an empty buffer) are skipped.
                let Some(age) = now.checked_sub(slot.index) else {
                    continue;
                };
                if age >= MINUTES as u64 {
                    continue;
                }
                let column = MINUTES - 1 - age as usize;
                for (rule, n) in &slot.counts {
                    let row = match per_rule.iter().position(|(r, _)| r == rule) {
                        Some(i) => i,
                        None => {
                            per_rule.push((rule.clone(), [0; MINUTES]));
                            per_rule.len() - 1
                        }
                    };
                    per_rule[row].1[column] += n;
                }
            }
            (ring.recent.iter().cloned().collect(), ring.total)
        };
        per_rule.sort_by(|a, b| {
            let sum = |c: &[u32; MINUTES]| c.iter().map(|&n| u64::from(n)).sum::<u64>();
            sum(&b.1).cmp(&sum(&a.1)).then_with(|| a.0.cmp(&b.0))
        });
        Snapshot {
            recent,
            per_rule,
            total,
        }
    }
}

/// Bumps `rule`'s count in one minute, bounded by [`MAX_RULES_PER_MINUTE`].
fn count(counts: &mut Vec<(Arc<str>, u32)>, rule: &Arc<str>) {
    if let Some((_, n)) = counts.iter_mut().find(|(r, _)| r == rule) {
        *n = n.saturating_add(1);
        return;
    }
    if counts.len() < MAX_RULES_PER_MINUTE {
        counts.push((rule.clone(), 1));
        return;
    }
    match counts.iter_mut().find(|(r, _)| &**r == OTHER_RULES) {
        Some((_, n)) => *n = n.saturating_add(1),
        None => {
            // Replace the last slot's rule with the catch-all, keeping its
            // count: the bound holds and no rewrite goes uncounted.
            if let Some(last) = counts.last_mut() {
                last.0 = Arc::from(OTHER_RULES);
                last.1 = last.1.saturating_add(1);
            }
        }
    }
}

/// A session's handle on the console: records its listener's rewrites, or
/// nothing when the console is off. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    listener: Arc<str>,
    recent: Option<Arc<Recent>>,
}

impl Recorder {
    /// Records `listener`'s rewrites into `recent`.
    pub fn new(listener: &str, recent: Arc<Recent>) -> Recorder {
        Recorder {
            listener: Arc::from(listener),
            recent: Some(recent),
        }
    }

    /// Records nothing (no console configured).
    pub fn off() -> Recorder {
        Recorder {
            listener: Arc::from(""),
            recent: None,
        }
    }

    /// Records one rewrite (W5's record, for the status page): the address
    /// shown as `addresses` shows it in the logs (L3), replies capped.
    /// Never waits on anything but a short lock (see the module docs).
    pub fn rewrite(&self, session: &str, client: IpAddr, r: &Rewrite, addresses: &AddressLog) {
        let Some(recent) = &self.recent else { return };
        let original = r.original.raw();
        let sent = r.new.raw();
        let keep = |b: &[u8]| Box::<[u8]>::from(&b[..b.len().min(MAX_KEPT_REPLY)]);
        recent.push(RewriteRecord {
            at: SystemTime::now(),
            listener: self.listener.clone(),
            session: Box::from(session),
            client,
            context: r.context,
            address: r.address.as_deref().map(|a| addresses.show(a)),
            rule: r.rule.clone(),
            original: keep(original),
            sent: keep(sent),
            cut: original.len() > MAX_KEPT_REPLY || sent.len() > MAX_KEPT_REPLY,
            shadow: r.shadow,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(rule: &str, n: u32) -> RewriteRecord {
        RewriteRecord {
            at: SystemTime::now(),
            listener: Arc::from("main"),
            session: Box::from(format!("s{n}").as_str()),
            client: IpAddr::from([192, 0, 2, 1]),
            context: CommandKind::Rcpt,
            address: None,
            rule: Arc::from(rule),
            original: Box::from(&b"530 x\r\n"[..]),
            sent: Box::from(&b"550 5.1.1 x\r\n"[..]),
            cut: false,
            shadow: false,
        }
    }

    #[test]
    fn the_table_keeps_the_newest_records_and_stays_bounded() {
        let recent = Recent::new();
        for n in 0..(RECENT_REWRITES as u32 * 3) {
            recent.push(record("r", n));
        }
        let s = recent.snapshot();
        assert_eq!(s.recent.len(), RECENT_REWRITES);
        let last = RECENT_REWRITES as u32 * 3 - 1;
        assert_eq!(&*s.recent[0].session, format!("s{last}"));
        assert_eq!(s.total, u64::from(last) + 1);
        assert_eq!(s.per_rule.len(), 1);
        assert_eq!(s.per_rule[0].1[MINUTES - 1], last + 1);
    }

    #[test]
    fn counts_per_minute_stay_bounded_and_count_every_rewrite() {
        let recent = Recent::new();
        let rules = MAX_RULES_PER_MINUTE * 3;
        for i in 0..rules {
            recent.push(record(&format!("rule-{i}"), 0));
            recent.push(record(&format!("rule-{i}"), 1));
        }
        let s = recent.snapshot();
        assert!(
            s.per_rule.len() <= MAX_RULES_PER_MINUTE,
            "{}",
            s.per_rule.len()
        );
        let counted: u32 = s.per_rule.iter().map(|(_, c)| c[MINUTES - 1]).sum();
        assert_eq!(counted as usize, rules * 2);
        assert!(s.per_rule.iter().any(|(r, _)| &**r == OTHER_RULES));
    }

    #[test]
    fn rules_are_ordered_by_their_hour_total() {
        let recent = Recent::new();
        recent.push(record("rare", 0));
        for n in 0..5 {
            recent.push(record("common", n));
        }
        let s = recent.snapshot();
        let order: Vec<&str> = s.per_rule.iter().map(|(r, _)| &**r).collect();
        assert_eq!(order, ["common", "rare"]);
    }

    #[test]
    fn an_off_recorder_keeps_nothing_and_replies_are_capped() {
        use crate::smtp::reply::parse_one;
        let long = format!("530 {}\r\n", "x".repeat(MAX_KEPT_REPLY * 2));
        let rewrite = Rewrite {
            context: CommandKind::Rcpt,
            address: Some(bytes::Bytes::from_static(b"alice@example.org")),
            rule: Arc::from("r"),
            rules_version: Arc::from("v"),
            original: parse_one(long.as_bytes()).unwrap().unwrap(),
            new: parse_one(b"550 5.1.1 no\r\n").unwrap().unwrap(),
            shadow: false,
        };
        let addresses = AddressLog::new(crate::config::LogAddresses::Domain, None);
        Recorder::off().rewrite("s", IpAddr::from([192, 0, 2, 1]), &rewrite, &addresses);
        let recent = Arc::new(Recent::new());
        let on = Recorder::new("main", recent.clone());
        on.rewrite("s", IpAddr::from([192, 0, 2, 1]), &rewrite, &addresses);
        let s = recent.snapshot();
        assert_eq!(s.recent.len(), 1);
        let r = &s.recent[0];
        assert_eq!(r.original.len(), MAX_KEPT_REPLY);
        assert!(r.cut);
        assert_eq!(r.address.as_deref(), Some("*@example.org"), "L3");
        assert_eq!(&*r.listener, "main");
    }

    /// Measured, not timed against a wall: recording while a page takes a
    /// snapshot every millisecond (a thousand times a refreshing browser)
    /// stays in the microseconds; the figures are printed.
    #[test]
    fn recording_stays_quick_while_pages_take_snapshots() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::Duration;
        let recent = Arc::new(Recent::new());
        for n in 0..RECENT_REWRITES as u32 {
            recent.push(record("warm", n));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (recent, stop) = (recent.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut snapshots = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(recent.snapshot());
                    snapshots += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                snapshots
            })
        };
        let rounds = 20_000usize;
        let mut took = Vec::with_capacity(rounds);
        for n in 0..rounds {
            let r = record(if n % 2 == 0 { "a" } else { "b" }, n as u32);
            let t = Instant::now();
            recent.push(r);
            took.push(t.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
        let snapshots = reader.join().unwrap();
        took.sort();
        let mean = took.iter().sum::<Duration>() / rounds as u32;
        let p999 = took[rounds * 999 / 1000];
        println!(
            "push: mean {mean:?}, p99.9 {p999:?}, worst {:?}; {snapshots} concurrent snapshots",
            took[rounds - 1]
        );
        // Generous: a shared 2-core machine, possibly a debug build.
        assert!(mean < Duration::from_micros(100), "{mean:?}");
    }
}
