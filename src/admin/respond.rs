//! Routing one admin request to its response: the token check, the methods
//! each path allows, the probes (byte for byte as they always answered),
//! and the console pages with their security headers.
//!
//! It never keeps what a request carried; the explain form's body is read
//! within the body bounds and judged on a blocking thread so a megabyte of
//! bounce never holds up a runtime worker that SMTP sessions share.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::time::timeout;

use super::Shared;
use crate::console::explain_page::{self, ExplainRequest};
use crate::console::form::{self, FormError};
use crate::console::{Console, SCRIPT};
use crate::metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE};

/// What the admin endpoint sends: a whole body, with its length.
pub(super) type Answer = Response<Full<Bytes>>;

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The pages may load styles inline and the one script from this origin;
/// nothing else, no framing, forms only back here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The `WWW-Authenticate` challenge: browsers ask for a user name (any)
/// and a password (the token).
const CHALLENGE: &str = "Basic realm=\"replyfix console\", charset=\"UTF-8\"";

/// A response with the headers every admin response has, in this order:
/// `Content-Type`, `Content-Length`, `Cache-Control: no-store`,
/// `Connection: close` (the probes' exact bytes since the first version).
fn answer(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let body: Bytes = body.into();
    let mut r = Response::new(Full::new(body.clone()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn text(status: u16, body: &'static str) -> Answer {
    answer(status, TEXT, body)
}

/// A console page: [`answer`] plus headers that keep it from being framed,
/// sniffed or leaking its address.
fn page(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut r = answer(status, content_type, body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn not_allowed(allow: &'static str) -> Answer {
    let mut r = text(405, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The paths and what each is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Healthz,
    Readyz,
    Metrics,
    Status,
    Script,
    Explain,
    Unknown,
}

impl Route {
    fn of(path: &str, console: bool) -> Route {
        match path {
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            "/" if console => Route::Status,
            "/console.js" if console => Route::Script,
            "/explain" if console => Route::Explain,
            _ => Route::Unknown,
        }
    }

    fn is_probe(self) -> bool {
        matches!(self, Route::Healthz | Route::Readyz | Route::Metrics)
    }
}

/// The response to one request.
pub(super) async fn respond(request: Request<Incoming>, shared: &Shared) -> Answer {
    let endpoint = &shared.endpoint;
    let route = Route::of(request.uri().path(), endpoint.console.is_some());
    let guarded = match route {
        Route::Status | Route::Script | Route::Explain => true,
        r => r.is_probe() && endpoint.token_on_probes,
    };
    if guarded
        && let Some(token) = &endpoint.token
        && !authorized(request.headers(), token)
    {
        let mut r = text(401, "authentication required\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        );
        return r;
    }
    let method = request.method().clone();
    if route == Route::Explain {
        return match method {
            Method::GET | Method::HEAD | Method::POST => explain(request, shared).await,
            _ => not_allowed("GET, HEAD, POST"),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return not_allowed("GET, HEAD");
    }
    match route {
        Route::Healthz => text(200, "ok\n"),
        Route::Readyz => match endpoint.readiness.check() {
            Ok(()) => text(200, "ready\n"),
            Err(why) => answer(503, TEXT, format!("{}\n", why.as_str())),
        },
        Route::Metrics => {
            let openmetrics = request.headers().get_all(header::ACCEPT).iter().any(|v| {
                v.as_bytes()
                    .windows(b"application/openmetrics-text".len())
                    .any(|w| w == b"application/openmetrics-text")
            });
            if openmetrics {
                answer(200, OPENMETRICS_CONTENT_TYPE, endpoint.metrics.encode())
            } else {
                answer(
                    200,
                    PROMETHEUS_TEXT_CONTENT_TYPE,
                    endpoint.metrics.encode_prometheus_text(),
                )
            }
        }
        Route::Status => match &endpoint.console {
            Some(console) => page(200, HTML, console.status_page()),
            None => text(404, "not found\n"),
        },
        Route::Script => page(200, JAVASCRIPT, SCRIPT),
        Route::Explain | Route::Unknown => text(404, "not found\n"),
    }
}

/// `Authorization: Bearer TOKEN`, or `Basic` with TOKEN as the password
/// (RFC 6750 2.1, RFC 7617 2). Compared through SHA-256 digests in
/// constant time, so the comparison's duration says nothing of the token.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::AUTHORIZATION).iter().any(|v| {
        let Ok(v) = v.to_str() else { return false };
        let Some((scheme, credentials)) = v.trim().split_once(' ') else {
            return false;
        };
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            same_secret(credentials.as_bytes(), token.as_bytes())
        } else if scheme.eq_ignore_ascii_case("basic") {
            base64_decode(credentials).is_some_and(|pair| {
                pair.iter()
                    .position(|&b| b == b':')
                    .is_some_and(|i| same_secret(&pair[i + 1..], token.as_bytes()))
            })
        } else {
            false
        }
    })
}

fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Standard base64 with or without padding (RFC 4648 4); `None` when the
/// text is not base64.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const EITHER: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    EITHER.decode(text).ok()
}

/// `/explain`: the form, and the verdict for a query (`GET`) or a posted
/// form (`POST`, urlencoded, at most [`super::Bounds::max_body`] octets).
async fn explain(request: Request<Incoming>, shared: &Shared) -> Answer {
    let Some(console) = shared.endpoint.console.clone() else {
        return text(404, "not found\n");
    };
    let pairs = if request.method() == Method::POST {
        match read_form(request, shared).await {
            Ok(body) => form::decode(&body),
            Err(refusal) => return refusal,
        }
    } else {
        form::decode(request.uri().query().unwrap_or("").as_bytes())
    };
    let parsed = if pairs.is_empty() {
        Ok(None)
    } else {
        ExplainRequest::from_pairs(pairs).map(Some)
    };
    // CPU work (a bounce may be a megabyte of MIME): a bounded number at
    // once, each on a blocking thread.
    let Ok(_slot) = shared.explains.acquire().await else {
        return text(503, "busy\n");
    };
    let rendered = tokio::task::spawn_blocking(move || render_explain(&console, parsed)).await;
    match rendered {
        Ok((status, html)) => page(status, HTML, html),
        Err(_) => text(500, "internal error\n"),
    }
}

fn render_explain(
    console: &Arc<Console>,
    parsed: Result<Option<ExplainRequest>, FormError>,
) -> (u16, String) {
    let rules = console.rules();
    match parsed {
        Ok(request) => (
            200,
            explain_page::render(console, &rules, request.as_ref(), None),
        ),
        Err(e) => (400, explain_page::render(console, &rules, None, Some(&e))),
    }
}

/// The body of a form post, within the size and time bounds; the error is
/// the response to send instead.
async fn read_form(request: Request<Incoming>, shared: &Shared) -> Result<Bytes, Answer> {
    let bounds = shared.bounds;
    let urlencoded = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !urlencoded {
        return Err(text(
            415,
            "the explain form is sent as application/x-www-form-urlencoded\n",
        ));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_large = || {
        answer(
            413,
            TEXT,
            format!(
                "request body too large: at most {} octets\n",
                bounds.max_body
            ),
        )
    };
    if declared.is_some_and(|n| n > bounds.max_body as u64) {
        return Err(too_large());
    }
    let body = Limited::new(request.into_body(), bounds.max_body);
    match timeout(bounds.body_timeout, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(text(400, "bad request\n")),
        Err(_) => Err(text(408, "request body too slow\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(
            base64_decode("dTpzZWNyZXQ=").as_deref(),
            Some(&b"u:secret"[..])
        );
        assert_eq!(
            base64_decode("dTpzZWNyZXQ").as_deref(),
            Some(&b"u:secret"[..])
        );
        assert_eq!(base64_decode("a:b"), None);
    }

    #[test]
    fn the_token_is_accepted_as_bearer_or_basic_password_only() {
        let mut h = HeaderMap::new();
        let check = |h: &HeaderMap| authorized(h, "s3cret-token-0123456789");
        assert!(!check(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret-token-0123456789"),
        );
        assert!(check(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer s3cret-token-0123456789x"),
        );
        assert!(!check(&h));
        // "anyone:s3cret-token-0123456789"
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YW55b25lOnMzY3JldC10b2tlbi0wMTIzNDU2Nzg5"),
        );
        assert!(check(&h));
        // "s3cret-token-0123456789:x": the token as the user name is not enough.
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic czNjcmV0LXRva2VuLTAxMjM0NTY3ODk6eA=="),
        );
        assert!(!check(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Digest s3cret-token-0123456789"),
        );
        assert!(!check(&h));
    }
}
