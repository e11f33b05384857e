//! The one place that builds HTTP clients, maps a response to a typed error and decides
//! retries, for every source that talks to Docker Hub.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use thiserror::Error;

/// Why a request failed, after retries.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("{what}: HTTP {status}{detail}; {hint}")]
    Status {
        what: String,
        status: u16,
        detail: String,
        hint: &'static str,
    },
    #[error("{what}: {cause}")]
    Transport { what: String, cause: String },
    #[error(
        "{what}: gave up after {retries} {} (the run's retry budget); last error: {last}",
        if *.retries == 1 { "retry" } else { "retries" }
    )]
    RetriesExhausted {
        what: String,
        retries: u32,
        last: String,
    },
}

/// Settings shared by the clients of every source.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub timeout: Duration,
    pub max_retries: u32,
    pub retry_base: Duration,
    /// The longest a 429 is waited for, whatever the server asks.
    pub max_wait: Duration,
    /// A PEM file of private CA certificates trusted besides the built-in roots, and the
    /// configuration key that named it (for error messages).
    pub ca_file: Option<(&'static str, PathBuf)>,
}

/// Builds the HTTP client for requests to `url`: TLS always verified (against the built-in
/// roots plus `ca_file`), no redirects (a token never follows a redirect to another
/// origin), a timeout per request and a user agent naming the tool.
///
/// The standard proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`)
/// are honoured, except for a loopback URL, which is always reached directly.
pub fn build_client(settings: &ClientSettings, url: &Url) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("hubreview/", env!("CARGO_PKG_VERSION")))
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none());
    if is_loopback(url) {
        builder = builder.no_proxy();
    }
    if let Some((key, path)) = &settings.ca_file {
        for certificate in read_ca_file(key, path)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
}

