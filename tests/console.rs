//! The admin console against a running proxy: the status page and the
//! explain form in a real browser (Debian's headless Chromium, driven from
//! the command line and through chromedriver's WebDriver API), and the
//! admin endpoint's bounds over plain HTTP (oversized form, slow request,
//! bad token, too many connections), the start-up warning for an exposed
//! console, and HTML escaping of everything from the network.
//!
//! Screenshots go to `target/tmp/console/` (the test's output folder). A
//! missing `chromium` or `chromedriver` fails under `CI=true` and is
//! reported as a skip otherwise.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The seed's ambiguous "configuration error" 530.
const CONFIG_ERROR_530: &str = "530 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.";

/// A misused 530 whose text is markup: the page must show it, never run it.
const MARKUP_530: &str = "530 5.7.1 <script>document.title='pwned'</script><img src=x onerror=alert(1)> The message cannot be delivered due to a configuration error on the server.";

/// Where this test run's screenshots go.
fn output_folder() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).expect("create the screenshot folder");
    dir
}

/// replyfix with the admin endpoint (and its console) on a free port, in
/// front of an upstream that answers every RCPT with `rcpt_reply`.
fn proxy_with_console(
    rcpt_reply: &'static str,
    admin_yaml: &str,
) -> (FakeUpstream, Replyfix, SocketAddr) {
    let up = FakeUpstream::with_script(move |line| {
        if line.starts_with("RCPT") {
            Step::reply(rcpt_reply)
        } else {
            Step::Default
        }
    });
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("admin address");
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml(&format!(
            "admin:\n  listen: \"{admin}\"\n{admin_yaml}logging:\n  log_addresses: domain"
        )),
    );
    wait_for_admin(admin);
    (up, rf, admin)
}

fn wait_for_admin(admin: SocketAddr) {
    poll(START_TIMEOUT, || TcpStream::connect(admin).ok().map(|_| ()))
        .expect("the admin endpoint listens");
}

/// One SMTP transaction up to RCPT through the proxy; returns the RCPT reply.
fn rcpt_through(rf: &Replyfix, to: &str) -> String {
    let (mut c, _) = rf.connect_greeted();
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<sender@example.com>");
    let reply = c.cmd(&format!("RCPT TO:<{to}>"));
    c.cmd("QUIT");
    reply
}

/// One raw HTTP exchange (the server closes after its answer): status line
/// and the whole response text.
fn http(admin: SocketAddr, request: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(admin).expect("connect to the admin endpoint");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    (text.lines().next().unwrap_or("").to_string(), text)
}

// ------------------------------------------------------------ chromium

/// `chromium --headless` with the flags this machine needs (no sandbox as
/// root, no background networking) and a fresh profile.
fn chromium_command(chromium: &Path, profile: &Path) -> Command {
    let mut cmd = Command::new(chromium);
    cmd.args(chromium_args(profile));
    cmd
}

