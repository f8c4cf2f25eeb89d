//! Whether this instance should get new connections: the two facts
//! `/readyz` reports (draining, F6; no upstream reachable, F2). Written by
//! the server and the session drivers, read by the admin endpoint; it never
//! decides anything itself.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this instance should get new connections, as `/readyz` reports
/// it. Shared as `Arc<Readiness>`; every method is a few atomic operations.
///
/// Not ready while draining (F6) or while every configured upstream is
/// known unreachable. An upstream counts as reachable until told otherwise,
/// so a fresh process is ready before its first session.
///
/// Whoever marks upstreams unreachable must also mark them reachable again
/// without waiting for client sessions: an instance that is not ready gets
/// no new connections from its load balancer, so session outcomes alone
/// would keep it out for good. Re-check unreachable upstreams in the
/// background (a TCP connect every few seconds) or let the mark expire.
#[derive(Debug)]
pub struct Readiness {
    draining: AtomicBool,
    /// Configured upstream names and whether each is known unreachable.
    upstreams: Vec<(String, AtomicBool)>,
}

/// Why `/readyz` answers 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// SIGTERM (or SIGINT) was received; sessions are draining (F6).
    Draining,
    /// Every configured upstream failed its last connection attempt.
    NoUpstreamReachable,
}

impl NotReady {
    /// The `/readyz` body text.
    pub const fn as_str(self) -> &'static str {
        match self {
            NotReady::Draining => "draining",
            NotReady::NoUpstreamReachable => "no upstream reachable",
        }
    }
}

impl Readiness {
    /// Readiness for these configured upstream names, all presumed
    /// reachable, not draining.
    pub fn new<I, S>(upstreams: I) -> Readiness
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Readiness {
            draining: AtomicBool::new(false),
            upstreams: upstreams
                .into_iter()
                .map(|name| (name.into(), AtomicBool::new(false)))
                .collect(),
        }
    }

    /// Drain started: `/readyz` answers 503 from now on (F6). There is no
    /// way back; a drained process exits.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether [`Readiness::set_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Records the outcome of the latest attempt to reach `upstream` (all of
    /// its servers, in failover order). Unknown names are ignored.
    pub fn set_upstream_reachable(&self, upstream: &str, reachable: bool) {
        if let Some((_, down)) = self.upstreams.iter().find(|(n, _)| n == upstream) {
            down.store(!reachable, Ordering::Release);
        }
    }

    /// Names of the upstreams currently known unreachable.
    pub fn unreachable_upstreams(&self) -> Vec<&str> {
        self.upstreams
            .iter()
            .filter(|(_, down)| down.load(Ordering::Acquire))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// `Ok` when ready; otherwise the first reason not to be.
    pub fn check(&self) -> Result<(), NotReady> {
        if self.is_draining() {
            return Err(NotReady::Draining);
        }
        let all_down = !self.upstreams.is_empty()
            && self
                .upstreams
                .iter()
                .all(|(_, down)| down.load(Ordering::Acquire));
        if all_down {
            return Err(NotReady::NoUpstreamReachable);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_without_upstreams_depends_only_on_draining() {
        let r = Readiness::new(Vec::<String>::new());
        assert_eq!(r.check(), Ok(()));
        r.set_upstream_reachable("nope", false);
        assert_eq!(r.check(), Ok(()));
        r.set_draining();
        assert_eq!(r.check(), Err(NotReady::Draining));
    }
}
