//! Fault injection, short form (PROTOCOL.md F1, F2, P3): Postfix
//! `smtp-sink` drops the connection (`-q`) or sends `421` and drops it
//! (`-Q`) after each of CONNECT, EHLO, MAIL, RCPT, DATA, `.` and QUIT, with
//! one message sent through the real `replyfix` binary each time.
//!
//! For every fault: the client never sees `250` after its end of data
//! unless the sink holds the message (F1: nothing lost, nothing invented);
//! every reply replyfix makes up itself is a 4xx the client retries on
//! (never 5xx); the session ends cleanly (one reply per command, then the
//! close). The long run (100,000 messages through these faults) is not
//! written yet; see docs/reliability.md.

mod common;

use common::{Replyfix, ServeOptions, SmtpSink, tool};

const FAULT_POINTS: [&str; 7] = ["CONNECT", "EHLO", "MAIL", "RCPT", "DATA", ".", "QUIT"];

/// The client's side of one session: each step's reply, until a reply that
/// is not 2xx/3xx or the close.
struct Outcome {
    replies: Vec<(String, String)>,
    end_of_data_reply: Option<String>,
}

fn run_session(rf: &Replyfix) -> Outcome {
    let mut c = rf.connect();
    c.set_read_timeout(std::time::Duration::from_secs(15));
    let mut replies = Vec::new();
    let mut end_of_data_reply = None;
    let steps: [(&str, &[u8]); 7] = [
        ("greeting", b""),
        ("EHLO", b"EHLO client.test\r\n"),
        ("MAIL", b"MAIL FROM:<sender@example.test>\r\n"),
        ("RCPT", b"RCPT TO:<rcpt@example.net>\r\n"),
        ("DATA", b"DATA\r\n"),
        (".", b"Subject: fault test\r\n\r\nbody\r\n.\r\n"),
        ("QUIT", b"QUIT\r\n"),
    ];
    for (step, bytes) in steps {
        if !bytes.is_empty() {
            c.send_lenient(bytes);
        }
        let reply = match c.try_read_reply() {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => break,
        };
        if step == "." {
            end_of_data_reply = Some(reply.clone());
        }
        let ok = reply.starts_with('2') || reply.starts_with('3');
        replies.push((step.to_string(), reply));
        if !ok {
            break;
        }
    }
    Outcome {
        replies,
        end_of_data_reply,
    }
}

#[test]
fn sink_faults_after_each_command_never_lose_or_invent_a_message_f1_f2_p3() {
    let Some(bin) = tool("smtp-sink") else {
        return;
    };
    let mut summary = Vec::new();
    for mode in ["-q", "-Q"] {
        for point in FAULT_POINTS {
            let sink = SmtpSink::start(&bin, &[mode, point]);
            let rf = Replyfix::start(
                sink.addr,
                ServeOptions::default()
                    .yaml("timeouts: {client_idle: 5s, upstream_reply: 5s, data_end_reply: 5s}"),
            );
            let out = run_session(&rf);
            let what = format!("smtp-sink {mode} {point}: {:?}", out.replies);
            let last = out
                .replies
                .last()
                .map(|(_, r)| r.clone())
                .unwrap_or_default();
            // One reply per step, ending with the fault's 4xx (or, for a
            // fault at QUIT, the whole session went through).
            if point == "QUIT" {
                assert!(
                    out.end_of_data_reply
                        .as_deref()
                        .is_some_and(|r| r.starts_with("250")),
                    "{what}"
                );
            } else {
                assert!(last.starts_with('4'), "the fault must end in a 4xx: {what}");
            }
            // Nothing replyfix invents is permanent: every non-2xx/3xx the
            // client saw is 4xx (the sink's own 421, or replyfix's
            // 421 4.4.x / 451 4.4.x).
            for (step, r) in &out.replies {
                assert!(!r.starts_with('5'), "5xx at {step}: {what}");
            }
            if mode == "-Q" && point != "QUIT" {
                assert!(
                    last.starts_with("421"),
                    "the sink's 421 is relayed (P3): {what}"
                );
            }
            // F1: a 250 after the end of data only when the sink has it.
            drop(rf);
            let accepted = out
                .end_of_data_reply
                .as_deref()
                .is_some_and(|r| r.starts_with("250"));
            let held = if accepted {
                sink.wait_for_dumps(1).len()
            } else {
                std::thread::sleep(std::time::Duration::from_millis(100));
                sink.dumps().len()
            };
            if accepted {
                assert_eq!(
                    held, 1,
                    "client saw 250 but the sink has no message: {what}"
                );
            }
            summary.push(format!(
                "{mode} {point}: client accepted {}, sink holds {held}, last reply {:?}",
                u8::from(accepted),
                last.trim_end()
            ));
        }
    }
    for line in summary {
        println!("{line}");
    }
}