fn chromium_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1100",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// The DOM of `url` after it loaded, as Chromium serialises it.
fn dump_dom(chromium: &Path, url: &str) -> String {
    let profile = TempDir::new("chromium");
    let out = run_bounded(
        chromium_command(chromium, profile.path())
            .arg("--dump-dom")
            .arg(url),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PNG of `url` at `path`.
fn screenshot(chromium: &Path, url: &str, path: &Path) {
    let profile = TempDir::new("chromium");
    let out = run_bounded(
        chromium_command(chromium, profile.path())
            .arg(format!("--screenshot={}", path.display()))
            .arg(url),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_png(path);
}

fn assert_png(path: &Path) {
    let png = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a screenshot ({} bytes)",
        path.display(),
        png.len()
    );
}

/// The text of the element with `id` in serialised HTML (tags removed),
/// or `None` when there is no such element.
fn element_text(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let open_end = at + html[at..].find('>')? + 1;
    let tag_start = html[..at].rfind('<')?;
    let tag: String = html[tag_start + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let close = format!("</{tag}>");
    // Good enough for the console's markup: no element nests its own tag
    // where this is used.
    let inner = &html[open_end..open_end + html[open_end..].find(&close)?];
    let mut text = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    Some(text)
}

#[test]
fn status_page_in_chromium_shows_a_rewrite_just_caused_through_the_relay() {
    let Some(chromium) = tool("chromium") else {
        return;
    };
    let (_up, rf, admin) = proxy_with_console(MARKUP_530, "");
    let reply = rcpt_through(&rf, "typo@example.org");
    assert!(reply.starts_with("554-5.0.0"), "rewritten: {reply}");
    rf.wait_for_record("reply rewritten");

    let url = format!("http://{admin}/");
    let dom = dump_dom(&chromium, &url);
    // The rewrite is in the table, with the rule, the command and the
    // address as the logs show it (domain only, the default).
    let row_at = dom
        .find("class=\"rewrite\"")
        .unwrap_or_else(|| panic!("no rewrite row in the DOM:\n{dom}"));
    let row = &dom[row_at..row_at + dom[row_at..].find("</tr>").expect("row end")];
    assert!(row.contains("config-error-ambiguous"), "{row}");
    assert!(row.contains(">rcpt<"), "{row}");
    assert!(row.contains("*@example.org"), "L3: {row}");
    assert!(!row.contains("typo@"), "L3: {row}");
    assert!(row.contains("554 5.0.0 replyfix:"), "the reply sent: {row}");
    // Markup from the upstream is text, not elements: the only script is
    // the console's own, the title is the console's, no image was made.
    assert!(
        row.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;img src=x"),
        "{row}"
    );
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");
    assert!(dom.contains("<script src=\"/console.js\"></script>"));
    assert!(!dom.contains("<img"), "{dom}");
    assert!(
        element_text(&dom, "rewrites-total").as_deref() == Some("1"),
        "{dom}"
    );
    assert!(dom.contains("<title>Status"), "{dom}");
    assert!(dom.contains("<svg id=\"chart\""), "{dom}");
    assert!(
        dom.contains("config-error-ambiguous: 1 this minute"),
        "{dom}"
    );

    let png = output_folder().join("status.png");
    screenshot(&chromium, &url, &png);
    eprintln!("screenshot: {}", png.display());
}

// ------------------------------------------------------------ WebDriver

/// A chromedriver process on a free port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: TempDir,
    profile: PathBuf,
}

impl Driver {
    fn start(chromedriver: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = TempDir::new("webdriver");
        let path = profile.path().to_path_buf();
        let d = Driver {
            child,
            port,
            _profile: profile,
            profile: path,
        };
        poll(START_TIMEOUT, || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        })
        .expect("chromedriver listens");
        d
    }

    /// One WebDriver command (W3C WebDriver, JSON over HTTP/1.1): the
    /// response's `value`, or a panic naming the command and the error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to chromedriver");
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        s.write_all(request.as_bytes())
            .expect("send to chromedriver");
        // chromedriver keeps the connection open: read the head, then
        // exactly Content-Length octets (a chunked answer would not parse,
        // and the panic would show it).
        let mut out = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        let (head, json) = loop {
            let n = s.read(&mut chunk).expect("read from chromedriver");
            assert!(n > 0, "{method} {path}: chromedriver closed early");
            out.extend_from_slice(&chunk[..n]);
            let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&out[..end]).into_owned();
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + length {
                let json = String::from_utf8_lossy(&out[end + 4..end + 4 + length]).into_owned();
                break (head, json);
            }
        };
        let v: Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: {head}\n{json}"));
        let status = head.lines().next().unwrap_or("");
        assert!(
            status.contains(" 200 "),
            "{method} {path}: {status}: {}",
            v["value"]
        );
        v["value"].clone()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session of a [`Driver`], closed on drop.
struct Browser<'a> {
    driver: &'a Driver,
    id: String,
}

impl<'a> Browser<'a> {
    fn open(driver: &'a Driver, chromium: &Path) -> Browser<'a> {
        let caps = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.display().to_string(),
                    "args": chromium_args(&driver.profile),
                }
            }}
        });
        let v = driver.call("POST", "/session", Some(caps));
        let id = v["sessionId"].as_str().expect("session id").to_string();
        let b = Browser { driver, id };
        b.call(
            "POST",
            "timeouts",
            Some(json!({"implicit": 10_000, "pageLoad": 60_000})),
        );
        b
    }

    fn call(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}/{what}", self.id), body)
    }

    fn go(&self, url: &str) {
        self.call("POST", "url", Some(json!({ "url": url })));
    }

    /// The element matching a CSS selector (waits up to the implicit wait).
    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call("POST", &format!("element/{e}/clear"), Some(json!({})));
        self.call(
            "POST",
            &format!("element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("element/{e}/click"), Some(json!({})));
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.call("GET", &format!("element/{e}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn source(&self) -> String {
        self.call("GET", "source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn screenshot(&self, path: &Path) {
        let v = self.call("GET", "screenshot", None);
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            v.as_str().expect("base64 PNG").trim(),
        )
        .expect("the screenshot is base64");
        std::fs::write(path, png).expect("write the screenshot");
        assert_png(path);
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.driver
                .call("DELETE", &format!("/session/{}", self.id), None)
        }));
    }
}

