//! What happens to one delivery attempt: which upstream it goes through and
//! which fault, drawn from a seeded PRNG so a run can be repeated; and the
//! test messages, each with its own id in a header.
//!
//! Every draw is a pure function of (seed, message, attempt), so the plans
//! do not depend on how the concurrent clients are scheduled.

/// `splitmix64`: small, fast, good enough to pick faults and offsets.
pub struct Rng(u64);

impl Rng {
    /// The generator for one (seed, message, purpose) triple.
    pub fn derive(seed: u64, message: u64, purpose: u64) -> Rng {
        let mut r = Rng(seed ^ message.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let _ = r.next();
        Rng(r.next() ^ purpose.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo) as u64) as usize
    }
}

/// The smtp-sink fault points (`-q`/`-Q POINT`), as in the short form.
pub const SINK_POINTS: [&str; 7] = ["CONNECT", "EHLO", "MAIL", "RCPT", "DATA", ".", "QUIT"];

/// Which replyfix listener the client connects to, hence which upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// The in-test upstream, which follows the attempt's [`UpstreamFault`].
    Fault,
    /// An upstream that accepts the connection and never greets
    /// (`timeouts.upstream_reply` on the greeting).
    GreetingStall,
    /// An upstream that resets the connection as soon as it accepts.
    GreetingReset,
    /// An upstream whose accept queue is full: the TCP connect never
    /// completes (`timeouts.upstream_connect`).
    ConnectStall,
    /// Postfix `smtp-sink` without faults.
    Sink,
    /// `smtp-sink -q POINT` (`quiet == true`: drop without a reply) or
    /// `-Q POINT` (`421`, then drop); `point` indexes [`SINK_POINTS`].
    SinkFault { quiet: bool, point: usize },
}

impl Route {
    /// Every route, in listener order.
    pub fn all() -> Vec<Route> {
        let mut all = vec![
            Route::Fault,
            Route::GreetingStall,
            Route::GreetingReset,
            Route::ConnectStall,
            Route::Sink,
        ];
        for quiet in [true, false] {
            for point in 0..SINK_POINTS.len() {
                all.push(Route::SinkFault { quiet, point });
            }
        }
        all
    }

    /// This route's position in [`Route::all`].
    pub fn index(self) -> usize {
        match self {
            Route::Fault => 0,
            Route::GreetingStall => 1,
            Route::GreetingReset => 2,
            Route::ConnectStall => 3,
            Route::Sink => 4,
            Route::SinkFault { quiet, point } => {
                5 + usize::from(!quiet) * SINK_POINTS.len() + point
            }
        }
    }

    pub fn is_sink(self) -> bool {
        matches!(self, Route::Sink | Route::SinkFault { .. })
    }
}

/// How an upstream (or a client) dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// Stops answering and closes its side (FIN), then reads to the end.
    Close,
    /// Resets the connection (RST: `SO_LINGER` 0, then close).
    Reset,
}

/// What the fault upstream does instead of answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Kill(Kill),
    /// Never answers; reads until replyfix gives up and closes.
    Stall,
    /// `421 4.3.2`, then closes.
    Reply421,
}

/// The commands the fault upstream can fail at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Ehlo,
    Mail,
    Rcpt,
    Data,
    Quit,
}

/// The fault upstream's part of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFault {
    None,
    /// Acts instead of answering this command.
    AtCommand(Cmd, Action),
    /// Kills the connection once it has read `offset` octets of content (the
    /// end of data lies beyond): nothing is stored.
    MidData {
        offset: usize,
        kill: Kill,
    },
    /// Reads the whole message and **stores it**, then acts instead of
    /// answering `250`: the classic cause of duplicates.
    AfterStore(Action),
    /// Reads the whole message, does not store it, answers `451`.
    TempFail,
    /// Stores, answers `250`, then dies before `QUIT`.
    After250(Kill),
}

/// The client's part of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFault {
    None,
    /// Sends `offset` octets of its content (never the whole end of data),
    /// then dies.
    KillMidData {
        offset: usize,
        kill: Kill,
    },
}

