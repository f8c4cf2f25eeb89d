//! The demo's view of replyfix's log: a tracing layer that keeps each
//! rewrite record (target `replyfix::rewrite`) as `key=value` text, and
//! prints it once the walk-through is over (for the user's own client).
//!
//! It sees only what replyfix logs anyway (escaped, L4; addresses per
//! `log_addresses`, L3); never content or credentials (L1, L2).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::logging::quoted;

/// Records kept, oldest dropped past this.
const KEEP: usize = 1000;

/// The rewrite records seen so far; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Captured {
    records: Arc<Mutex<Vec<String>>>,
    echo: Arc<AtomicBool>,
}

impl Captured {
    /// Records seen so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True before the first record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `i` (0 is the first).
    pub fn get(&self, i: usize) -> Option<String> {
        self.lock().get(i).cloned()
    }

    /// Waits (bounded) until there are at least `n` records.
    pub async fn wait_for(&self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.len() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// From now on, print each new record to stdout as it arrives.
    pub fn echo(&self) {
        self.echo.store(true, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The layer that fills this.
    pub fn layer(&self) -> RewriteCapture {
        RewriteCapture { into: self.clone() }
    }
}

/// A tracing layer keeping `replyfix::rewrite` records.
pub struct RewriteCapture {
    into: Captured,
}

impl<S: Subscriber> Layer<S> for RewriteCapture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "replyfix::rewrite" {
            return;
        }
        let echo = self.into.echo.load(Ordering::Relaxed);
        let mut fields = Fields {
            text: String::new(),
            full: echo,
        };
        event.record(&mut fields);
        let line = fields.text;
        if echo {
            println!("logged: {line}");
        }
        let mut records = self.into.lock();
        if records.len() >= KEEP {
            records.remove(0);
        }
        records.push(line);
    }
}

/// The fields that say what happened (not session ids or versions). The
/// original and new reply are kept only when `full`: the walk-through shows
/// them beside the record already.
struct Fields {
    text: String,
    full: bool,
}

impl Fields {
    fn add(&mut self, field: &Field, value: &str) {
        let name = field.name();
        let wanted = match name {
            "message" | "rule" | "context" => true,
            "original" | "new" => self.full,
            _ => false,
        };
        if !wanted {
            return;
        }
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        if name == "message" {
            self.text.push_str(value);
        } else {
            self.text.push_str(&format!("{name}={}", quoted(value)));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.add(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn keeps_rewrite_records_and_ignores_the_rest() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(captured.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("unrelated");
            tracing::info!(
                target: "replyfix::rewrite",
                session = "s1",
                rule = "user-unknown",
                context = "rcpt",
                original = %"530 5.7.1 unknown",
                new = %"550 5.1.1 unknown",
                "reply rewritten"
            );
        });
        assert_eq!(captured.len(), 1);
        assert_eq!(
            captured.get(0).unwrap(),
            "reply rewritten rule=user-unknown context=rcpt"
        );
    }
}