#[test]
fn explain_form_in_chromium_gives_the_verdict_for_the_configuration_error_530() {
    let Some(chromium) = tool("chromium") else {
        return;
    };
    let Some(chromedriver) = tool("chromedriver") else {
        return;
    };
    let (_up, _rf, admin) = proxy_with_console(CONFIG_ERROR_530, "");
    // What the command line says about the same reply and facts.
    let cli = run_bounded(
        Command::new(replyfix_bin()).args(["explain", "--command", "rcpt", CONFIG_ERROR_530]),
        Duration::from_secs(30),
    );
    let cli = String::from_utf8_lossy(&cli.stdout).into_owned();
    assert!(
        cli.contains("decision:    rule 'config-error-ambiguous': remap"),
        "{cli}"
    );

    let driver = Driver::start(&chromedriver);
    let browser = Browser::open(&driver, &chromium);
    browser.go(&format!("http://{admin}/explain"));
    browser.type_into("#text", CONFIG_ERROR_530);
    browser.click("#command option[value=rcpt]");
    browser.click("#submit");
    // The verdict, as the form's POST answered it.
    assert_eq!(browser.text("#rule"), "rule config-error-ambiguous: remap");
    let sees = browser.text("#client-sees");
    for line in cli
        .lines()
        .skip_while(|l| !l.starts_with("client sees:"))
        .skip(1)
    {
        assert!(sees.contains(line.trim()), "{line:?} not in {sees:?}");
    }
    assert!(
        sees.starts_with("554-5.0.0 The message cannot be delivered"),
        "{sees}"
    );
    assert!(
        browser
            .text("#meaning")
            .contains("unknown recipient address")
    );
    assert!(
        browser
            .text("#what-to-do")
            .contains("Check the recipient address")
    );
    assert!(browser.text("#original").contains("configuration error"));
    assert!(browser.text("#facts").contains("command rcpt"));
    let page = browser.source();
    assert!(
        page.contains("<option value=\"rcpt\" selected"),
        "the form keeps its facts"
    );
    let png = output_folder().join("explain.png");
    browser.screenshot(&png);
    eprintln!("screenshot: {}", png.display());

    // The same verdict from a link (GET with the query), as the status
    // page's "explain" links make.
    let url = format!(
        "http://{admin}/explain?command=rcpt&text={}",
        CONFIG_ERROR_530.replace(' ', "+")
    );
    browser.go(&url);
    assert_eq!(browser.text("#rule"), "rule config-error-ambiguous: remap");
}

#[test]
fn explain_form_reads_a_whole_bounce_in_chromium() {
    let Some(chromium) = tool("chromium") else {
        return;
    };
    let Some(chromedriver) = tool("chromedriver") else {
        return;
    };
    let (_up, _rf, admin) = proxy_with_console(CONFIG_ERROR_530, "");
    let bounce = "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.example.net.\r\n\r\n<typo@example.org>: host mail.example.org[192.0.2.25] said: 530 The message\r\n    cannot be delivered due to a configuration error on the server. Please\r\n    contact your Administrator. (in reply to RCPT TO command)\r\n";
    let driver = Driver::start(&chromedriver);
    let browser = Browser::open(&driver, &chromium);
    browser.go(&format!("http://{admin}/explain"));
    browser.type_into("#text", bounce);
    browser.click("input[name=kind][value=bounce]");
    browser.click("#submit");
    let summary = browser.text("#bounce-summary");
    assert!(summary.contains("1 failed recipient"), "{summary}");
    assert_eq!(browser.text(".recipient"), "typo@example.org");
    assert!(browser.text(".rule").contains("config-error-ambiguous"));
    assert!(browser.text(".original").starts_with("530 The message"));
    browser.screenshot(&output_folder().join("explain-bounce.png"));
}

// ------------------------------------------------------------ plain HTTP