/// One attempt's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub route: Route,
    pub upstream: UpstreamFault,
    pub client: ClientFault,
    /// The client sends its content in two writes, split here, with a
    /// short pause between (as a real client's content arrives in pieces):
    /// an upstream killed before the split is then seen by replyfix while
    /// the content is still coming (F2's drain), not after its end.
    pub pause_at: Option<usize>,
    /// The client sends MAIL, RCPT and DATA in one write (RFC 2920), so
    /// several commands are outstanding when the upstream fails (P1, P3).
    pub pipeline: bool,
}

fn kill_name(k: Kill) -> &'static str {
    match k {
        Kill::Close => "close",
        Kill::Reset => "reset",
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Kill(k) => kill_name(k),
        Action::Stall => "stall",
        Action::Reply421 => "421",
    }
}

impl Plan {
    pub const CLEAN: Plan = Plan {
        route: Route::Fault,
        upstream: UpstreamFault::None,
        client: ClientFault::None,
        pause_at: None,
        pipeline: false,
    };

    /// Draws the plan of one attempt: about half the attempts carry no
    /// fault; the final attempt (`last`) never does, so every message is
    /// eventually delivered. `wire_len` is the content's length on the wire
    /// (dot-stuffed, with the end of data), for the random offsets.
    pub fn draw(rng: &mut Rng, wire_len: usize, last: bool) -> Plan {
        let pause_at = (rng.below(2) == 0).then(|| offset(rng, wire_len).max(1));
        let pipeline = rng.below(3) == 0;
        let plan = Plan::draw_faults(rng, wire_len, last);
        Plan {
            pause_at,
            pipeline,
            ..plan
        }
    }

    fn draw_faults(rng: &mut Rng, wire_len: usize, last: bool) -> Plan {
        let clean_on = |route| Plan {
            route,
            ..Plan::CLEAN
        };
        let on_fault = |upstream| Plan {
            upstream,
            ..Plan::CLEAN
        };
        if last {
            return clean_on(if rng.below(3) == 0 {
                Route::Sink
            } else {
                Route::Fault
            });
        }
        let kill = |rng: &mut Rng| {
            if rng.below(2) == 0 {
                Kill::Close
            } else {
                Kill::Reset
            }
        };
        let action = |rng: &mut Rng| match rng.below(4) {
            0 => Action::Kill(Kill::Close),
            1 => Action::Kill(Kill::Reset),
            2 => Action::Stall,
            _ => Action::Reply421,
        };
        let roll = rng.below(1000);
        match roll {
            0..300 => clean_on(Route::Fault),
            300..450 => clean_on(Route::Sink),
            450..550 => {
                let cmd =
                    [Cmd::Ehlo, Cmd::Mail, Cmd::Rcpt, Cmd::Data, Cmd::Quit][rng.below(5) as usize];
                on_fault(UpstreamFault::AtCommand(cmd, action(rng)))
            }
            550..650 => on_fault(UpstreamFault::MidData {
                offset: offset(rng, wire_len),
                kill: kill(rng),
            }),
            650..730 => on_fault(UpstreamFault::AfterStore(action(rng))),
            730..745 => on_fault(UpstreamFault::TempFail),
            745..760 => on_fault(UpstreamFault::After250(kill(rng))),
            760..860 => Plan {
                route: if roll < 830 {
                    Route::Fault
                } else {
                    Route::Sink
                },
                upstream: UpstreamFault::None,
                client: ClientFault::KillMidData {
                    offset: offset(rng, wire_len),
                    kill: kill(rng),
                },
                pause_at: None,
                pipeline: false,
            },
            860..960 => {
                let v = rng.below(2 * SINK_POINTS.len() as u64) as usize;
                clean_on(Route::SinkFault {
                    quiet: v < SINK_POINTS.len(),
                    point: v % SINK_POINTS.len(),
                })
            }
            960..975 => clean_on(Route::GreetingStall),
            975..985 => clean_on(Route::GreetingReset),
            _ => clean_on(Route::ConnectStall),
        }
    }

