//! Log audit (docs/protocol.md L1, L4) of the real binary at `RUST_LOG=trace`:
//! AUTH PLAIN, LOGIN and XOAUTH2 leave no credential in the log, in any
//! encoding the client sent it; an upstream reply carrying ESC, NUL and
//! invalid UTF-8 is logged escaped when a rule rewrites it.

mod common;

use common::{
    AUTH_PASSWORD, AUTH_USER, FakeUpstream, Replyfix, ServeOptions, SmtpClient, Step, TempDir,
    base64,
};

/// An OAuth bearer token that must never be logged.
const BEARER: &str = "ya29.Zm9vYmFyLXNlY3JldC10b2tlbg-S3CR3T";

fn xoauth2_response() -> String {
    base64(format!("user={AUTH_USER}\x01auth=Bearer {BEARER}\x01\x01").as_bytes())
}

/// Every form in which a credential crossed replyfix.
fn secrets() -> Vec<String> {
    vec![
        base64(format!("\0{AUTH_USER}\0{AUTH_PASSWORD}").as_bytes()),
        base64(AUTH_USER.as_bytes()),
        base64(AUTH_PASSWORD.as_bytes()),
        AUTH_PASSWORD.to_string(),
        xoauth2_response(),
        BEARER.to_string(),
        // A distinctive piece of the token, in case a log cut it.
        "S3CR3T".to_string(),
    ]
}

fn greeted(rf: &Replyfix) -> SmtpClient {
    let (mut c, greeting) = rf.connect_greeted();
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    c
}

#[test]
fn auth_plain_login_and_xoauth2_leave_no_credential_in_trace_logs_l1() {
    let token = xoauth2_response();
    let up = FakeUpstream::builder()
        .script(move |cmd| {
            if cmd.starts_with("AUTH XOAUTH2 ") {
                Step::reply("235 2.7.0 Accepted")
            } else if cmd == "AUTH XOAUTH2" {
                Step::reply("334 ")
            } else if cmd == token {
                Step::reply("235 2.7.0 Accepted")
            } else {
                Step::Default
            }
        })
        .start();
    let rf = Replyfix::start(up.addr, ServeOptions::default().rust_log("trace"));

    // PLAIN with an initial response.
    let mut c = greeted(&rf);
    let plain = base64(format!("\0{AUTH_USER}\0{AUTH_PASSWORD}").as_bytes());
    assert!(c.cmd(&format!("AUTH PLAIN {plain}")).starts_with("235"));
    assert!(c.cmd("QUIT").starts_with("221"));

    // LOGIN, two SASL lines.
    let mut c = greeted(&rf);
    assert!(c.cmd("AUTH LOGIN").starts_with("334"));
    assert!(c.cmd(&base64(AUTH_USER.as_bytes())).starts_with("334"));
    assert!(c.cmd(&base64(AUTH_PASSWORD.as_bytes())).starts_with("235"));
    assert!(c.cmd("QUIT").starts_with("221"));

    // XOAUTH2 with an initial response, then as a SASL line after 334.
    let mut c = greeted(&rf);
    assert!(
        c.cmd(&format!("AUTH XOAUTH2 {}", xoauth2_response()))
            .starts_with("235")
    );
    assert!(c.cmd("QUIT").starts_with("221"));
    let mut c = greeted(&rf);
    assert!(c.cmd("AUTH XOAUTH2").starts_with("334"));
    assert!(c.cmd(&xoauth2_response()).starts_with("235"));
    assert!(c.cmd("QUIT").starts_with("221"));

    rf.wait_for_records("session closed", 4);
    let auth = rf.wait_for_records("authentication", 4);
    let mechanisms: Vec<String> = auth
        .iter()
        .filter_map(|r| common::field(r, "mechanism"))
        .collect();
    assert_eq!(mechanisms, ["PLAIN", "LOGIN", "XOAUTH2", "XOAUTH2"]);
    let log = rf.log();
    // The process really ran with the most verbose filter.
    let environ = std::fs::read(format!("/proc/{}/environ", rf.pid())).expect("read environ");
    assert!(
        environ.split(|&b| b == 0).any(|v| v == b"RUST_LOG=trace"),
        "replyfix did not run with RUST_LOG=trace"
    );
    let found: Vec<String> = secrets()
        .into_iter()
        .filter(|s| log.contains(s.as_str()))
        .collect();
    assert!(found.is_empty(), "credentials in the log: {found:?}\n{log}");
}

#[test]
fn upstream_reply_with_esc_nul_and_invalid_utf8_is_logged_escaped_l4_w5() {
    let dir = TempDir::new("rules");
    let rules = dir.path().join("escape.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: remap-blocked\n    description: test\n    when:\n      code: 530\n      \
         text: 'blocked'\n    then:\n      remap: {code: 550, enhanced: \"5.7.1\"}\n",
    )
    .expect("write rules");
    let up = FakeUpstream::with_script(|cmd| {
        if cmd.starts_with("MAIL") {
            Step::Raw(b"530 5.7.1 blocked \x1b[31mred\x1b[0m nul\x00 bad\xff\xfe utf8\r\n".to_vec())
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default()
            .rust_log("trace")
            .yaml(&format!("rules: [\"{}\"]", rules.display())),
    );
    let mut c = greeted(&rf);
    let reply = c.cmd("MAIL FROM:<sender@example.test>");
    assert!(reply.starts_with("550 5.7.1 blocked"), "{reply:?}");
    assert!(c.cmd("QUIT").starts_with("221"));
    let rewrite = rf.wait_for_record("reply rewritten");
    let original = common::field(&rewrite, "original").expect("original field");
    assert!(
        original.contains("\\x1B[31mred\\x1B[0m nul\\x00 bad\\xFF\\xFE utf8"),
        "{original}"
    );
    rf.wait_for_record("session closed");
    // The bytes as written, not the harness's lossy copy: the child's
    // stderr is the log file; open it through /proc.
    let raw_log = std::fs::read(format!("/proc/{}/fd/2", rf.pid())).expect("read replyfix stderr");
    assert!(!raw_log.is_empty());
    for bad in [0x1b_u8, 0x00, 0xff, 0xfe] {
        assert!(!raw_log.contains(&bad), "raw byte {bad:#04x} in the log");
    }
}