#[test]
fn reply_markup_is_escaped_on_both_pages() {
    let (_up, rf, admin) = proxy_with_console(MARKUP_530, "");
    assert!(rcpt_through(&rf, "a@example.org").starts_with("554"));
    rf.wait_for_record("reply rewritten");
    let (status, page) = http(admin, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        page.contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>document"));
    assert!(!page.contains("<img"));
    let (_, page) = http(
        admin,
        format!(
            "GET /explain?text={} HTTP/1.1\r\nHost: x\r\n\r\n",
            MARKUP_530
                .replace(' ', "+")
                .replace('<', "%3C")
                .replace('>', "%3E")
                .replace('\'', "%27")
                .replace('=', "%3D")
        )
        .as_bytes(),
    );
    assert!(page.contains("id=\"verdict\""), "{page}");
    assert!(!page.contains("<script>document"), "{page}");
    assert!(!page.contains("<img"), "{page}");
}

#[test]
fn an_oversized_form_is_refused_with_413() {
    let (_up, _rf, admin) = proxy_with_console(CONFIG_ERROR_530, "");
    let body = format!("text={}", "a".repeat(replyfix::admin::MAX_BODY + 1));
    let request = format!(
        "POST /explain HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _) = http(admin, request.as_bytes());
    // The answer may be lost to a reset when the server closes while the
    // body is still arriving; what it must never be is a verdict.
    assert!(
        status.is_empty() || status == "HTTP/1.1 413 Payload Too Large",
        "{status}"
    );
    let (status, _) = http(
        admin,
        format!(
            "POST /explain HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            replyfix::admin::MAX_BODY + 1
        )
        .as_bytes(),
    );
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    // Just under the limit is judged.
    let body = format!("command=rcpt&text={}", CONFIG_ERROR_530.replace(' ', "+"));
    let (status, page) = http(
        admin,
        format!(
            "POST /explain HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        page.contains("rule config-error-ambiguous: remap"),
        "{page}"
    );
}

#[test]
fn a_slow_request_is_cut_at_the_head_deadline() {
    let (_up, _rf, admin) = proxy_with_console(CONFIG_ERROR_530, "");
    let mut s = TcpStream::connect(admin).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let started = Instant::now();
    // A byte every 500 ms: the head never completes within 5 s.
    let mut out = Vec::new();
    for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        if started.elapsed() > Duration::from_secs(12) {
            break;
        }
    }
    let _ = s.read_to_end(&mut out);
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408 "),
        "no page for a request that never finished: {text}"
    );
    assert!(
        took >= replyfix::admin::READ_TIMEOUT - Duration::from_millis(100)
            && took < Duration::from_secs(13),
        "{took:?}"
    );
}

#[test]
fn a_bad_token_gets_401_and_the_probes_stay_open() {
    let token = "0123456789abcdef0123456789abcdef";
    let (_up, _rf, admin) =
        proxy_with_console(CONFIG_ERROR_530, &format!("  token: \"{token}\"\n"));
    for path in ["/", "/explain"] {
        let (status, text) = http(
            admin,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{path}");
        assert!(
            text.contains("Www-Authenticate: Basic realm=\"replyfix console\""),
            "{text}"
        );
        let (status, _) = http(
            admin,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}0\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{path}");
        let (status, _) = http(
            admin,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
        // A browser's basic auth: any user name, the token as password.
        let basic = base64(format!("operator:{token}").as_bytes());
        let (status, _) = http(
            admin,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
    }
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(http_get(admin, probe).0, "HTTP/1.1 200 OK", "{probe}");
    }
}

#[test]
fn the_token_can_guard_the_probes_too() {
    let token = "0123456789abcdef0123456789abcdef";
    let (_up, _rf, admin) = proxy_with_console(
        CONFIG_ERROR_530,
        &format!("  token: \"{token}\"\n  token_on_probes: true\n"),
    );
    assert_eq!(http_get(admin, "/metrics").0, "HTTP/1.1 401 Unauthorized");
    let (status, _) = http(
        admin,
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[test]
fn too_many_connections_are_answered_503_and_the_endpoint_recovers() {
    let (_up, _rf, admin) = proxy_with_console(CONFIG_ERROR_530, "");
    // Hold every slot with a request head that never ends. On a loaded
    // machine a held connection may reach its head deadline (5 s) before
    // the extra one is answered; then the round proves nothing and is run
    // again.
    let mut verdict = None;
    for _round in 0..3 {
        let mut held = Vec::new();
        for _ in 0..replyfix::admin::MAX_CONNECTIONS {
            let mut s = TcpStream::connect(admin).expect("connect");
            s.write_all(b"GET /healthz HTTP/1.1\r\n")
                .expect("partial head");
            held.push(s);
        }
        std::thread::sleep(Duration::from_millis(300));
        let answer = http(admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let all_held = held.iter_mut().all(|s| {
            s.set_nonblocking(true).expect("nonblocking");
            let mut b = [0u8; 1];
            matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        drop(held);
        if all_held {
            verdict = Some(answer);
            break;
        }
    }
    let (status, text) = verdict.expect("every slot held at once in one of three rounds");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{text}");
    assert!(text.ends_with("too many connections\n"), "{text}");
    let back = poll(Duration::from_secs(10), || {
        (http_get(admin, "/healthz").0 == "HTTP/1.1 200 OK").then_some(())
    });
    assert!(
        back.is_some(),
        "the endpoint serves again once connections close"
    );
}

#[test]
fn a_console_beyond_loopback_without_a_token_is_warned_about_at_start() {
    let up = FakeUpstream::start();
    let open = format!("0.0.0.0:{}", free_port());
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml(&format!("admin:\n  listen: \"{open}\"")),
    );
    let warnings = rf.log();
    assert!(
        warnings.contains("the console (/ and /explain) is served on")
            && warnings.contains("without a token"),
        "{warnings}"
    );
    drop(rf);
    let guarded = format!("0.0.0.0:{}", free_port());
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml(&format!(
            "admin:\n  listen: \"{guarded}\"\n  token: \"0123456789abcdef0123456789abcdef\""
        )),
    );
    let log = rf.log();
    assert!(!log.contains("without a token"), "{log}");
    assert!(log.contains("not on a loopback address"), "{log}");
    assert!(
        !log.contains("0123456789abcdef0123456789abcdef"),
        "the token is never logged"
    );
}

#[test]
fn the_console_can_be_turned_off_and_the_probes_stay() {
    let (_up, _rf, admin) = proxy_with_console(CONFIG_ERROR_530, "  console: false\n");
    assert_eq!(http_get(admin, "/").0, "HTTP/1.1 404 Not Found");
    assert_eq!(http_get(admin, "/explain").0, "HTTP/1.1 404 Not Found");
    assert_eq!(http_get(admin, "/healthz").0, "HTTP/1.1 200 OK");
}

// ------------------------------------------------------------ configuration

/// The `admin` section's checks: each (admin YAML, expected error key or
/// none, warning keys), through the library's loader.
#[test]
fn the_admin_token_settings_are_checked_with_file_and_key() {
    let base = "listeners:\n  - name: main\n    address: 127.0.0.1:2525\n    upstream: up\nupstreams:\n  - name: up\n    servers: [\"127.0.0.1:25\"]\n";
    let long = "0123456789abcdef0123456789abcdef";
    let cases: Vec<(String, Option<&str>, Vec<&str>)> = vec![
        ("admin:\n  listen: 127.0.0.1:9725\n".into(), None, vec![]),
        (
            "admin:\n  listen: 0.0.0.0:9725\n".into(),
            None,
            vec!["admin.listen", "admin.console"],
        ),
        (
            format!("admin:\n  listen: 0.0.0.0:9725\n  token: \"{long}\"\n"),
            None,
            vec!["admin.listen"],
        ),
        (
            "admin:\n  listen: 0.0.0.0:9725\n  console: false\n".into(),
            None,
            vec!["admin.listen"],
        ),
        (
            "admin:\n  listen: 127.0.0.1:9725\n  token: \"short\"\n".into(),
            None,
            vec!["admin.token"],
        ),
        (
            "admin:\n  listen: 127.0.0.1:9725\n  token: \"  \"\n".into(),
            Some("admin.token"),
            vec![],
        ),
        (
            "admin:\n  listen: 127.0.0.1:9725\n  token: \"abc\\r\\ndefghijklmnopqrs\"\n".into(),
            Some("admin.token"),
            vec![],
        ),
        (
            "admin:\n  listen: 127.0.0.1:9725\n  token_on_probes: true\n".into(),
            Some("admin.token_on_probes"),
            vec![],
        ),
        (
            format!("admin:\n  listen: 127.0.0.1:9725\n  console: false\n  token: \"{long}\"\n"),
            None,
            vec!["admin.token"],
        ),
        (
            format!(
                "admin:\n  listen: 127.0.0.1:9725\n  console: false\n  token: \"{long}\"\n  token_on_probes: true\n"
            ),
            None,
            vec![],
        ),
    ];
    for (admin, error, warnings) in cases {
        let yaml = format!("{base}{admin}");
        match (replyfix::config::Config::from_yaml("t.yaml", &yaml), error) {
            (Ok(c), None) => {
                let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
                assert_eq!(keys, warnings, "{admin}");
                let shown = format!("{:?}", c.admin);
                assert!(
                    !shown.contains(long),
                    "Debug never shows the token: {shown}"
                );
            }
            (Err(e), Some(key)) => {
                assert_eq!(e.0.len(), 1, "{admin}: {e}");
                assert_eq!(e.0[0].key, key, "{admin}");
                assert!(e.0[0].line.is_some(), "located: {}", e.0[0]);
            }
            (got, want) => panic!("{admin}: expected error {want:?}, got {got:?}"),
        }
    }
}