    /// A name for the report (offsets left out, so plans group).
    pub fn label(&self) -> String {
        let up = match self.route {
            Route::Fault => match self.upstream {
                UpstreamFault::None => "fault upstream, no fault".to_string(),
                UpstreamFault::AtCommand(cmd, Action::Stall) => {
                    format!("upstream stall at {cmd:?} (upstream_reply)")
                }
                UpstreamFault::AtCommand(cmd, a) => {
                    format!("upstream {} at {cmd:?}", action_name(a))
                }
                UpstreamFault::MidData { kill, .. } => {
                    format!("upstream {} mid-DATA", kill_name(kill))
                }
                UpstreamFault::AfterStore(Action::Stall) => {
                    "upstream stores, then stalls (data_end_reply)".to_string()
                }
                UpstreamFault::AfterStore(a) => {
                    format!("upstream stores, then {} instead of 250", action_name(a))
                }
                UpstreamFault::TempFail => "upstream 451 after data, not stored".to_string(),
                UpstreamFault::After250(kill) => {
                    format!("upstream 250, then {} before QUIT", kill_name(kill))
                }
            },
            Route::GreetingStall => "upstream never greets (upstream_reply)".to_string(),
            Route::GreetingReset => "upstream resets at connect".to_string(),
            Route::ConnectStall => "upstream connect hangs (upstream_connect)".to_string(),
            Route::Sink => "smtp-sink, no fault".to_string(),
            Route::SinkFault { quiet, point } => format!(
                "smtp-sink {} {}",
                if quiet { "-q" } else { "-Q" },
                SINK_POINTS[point]
            ),
        };
        match self.client {
            ClientFault::None => up,
            ClientFault::KillMidData { kill, .. } => format!(
                "client {} mid-DATA ({})",
                kill_name(kill),
                if self.route.is_sink() {
                    "smtp-sink"
                } else {
                    "fault upstream"
                }
            ),
        }
    }

    /// True when this plan can leave a stored message behind without the
    /// client hearing `250`: the upstream stored it and then did not say
    /// so (F2: replyfix answers `451` and logs a possible duplicate, or
    /// relays the upstream's `421`).
    pub fn may_duplicate(&self) -> bool {
        matches!(self.client, ClientFault::None)
            && (matches!(self.upstream, UpstreamFault::AfterStore(_))
                || matches!(self.route, Route::SinkFault { point: 5, .. }))
    }
}

/// A content offset in `0..wire_len`: uniform, or (three times in ten)
/// within the last five octets, where the end of data `CRLF.CRLF` is
/// partly sent (D1: a partial end is never an end).
fn offset(rng: &mut Rng, wire_len: usize) -> usize {
    if rng.below(10) < 3 {
        wire_len - 1 - rng.range(0, 5.min(wire_len))
    } else {
        rng.range(0, wire_len)
    }
}

/// FNV-1a, 64 bits: the body checksum the fault upstream verifies.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// The message body for message `msg`: CRLF lines, some starting with `.`
/// (dot-stuffed on the wire), no bare CR/LF/NUL (D2); 200 octets to 96 KB.
pub fn body(seed: u64, msg: u64) -> Vec<u8> {
    let mut rng = Rng::derive(seed, msg, 0xB0D7);
    let size = match rng.below(100) {
        0..55 => rng.range(200, 2_000),
        55..95 => rng.range(2_000, 16_000),
        _ => rng.range(16_000, 96_000),
    };
    let mut out = Vec::with_capacity(size + 160);
    while out.len() < size {
        match rng.below(20) {
            0 => out.extend_from_slice(b".\r\n"),
            1 => out.extend_from_slice(b"..two leading dots\r\n"),
            2 => out.extend_from_slice(b".leading dot\r\n"),
            3 => out.extend_from_slice(b"\r\n"),
            _ => {
                for _ in 0..rng.below(120) {
                    out.push(b'a' + rng.below(26) as u8);
                }
                out.extend_from_slice(b" end\r\n");
            }
        }
    }
    out
}

/// The whole message of one attempt: the ids (`X-Fault-Id` names the
/// message, `X-Fault-Session` the attempt) and the body's length and
/// checksum, then the body.
pub fn message(msg: u64, sid: u64, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "X-Fault-Id: m{msg}\r\nX-Fault-Session: s{sid}\r\nX-Fault-Body: {} {:016x}\r\n\
         From: <sender@example.test>\r\nTo: <m{msg}@example.net>\r\n\
         Subject: fault injection m{msg}\r\n\r\n",
        body.len(),
        fnv1a(body)
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