/// The certificates of a PEM file, or an error naming the file and the key to fix.
fn read_ca_file(key: &str, path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "`{key}` = `{}`: cannot read the CA file: {e}; point it at a readable PEM file",
            path.display()
        )
    })?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "`{key}` = `{}`: not a PEM certificate file ({}); give the CA certificate as \
             PEM (-----BEGIN CERTIFICATE-----)",
            path.display(),
            error_chain(&e)
        )
    })?;
    if certificates.is_empty() {
        return Err(format!(
            "`{key}` = `{}` holds no certificate; give the CA certificate as PEM \
             (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certificates)
}

/// Refuses a URL that is not https, unless it points at a loopback address, and one that
/// carries a user name or password.
pub fn check_url(key: &str, raw: &str) -> Result<Url, String> {
    if let Some(problem) = userinfo_problem(key, raw) {
        return Err(problem);
    }
    let url = Url::parse(raw.trim_end_matches('/'))
        .map_err(|e| format!("`{key}` = `{raw}` is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "`{key}` = `{raw}` uses plain http to a host that is not loopback; use https"
        )),
        other => Err(format!("`{key}` = `{raw}` has scheme `{other}`; use https")),
    }
}

/// The problem with a URL that carries credentials (`https://user:pass@host/`): they would
/// be sent and logged with it. The message names the key but never echoes the URL.
pub fn userinfo_problem(key: &str, raw: &str) -> Option<String> {
    let has_userinfo = match Url::parse(raw.trim()) {
        Ok(url) => !url.username().is_empty() || url.password().is_some(),
        // Unparsable: look for `@` in the authority, so the refusal does not echo it.
        Err(_) => raw
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
            .is_some_and(|authority| authority.contains('@')),
    };
    has_userinfo.then(|| {
        format!(
            "`{key}` holds a user name or password (`user:password@` before the host); \
             remove it: the URL is not echoed here, and the only credential sent is the \
             token from the environment"
        )
    })
}

/// Server-supplied text made safe to put in an error, a log line, the store or a report:
/// `secret` (the token) is replaced by `[redacted]`, and control characters (ANSI escapes,
/// line breaks, bidirectional overrides) are written as `\u{..}` escapes, so that nothing a
/// server sends can move a terminal's cursor or forge a log line.
pub fn server_text(text: &str, secret: &str) -> String {
    let redacted = redact(text, secret);
    let mut out = String::with_capacity(redacted.len());
    for c in redacted.chars() {
        if is_unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A message of ours for the terminal: control and invisible characters that came in
/// with data (an export's cell, a file name) are escaped as in [`server_text`], while the
/// message's own line breaks and indentation stay.
pub fn terminal_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && is_unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` with every occurrence of `secret` replaced by `[redacted]`.
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() || !text.contains(secret) {
        text.to_owned()
    } else {
        text.replace(secret, "[redacted]")
    }
}

/// Control characters and the invisible ones that reorder or hide text on a terminal.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether a status is worth retrying: 408, 429 and every 5xx but 501 (a feature the
/// server does not have will not appear on a retry).
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

/// What to check when a status is not retried.
pub fn hint_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => {
            "check `scim.page_size` (the server may refuse a `count` above its maximum: \
             lower it) and the URL"
        }
        401 => "check the token: it may be missing, expired or revoked",
        403 => "check that the token's organization has the Business plan and SCIM enabled",
        404 => "check the URL: Docker's SCIM base ends in /v2/scim/2.0",
        501 => "the server does not support this request; check the URL and the server",
        _ => "check the server's status",
    }
}

/// How long a 429 asks to wait: `Retry-After` as seconds or an HTTP date, else
/// `X-Retry-After` or `X-RateLimit-Reset` as a Unix time. `None` when no header says.
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };

    if let Some(value) = header("retry-after") {
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = DateTime::parse_from_rfc2822(value) {
            return Some(until(at.with_timezone(&Utc), now));
        }
    }
    for name in ["x-retry-after", "x-ratelimit-reset"] {
        if let Some(unix) = header(name).and_then(|v| v.parse::<i64>().ok()) {
            let at = DateTime::from_timestamp(unix, 0)?;
            return Some(until(at, now));
        }
    }
    None
}

fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Exponential backoff with jitter: base × 2^attempt, plus up to half of that again.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(10));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = exp.mul_f64(f64::from(nanos % 1000) / 2000.0);
    exp + jitter
}

/// The whole chain of an error, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression: an IdP cell holding ANSI escapes reached the terminal raw inside an
    // error message.
    #[test]
    fn terminal_text_escapes_what_came_with_data_and_keeps_line_breaks() {
        let text = "row 3: `\u{1b}[31mred\u{202e}`\n  - next";
        assert_eq!(
            terminal_text(text),
            "row 3: `\\u{1b}[31mred\\u{202e}`\n  - next"
        );
    }
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn retry_after_reads_every_header_form() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let in_ten = (now.timestamp() + 10).to_string();
        let cases = [
            (headers("retry-after", "7"), Some(7)),
            (
                headers("retry-after", "Mon, 30 Nov 2026 12:00:05 GMT"),
                Some(5),
            ),
            (headers("x-retry-after", &in_ten), Some(10)),
            (headers("x-ratelimit-reset", &in_ten), Some(10)),
            (headers("retry-after", "soon"), None),
            (HeaderMap::new(), None),
        ];
        for (h, want) in cases {
            assert_eq!(
                retry_after(&h, now).map(|d| d.as_secs()),
                want,
                "headers {h:?}"
            );
        }
    }

    #[test]
    fn a_reset_time_in_the_past_waits_nothing() {
        let now = Utc::now();
        let past = (now.timestamp() - 100).to_string();
        assert_eq!(
            retry_after(&headers("x-ratelimit-reset", &past), now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        assert!(check_url("scim.url", "http://127.0.0.1:8080/v2/scim/2.0").is_ok());
        assert!(check_url("scim.url", "http://localhost/v2/scim/2.0").is_ok());
        assert!(check_url("scim.url", "http://[::1]:9/x").is_ok());
        assert!(check_url("scim.url", "https://hub.docker.com/v2/scim/2.0").is_ok());
        let err = check_url("scim.url", "http://hub.docker.com/v2/scim/2.0").unwrap_err();
        assert!(err.contains("plain http"), "{err}");
        assert!(check_url("scim.url", "ftp://x").is_err());
        assert!(check_url("scim.url", "not a url").is_err());
    }

    #[test]
    fn a_url_with_a_user_name_or_password_is_refused_without_echoing_it() {
        for raw in [
            "https://user:hunter2-secret@hub.docker.com/v2/scim/2.0",
            "https://hunter2-secret@hub.docker.com/v2/scim/2.0",
            "http://user:hunter2-secret@127.0.0.1:8080/v2/scim/2.0",
            "https://user:hunter2 secret@hub.docker.com/v2/scim/2.0",
        ] {
            let err = check_url("scim.url", raw).unwrap_err();
            assert!(err.contains("`scim.url`"), "{err}");
            assert!(err.contains("user name or password"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        assert!(userinfo_problem("scim.url", "https://hub.docker.com/v2/scim/2.0").is_none());
        assert!(userinfo_problem("scim.url", "https://hub.docker.com/a@b").is_none());
    }

    #[test]
    fn server_text_redacts_the_token_and_escapes_control_characters() {
        let text = "token tok-123 is bad\x1b[2J\x1b[31mred\r\nFAKE LOG\u{202e}x\u{7}";
        let safe = server_text(text, "tok-123");
        assert_eq!(
            safe,
            "token [redacted] is bad\\u{1b}[2J\\u{1b}[31mred\\u{d}\\u{a}FAKE LOG\\u{202e}x\\u{7}"
        );
        assert_eq!(server_text("Müller ✓", "x-token"), "Müller ✓");
        assert_eq!(server_text("nothing", ""), "nothing");
    }

    #[test]
    fn one_retry_is_said_in_the_singular() {
        let err = |retries| {
            HttpError::RetriesExhausted {
                what: "GET /Users".into(),
                retries,
                last: "HTTP 503".into(),
            }
            .to_string()
        };
        assert!(err(1).contains("after 1 retry ("), "{}", err(1));
        assert!(err(2).contains("after 2 retries ("), "{}", err(2));
        assert!(err(0).contains("after 0 retries ("), "{}", err(0));
    }

    #[test]
    fn a_huge_retry_after_is_read_whole_for_the_caller_to_clamp() {
        let now = Utc::now();
        let huge = headers("retry-after", &u64::MAX.to_string());
        assert_eq!(retry_after(&huge, now), Some(Duration::from_secs(u64::MAX)));
        let overflow = headers("retry-after", "99999999999999999999999999");
        assert_eq!(retry_after(&overflow, now), None);
        let far = headers("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT");
        assert!(retry_after(&far, now).unwrap() > Duration::from_secs(3600));
    }

    #[test]
    fn only_rate_limits_timeouts_and_server_errors_but_501_are_retried() {
        for (status, retried) in [
            (408, true),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (504, true),
            (501, false),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(is_retryable(status), retried, "{status}");
        }
        assert!(hint_for(StatusCode::BAD_REQUEST).contains("scim.page_size"));
        assert!(hint_for(StatusCode::UNAUTHORIZED).contains("token"));
        assert!(hint_for(StatusCode::FORBIDDEN).contains("Business plan"));
        assert!(hint_for(StatusCode::NOT_FOUND).contains("URL"));
    }

    #[test]
    fn a_ca_file_that_is_missing_empty_or_not_pem_names_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let url = Url::parse("https://scim.example.com/v2/scim/2.0").unwrap();
        for (path, says) in [(&garbage, "no certificate"), (&missing, "cannot read")] {
            let settings = ClientSettings {
                timeout: Duration::from_secs(1),
                max_retries: 0,
                retry_base: Duration::from_millis(1),
                max_wait: Duration::from_secs(1),
                ca_file: Some(("scim.ca_file", path.clone())),
            };
            let err = build_client(&settings, &url).unwrap_err();
            assert!(err.contains("`scim.ca_file`"), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let base = Duration::from_millis(100);
        assert!(backoff(base, 0) >= base && backoff(base, 0) <= base * 3 / 2);
        assert!(backoff(base, 3) >= base * 8);
        assert!(backoff(base, 60) <= base * 1024 * 2);
    }
}
