//! The Hub step: reads the organization's members (with their last sign-in and last
//! Docker Desktop use, where the organization has Insights) and its pending invites through
//! the Docker Hub API, for the seats SCIM cannot see.
//!
//! It exchanges `hub.username` and `HUBREVIEW_HUB_TOKEN` for a bearer token
//! (`POST /v2/auth/token`), then only sends `GET`: `/v2/orgs/{org}/members`, page after
//! page, and `/v2/orgs/{org}/invites`. A `next` link is followed only while it stays on
//! the configured origin, so the bearer never reaches another host. Members and invites
//! each get their own completeness: every page arrived, and the unique members add up to
//! the announced `count`. A failure is never an error of the run: it comes back as an
//! incomplete listing with its reason, and the findings that need it are not evaluated.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::{debug, info, instrument, warn};

use crate::activity::{self, Member, MemberSource, Seen};
use crate::config::{HubConfig, ScimConfig};
use crate::http::{self, ClientSettings, HttpError};
use crate::scim::Completeness;

/// The most members the members API serves on one page.
pub const MAX_PAGE: u32 = 100;

/// Pages followed at most, so a server that links pages in a circle cannot keep a run busy.
const MAX_PAGES: u32 = 10_000;

/// One pending invite of the organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invite {
    /// Its position in the listing, from 1.
    pub position: usize,
    pub id: Option<String>,
    /// The invited email address or Docker ID.
    pub invitee: Option<String>,
    pub inviter: Option<String>,
    pub team: Option<String>,
    pub role: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

impl Invite {
    /// The invitee when it is an email address.
    pub fn email(&self) -> Option<&str> {
        self.invitee.as_deref().filter(|i| i.contains('@'))
    }

    /// The invitee when it is a Docker ID.
    pub fn docker_id(&self) -> Option<&str> {
        self.invitee.as_deref().filter(|i| !i.contains('@'))
    }
}

/// One listing (members or invites) as read, and whether it can be trusted.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    /// Each item with the object as received.
    pub items: Vec<(T, String)>,
    /// The `count` the server announced, if it did.
    pub count: Option<u64>,
    pub pages: u32,
    pub completeness: Completeness,
}

impl<T> Listing<T> {
    /// No listing read.
    pub fn empty() -> Listing<T> {
        Listing::failed("not read".into())
    }

    /// A listing as the store gives it back (without the raw objects).
    pub fn stored(
        items: Vec<T>,
        count: Option<u64>,
        pages: u32,
        completeness: Completeness,
    ) -> Listing<T> {
        Listing {
            items: items.into_iter().map(|i| (i, String::new())).collect(),
            count,
            pages,
            completeness,
        }
    }

    /// The items, without the raw objects.
    pub fn values(&self) -> Vec<&T> {
        self.items.iter().map(|(i, _)| i).collect()
    }

    fn failed(reason: String) -> Listing<T> {
        Listing {
            items: Vec::new(),
            count: None,
            pages: 0,
            completeness: Completeness::Incomplete { reason },
        }
    }
}

/// What one read of the Hub API brought back.
#[derive(Debug, Clone)]
pub struct HubFetched {
    /// The configured origin, e.g. `https://hub.docker.com`.
    pub url: String,
    pub org: String,
    pub members: Listing<Member>,
    pub invites: Listing<Invite>,
}

/// What is wrong with the `[hub]` keys.
pub fn config_problems(cfg: &HubConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = origin(cfg) {
        problems.push(e);
    }
    match (&cfg.org, &cfg.username) {
        (Some(_), None) => problems.push(
            "`hub.org` is set but `hub.username` is not: set both (the Docker ID the \
             HUBREVIEW_HUB_TOKEN belongs to), or neither to skip the Hub API"
                .into(),
        ),
        (None, Some(_)) => problems.push(
            "`hub.username` is set but `hub.org` is not: set both (the organization's \
             name), or neither to skip the Hub API"
                .into(),
        ),
        _ => {}
    }
    for (key, value) in [("hub.org", &cfg.org), ("hub.username", &cfg.username)] {
        if let Some(v) = value
            && (v.trim().is_empty() || v.contains(['/', '?', '#']) || v.trim() != v)
        {
            problems.push(format!(
                "`{key}` = `{v}`: must be a Docker Hub name, without spaces, `/`, `?` or `#`"
            ));
        }
    }
    if !(1..=MAX_PAGE).contains(&cfg.page_size) {
        problems.push(format!(
            "`hub.page_size` = {}: must be 1 to {MAX_PAGE} (the members API pages at most \
             {MAX_PAGE})",
            cfg.page_size
        ));
    }
    problems
}

/// The configured origin: scheme, host and port only (https, or http to loopback).
fn origin(cfg: &HubConfig) -> Result<Url, String> {
    let url = http::check_url("hub.url", &cfg.url)?;
    if url.path() != "/" && !url.path().is_empty() {
        return Err(format!(
            "`hub.url` = `{}` has a path; give the origin only, e.g. `https://hub.docker.com`",
            cfg.url
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(format!(
            "`hub.url` = `{}`: give the origin only, without credentials or a query",
            cfg.url
        ));
    }
    Ok(url)
}

/// What the Hub steps need from the configuration: the origin, the org, the username,
/// and a client built with the `[scim]` timeouts, retries and CA file.
fn session_parts(
    cfg: &HubConfig,
    scim: &ScimConfig,
) -> Result<(Url, String, String, ClientSettings, reqwest::Client), String> {
    let origin = origin(cfg)?;
    let (Some(org), Some(username)) = (cfg.org.clone(), cfg.username.clone()) else {
        return Err("the Hub API is not configured: set `hub.org` and `hub.username`".into());
    };
    let settings = ClientSettings {
        timeout: Duration::from_secs(scim.timeout_secs.max(1)),
        max_retries: scim.max_retries,
        retry_base: Duration::from_millis(scim.retry_base_ms),
        max_wait: Duration::from_secs(scim.retry_max_wait_secs),
        ca_file: scim.ca_file.clone().map(|path| ("scim.ca_file", path)),
    };
    let client = http::build_client(&settings, &origin)?;
    Ok((origin, org, username, settings, client))
}

/// Checks the configuration without sending anything.
pub fn check(cfg: &HubConfig, scim: &ScimConfig) -> Result<(), String> {
    session_parts(cfg, scim).map(|_| ())
}

/// Reads every member and every invite of `hub.org`. Only a bad configuration returns
/// `Err`; every failure of the server comes back as an incomplete listing with its reason.
#[instrument(skip_all, fields(url = %cfg.url, org = ?cfg.org))]
pub async fn fetch(cfg: &HubConfig, scim: &ScimConfig, token: &str) -> Result<HubFetched, String> {
    let (origin, org, username, settings, client) = session_parts(cfg, scim)?;
    let mut session = Session {
        client,
        origin: origin.clone(),
        secret: token.to_owned(),
        bearer: String::new(),
        settings,
        retries_used: 0,
    };
    let url = origin.as_str().trim_end_matches('/').to_owned();

    if let Err(e) = session.sign_in(&username).await {
        let reason = format!("signing in to the Hub API failed: {e}");
        warn!(%reason, "Hub members and invites not read");
        return Ok(HubFetched {
            url,
            org,
            members: Listing::failed(reason.clone()),
            invites: Listing::failed(reason),
        });
    }

    let mut first = session.org_url(&org, "members")?;
    first
        .query_pairs_mut()
        .append_pair("page", "1")
        .append_pair("page_size", &cfg.page_size.to_string());
    let members = session.list(first, "members", true, parse_member).await;
    let members = dedupe_members(members);
    log_listing("members", &members);

    let invites = session.org_url(&org, "invites")?;
    let invites = session.list(invites, "invites", false, parse_invite).await;
    log_listing("invites", &invites);

    Ok(HubFetched {
        url,
        org,
        members,
        invites,
    })
}

/// `hubreview doctor`: signs in and reads one page of members. Returns what it saw.
pub async fn probe(cfg: &HubConfig, scim: &ScimConfig, token: &str) -> Result<String, String> {
    let (origin, org, username, settings, client) = session_parts(cfg, scim)?;
    let mut session = Session {
        client,
        origin,
        secret: token.to_owned(),
        bearer: String::new(),
        settings,
        retries_used: 0,
    };
    session
        .sign_in(&username)
        .await
        .map_err(|e| format!("signing in failed: {e}"))?;
    let mut url = session.org_url(&org, "members")?;
    url.query_pairs_mut()
        .append_pair("page", "1")
        .append_pair("page_size", "1");
    let body = session
        .request(Method::GET, &url, "GET /v2/orgs/{org}/members", None)
        .await
        .map_err(|e| e.to_string())?;
    let page = parse_page(&body)?;
    Ok(match page.count {
        Some(n) => format!("signed in as `{username}`; `{org}` has {n} members"),
        None => format!("signed in as `{username}`; `{org}` lists its members"),
    })
}

fn log_listing<T>(what: &str, listing: &Listing<T>) {
    match &listing.completeness {
        Completeness::Complete => info!(
            items = listing.items.len(),
            pages = listing.pages,
            "Hub {what} complete"
        ),
        Completeness::Incomplete { reason } => {
            warn!(items = listing.items.len(), %reason, "Hub {what} incomplete")
        }
    }
}

/// One member once: the same member on two pages (the listing moved while it was read) is
/// kept once, and the count is checked against the unique members.
fn dedupe_members(mut listing: Listing<Member>) -> Listing<Member> {
    let mut seen = HashSet::new();
    listing.items.retain(|(m, _)| {
        let key = m
            .username
            .as_deref()
            .or(m.email.as_deref())
            .map(str::to_lowercase);
        key.is_none_or(|k| seen.insert(k))
    });
    for (i, (m, _)) in listing.items.iter_mut().enumerate() {
        m.row = i + 1;
    }
    if listing.completeness.is_complete()
        && let Some(count) = listing.count
        && count != listing.items.len() as u64
    {
        listing.completeness = Completeness::Incomplete {
            reason: format!(
                "{} unique members do not add up to the count {count} the members API \
                 announced",
                listing.items.len()
            ),
        };
    }
    listing
}

/// Sends the requests of one read, under one retry budget.
struct Session {
    client: reqwest::Client,
    origin: Url,
    /// The access token, sent only in the sign-in body.
    secret: String,
    /// The bearer token the sign-in gave.
    bearer: String,
    settings: ClientSettings,
    retries_used: u32,
}

/// How one attempt at a request ended.
enum Retry {
    After(Duration, String),
    Backoff(String),
    Fatal(HttpError),
}

/// One page of a listing.
#[derive(Debug)]
struct Page {
    count: Option<u64>,
    next: Option<String>,
    results: Vec<Value>,
    /// The body was a bare array, with no paging information.
    bare: bool,
}

impl Session {
    fn org_url(&self, org: &str, what: &str) -> Result<Url, String> {
        let mut url = self.origin.clone();
        url.path_segments_mut()
            .map_err(|_| "`hub.url` cannot be a base URL".to_owned())?
            .clear()
            .extend(["v2", "orgs", org, what]);
        Ok(url)
    }

    /// Exchanges the username and access token for a bearer token.
    async fn sign_in(&mut self, username: &str) -> Result<(), HttpError> {
        let mut url = self.origin.clone();
        url.set_path("/v2/auth/token");
        let body = json!({"identifier": username, "secret": self.secret});
        let what = "POST /v2/auth/token";
        let text = self.request(Method::POST, &url, what, Some(&body)).await?;
        let token = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.get("access_token")
                    .or_else(|| v.get("token"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .filter(|t| !t.trim().is_empty());
        match token {
            Some(token) => {
                self.bearer = token;
                debug!("signed in to the Hub API");
                Ok(())
            }
            None => Err(HttpError::Transport {
                what: what.into(),
                cause: "the answer holds no `access_token`; check `hub.url`".into(),
            }),
        }
    }

    /// Every page of a listing from `first`, following `next` within the origin. A body
    /// that is a bare array is paged by `page` until an empty page when `paged`, else taken
    /// as the whole list.
    async fn list<T>(
        &mut self,
        first: Url,
        what: &str,
        paged: bool,
        parse: fn(&Map<String, Value>, usize) -> Result<T, String>,
    ) -> Listing<T> {
        let mut listing = Listing {
            items: Vec::new(),
            count: None,
            pages: 0,
            completeness: Completeness::Complete,
        };
        let mut visited = HashSet::new();
        let mut raw_seen = HashSet::new();
        let mut url = first;
        let stop = loop {
            if listing.pages >= MAX_PAGES {
                break Some(format!("more than {MAX_PAGES} pages of {what}"));
            }
            if !visited.insert(url.to_string()) {
                break Some(format!(
                    "page {} of {what} links back to a page already read",
                    listing.pages + 1
                ));
            }
            let label = format!("GET {what} page {}", listing.pages + 1);
            let body = match self.request(Method::GET, &url, &label, None).await {
                Ok(body) => body,
                Err(e) => break Some(format!("page {} failed: {e}", listing.pages + 1)),
            };
            let page = match parse_page(&body) {
                Ok(page) => page,
                Err(e) => break Some(format!("page {}: {e}", listing.pages + 1)),
            };
            listing.pages += 1;
            match (listing.count, page.count) {
                (None, now) => listing.count = now,
                (Some(before), Some(now)) if before != now => {
                    break Some(format!(
                        "the {what} count changed from {before} to {now} while it was read; \
                         take the snapshot again later"
                    ));
                }
                _ => {}
            }
            let received = page.results.len();
            let mut failed = None;
            for (i, item) in page.results.into_iter().enumerate() {
                let position = listing.items.len() + 1;
                let parsed = item
                    .as_object()
                    .ok_or_else(|| "not a JSON object".to_owned())
                    .and_then(|o| parse(o, position));
                match parsed {
                    Ok(value) => listing.items.push((value, item.to_string())),
                    Err(e) => {
                        failed = Some(format!(
                            "page {}, item {} of {what}: {e}",
                            listing.pages,
                            i + 1
                        ));
                        break;
                    }
                }
            }
            if let Some(reason) = failed {
                break Some(reason);
            }

            if page.bare {
                // No paging information: ask for the next page by number until an empty
                // one. A server that ignores `page` serves its whole list again: then that
                // list is all there is.
                let start = listing.items.len() - received;
                let new = listing.items[start..]
                    .iter()
                    .filter(|(_, raw)| raw_seen.insert(raw.clone()))
                    .count();
                if received > 0 && new == 0 {
                    let unpaged = listing.pages == 2
                        && listing.items[..start]
                            .iter()
                            .map(|(_, raw)| raw)
                            .eq(listing.items[start..].iter().map(|(_, raw)| raw));
                    listing.items.truncate(start);
                    if unpaged {
                        debug!("the server does not page {what}: its first answer was all");
                        break None;
                    }
                    break Some(format!(
                        "page {} of {what} repeats items of earlier pages, so the end of \
                         the list cannot be known",
                        listing.pages
                    ));
                }
                if !paged || received == 0 {
                    break None;
                }
                let next_page = listing.pages + 1;
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(k, _)| k != "page")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                url.query_pairs_mut()
                    .clear()
                    .extend_pairs(pairs)
                    .append_pair("page", &next_page.to_string());
                continue;
            }
            match page.next.filter(|n| !n.trim().is_empty()) {
                // Without a count nothing checks the list: one that ends on a full page
                // may have been cut short, so its end is not taken on trust.
                None if listing.count.is_none()
                    && url
                        .query_pairs()
                        .find(|(k, _)| k == "page_size")
                        .and_then(|(_, v)| v.parse::<usize>().ok())
                        .is_some_and(|size| received >= size) =>
                {
                    break Some(format!(
                        "page {} of {what} is full but gives no count and no next page, so \
                         the end of the list cannot be known",
                        listing.pages
                    ));
                }
                None => break None,
                Some(next) => match self.follow(&url, &next) {
                    Ok(next) => url = next,
                    Err(reason) => break Some(format!("page {}: {reason}", listing.pages)),
                },
            }
            if received == 0 {
                break Some(format!(
                    "page {} of {what} was empty but links to another",
                    listing.pages
                ));
            }
        };
        if let Some(reason) = stop {
            listing.completeness = Completeness::Incomplete { reason };
        }
        listing
    }

    /// The `next` link, when it stays on the configured origin.
    fn follow(&self, current: &Url, next: &str) -> Result<Url, String> {
        let url = current
            .join(next)
            .map_err(|e| format!("`next` = `{next}` is not a URL: {e}"))?;
        let same = url.scheme() == self.origin.scheme()
            && url.host_str() == self.origin.host_str()
            && url.port_or_known_default() == self.origin.port_or_known_default();
        if !same {
            return Err(format!(
                "`next` points at another origin ({}), not `hub.url` ({}); it was not followed, \
                 so the token went nowhere else",
                url.origin().ascii_serialization(),
                self.origin.origin().ascii_serialization()
            ));
        }
        Ok(url)
    }

    /// One request, retried on 429, 5xx, timeouts, resets and unreadable bodies under the
    /// read's retry budget. Returns the body of a 2xx answer.
    async fn request(
        &mut self,
        method: Method,
        url: &Url,
        what: &str,
        body: Option<&Value>,
    ) -> Result<String, HttpError> {
        loop {
            let (wait, last) = match self.send(method.clone(), url, what, body).await {
                Ok(text) => return Ok(text),
                Err(Retry::Fatal(e)) => return Err(e),
                Err(Retry::After(wait, why)) => (wait, why),
                Err(Retry::Backoff(why)) => (
                    http::backoff(self.settings.retry_base, self.retries_used),
                    why,
                ),
            };
            if self.retries_used >= self.settings.max_retries {
                return Err(HttpError::RetriesExhausted {
                    what: what.to_owned(),
                    retries: self.retries_used,
                    last,
                });
            }
            self.retries_used += 1;
            let wait = wait.min(self.settings.max_wait);
            warn!(request = what, reason = %last, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        what: &str,
        body: Option<&Value>,
    ) -> Result<String, Retry> {
        let mut request = self
            .client
            .request(method, url.clone())
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        if !self.bearer.is_empty() {
            request = request.bearer_auth(&self.bearer);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Retry::Backoff(transport_cause(e)))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let hinted = http::retry_after(response.headers(), Utc::now());
            let wait = hinted
                .unwrap_or_else(|| http::backoff(self.settings.retry_base, self.retries_used));
            return Err(Retry::After(wait, "HTTP 429 Too Many Requests".into()));
        }
        let text = response
            .text()
            .await
            .map_err(|e| Retry::Backoff(transport_cause(e)))?;
        if http::is_retryable(status) {
            return Err(Retry::Backoff(format!(
                "HTTP {}{}",
                status.as_u16(),
                self.detail(&text)
            )));
        }
        if !status.is_success() {
            return Err(Retry::Fatal(HttpError::Status {
                what: what.to_owned(),
                status: status.as_u16(),
                detail: self.detail(&text),
                hint: hint_for(status),
            }));
        }
        // A body that does not read (a proxy's error page, a cut connection) is retried.
        if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_err() {
            return Err(Retry::Backoff(format!(
                "the body is not JSON ({} bytes)",
                text.len()
            )));
        }
        Ok(text)
    }

    /// The `detail` or `message` of an error body, with any secret taken out.
    fn detail(&self, body: &str) -> String {
        let text = serde_json::from_str::<Value>(body).ok().and_then(|v| {
            ["detail", "message", "errinfo"]
                .iter()
                .find_map(|k| v.get(k).and_then(Value::as_str).map(str::to_owned))
        });
        match text {
            Some(t) => {
                let mut t: String = t.chars().take(200).collect();
                for secret in [&self.secret, &self.bearer] {
                    if !secret.is_empty() {
                        t = t.replace(secret.as_str(), "[redacted]");
                    }
                }
                format!(" ({t})")
            }
            None => String::new(),
        }
    }
}

fn hint_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => {
            "check `hub.username` and HUBREVIEW_HUB_TOKEN: the token may be wrong, expired \
             or revoked, or belong to another user"
        }
        403 => {
            "check that the token may read the organization's members: an owner's personal \
             access token, or an organization access token with member read access"
        }
        404 => "check `hub.org` (the organization's name) and `hub.url`",
        _ => "check the server's status",
    }
}

fn transport_cause(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out (raise `scim.timeout_secs` if the server is slow)".into()
    } else {
        http::error_chain(&e.without_url())
    }
}

/// A listing page: `{count, next, results}` (also `data` for invites), or a bare array.
fn parse_page(body: &str) -> Result<Page, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match value {
        Value::Array(results) => Ok(Page {
            count: None,
            next: None,
            results,
            bare: true,
        }),
        Value::Object(mut o) => {
            let results = match o.remove("results").or_else(|| o.remove("data")) {
                Some(Value::Array(a)) => a,
                Some(Value::Null) | None => {
                    return Err(
                        "the answer has no `results` list; check `hub.url` and `hub.org`".into(),
                    );
                }
                Some(other) => return Err(format!("`results` is not a list: {other}")),
            };
            let count = match o.get("count") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(
                    n.as_u64()
                        .ok_or_else(|| format!("`count` = {n} is not a whole number"))?,
                ),
                Some(Value::String(s)) => Some(
                    s.trim()
                        .parse()
                        .map_err(|_| format!("`count` = `{s}` is not a whole number"))?,
                ),
                Some(other) => return Err(format!("`count` = {other} is not a number")),
            };
            let next = match o.get("next") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => return Err(format!("`next` = {other} is not a URL")),
            };
            Ok(Page {
                count,
                next,
                results,
                bare: false,
            })
        }
        other => Err(format!(
            "expected an object or a list, found {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => "a string",
            }
        )),
    }
}

fn text(o: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match o.get(*k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// A time field: absent is `Unknown`, null or empty is `Never`.
fn seen(o: &Map<String, Value>, key: &str) -> Result<Seen, String> {
    match o.get(key) {
        None => Ok(Seen::Unknown),
        Some(Value::Null) => Ok(Seen::Never),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Seen::Never),
        Some(Value::String(s)) => activity::parse_hub_time(s)
            .map(Seen::At)
            .ok_or_else(|| format!("`{key}` = `{s}` is not a date")),
        Some(other) => Err(format!("`{key}` = {other} is not a date")),
    }
}

fn time(o: &Map<String, Value>, key: &str) -> Result<Option<DateTime<Utc>>, String> {
    Ok(match seen(o, key)? {
        Seen::At(t) => Some(t),
        _ => None,
    })
}

/// One member object of `/v2/orgs/{org}/members`. Every field is optional; a date that
/// does not parse is an error, so a member is never silently "never signed in".
pub fn parse_member(o: &Map<String, Value>, position: usize) -> Result<Member, String> {
    let role = text(o, &["role"]).map(|r| r.to_lowercase());
    let guest = matches!(o.get("is_guest"), Some(Value::Bool(true)));
    let kind = if guest {
        "guest".to_owned()
    } else if role.as_deref() == Some("invitee") {
        "invitee".to_owned()
    } else {
        "member".to_owned()
    };
    let teams = match o.get("groups").or_else(|| o.get("teams")) {
        Some(Value::Array(items)) => {
            let names: Vec<String> = items
                .iter()
                .filter_map(|g| match g {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(g) => text(g, &["name", "group_name"]),
                    _ => None,
                })
                .collect();
            (!names.is_empty()).then(|| names.join(", "))
        }
        _ => None,
    };
    let member = Member {
        row: position,
        name: text(o, &["full_name", "name"]),
        username: text(o, &["username"]),
        email: text(o, &["email", "primary_email"]),
        kind: Some(kind),
        permission: role,
        teams,
        date_joined: time(o, "date_joined")?,
        last_logged_in: seen(o, "last_logged_in_at")?,
        last_seen: seen(o, "last_seen_at")?,
        desktop_version: text(o, &["last_desktop_version", "desktop_version"]),
        source: MemberSource::HubApi,
        activity_source: MemberSource::HubApi,
    };
    if member.username.is_none() && member.email.is_none() {
        return Err("the member has neither `username` nor `email`".into());
    }
    Ok(member)
}

/// One invite object of `/v2/orgs/{org}/invites`.
pub fn parse_invite(o: &Map<String, Value>, position: usize) -> Result<Invite, String> {
    let invite = Invite {
        position,
        id: text(o, &["id"]),
        invitee: text(o, &["invitee", "email", "invitee_email"]),
        inviter: text(o, &["inviter_username", "inviter"]),
        team: text(o, &["team", "team_name"]),
        role: text(o, &["role"]).map(|r| r.to_lowercase()),
        created_at: time(o, "created_at")?,
    };
    if invite.invitee.is_none() && invite.id.is_none() {
        return Err("the invite has neither `invitee` nor `id`".into());
    }
    Ok(invite)
}

/// The members to reconcile: the API's, with the activity of the members export where the
/// API has none (an organization without Insights) and the export has it.
pub fn merge_activity(mut api: Vec<Member>, export: Option<&[Member]>) -> Vec<Member> {
    let Some(export) = export else { return api };
    let key = |v: Option<&str>| v.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
    for m in &mut api {
        if m.last_activity().0 != Seen::Unknown {
            continue;
        }
        let found = export.iter().find(|e| {
            (key(m.email.as_deref()).is_some()
                && key(e.email.as_deref()) == key(m.email.as_deref()))
                || (key(m.username.as_deref()).is_some()
                    && key(e.username.as_deref()) == key(m.username.as_deref()))
        });
        if let Some(e) = found
            && e.last_activity().0 != Seen::Unknown
        {
            m.last_logged_in = e.last_logged_in;
            m.last_seen = e.last_seen;
            m.activity_source = MemberSource::Export;
            if m.desktop_version.is_none() {
                m.desktop_version = e.desktop_version.clone();
            }
        }
    }
    api
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_page_is_an_object_with_results_or_a_bare_array() {
        let page = parse_page(
            r#"{"count": 3, "next": "https://hub.docker.com/x?page=2", "results": [{}]}"#,
        )
        .unwrap();
        assert_eq!(page.count, Some(3));
        assert!(page.next.is_some() && !page.bare);
        let page = parse_page(r#"[{"username": "a"}]"#).unwrap();
        assert!(page.bare && page.count.is_none());
        let page = parse_page(r#"{"data": [{}, {}]}"#).unwrap();
        assert_eq!(page.results.len(), 2);
        for bad in [r#"{"count": 1}"#, "null", r#"{"results": 5}"#, "<html>"] {
            assert!(parse_page(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_member_reads_activity_as_known_never_or_unknown() {
        let m = parse_member(
            &object(json!({
                "username": "jdoe", "email": "j@x.example", "role": "Owner",
                "groups": ["dev", {"name": "ops"}], "is_guest": false,
                "date_joined": "2021-01-05T21:06:53.506400Z",
                "last_logged_in_at": "2026-11-01T10:00:00Z", "last_seen_at": null,
                "last_desktop_version": "4.49.0"
            })),
            1,
        )
        .unwrap();
        assert_eq!(m.permission.as_deref(), Some("owner"));
        assert_eq!(m.teams.as_deref(), Some("dev, ops"));
        assert_eq!(m.last_seen, Seen::Never);
        assert_eq!(m.last_activity().1, "last_logged_in_at");
        assert_eq!(m.desktop_version.as_deref(), Some("4.49.0"));

        let m = parse_member(&object(json!({"username": "g", "is_guest": true})), 2).unwrap();
        assert!(m.is_guest());
        assert_eq!(m.last_activity().0, Seen::Unknown);

        let err = parse_member(
            &object(json!({"username": "b", "last_seen_at": "last tuesday"})),
            3,
        )
        .unwrap_err();
        assert!(err.contains("`last_seen_at` = `last tuesday`"), "{err}");
        assert!(parse_member(&object(json!({"role": "member"})), 4).is_err());
    }

    #[test]
    fn an_invite_is_an_email_or_a_docker_id() {
        let i = parse_invite(
            &object(json!({"id": "1", "invitee": "new@x.example", "created_at": "2025-11-30T00:00:00Z"})),
            1,
        )
        .unwrap();
        assert_eq!(i.email(), Some("new@x.example"));
        let i = parse_invite(&object(json!({"invitee": "newbie"})), 2).unwrap();
        assert_eq!(i.docker_id(), Some("newbie"));
        assert!(i.created_at.is_none());
    }

    #[test]
    fn the_configuration_needs_both_names_and_an_origin_only() {
        let mut cfg = HubConfig {
            org: Some("acme".into()),
            ..HubConfig::default()
        };
        assert!(config_problems(&cfg)[0].contains("`hub.username`"));
        cfg.username = Some("bot".into());
        assert!(config_problems(&cfg).is_empty());
        cfg.url = "https://hub.docker.com/v2".into();
        assert!(config_problems(&cfg)[0].contains("has a path"));
        cfg.url = "http://hub.docker.com".into();
        assert!(config_problems(&cfg)[0].contains("plain http"));
        cfg.url = "http://127.0.0.1:9".into();
        cfg.org = Some("a/b".into());
        cfg.page_size = 500;
        let problems = config_problems(&cfg);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(HubConfig::default().page_size <= MAX_PAGE);
        assert!(!HubConfig::default().configured());
    }

    #[test]
    fn only_next_links_on_the_configured_origin_are_followed() {
        let origin = Url::parse("http://127.0.0.1:8080").unwrap();
        let session = Session {
            client: reqwest::Client::new(),
            origin: origin.clone(),
            secret: "s".into(),
            bearer: "b".into(),
            settings: ClientSettings {
                timeout: Duration::from_secs(1),
                max_retries: 0,
                retry_base: Duration::from_millis(1),
                max_wait: Duration::from_secs(1),
                ca_file: None,
            },
            retries_used: 0,
        };
        let current = origin.join("/v2/orgs/acme/members?page=1").unwrap();
        assert!(session.follow(&current, "?page=2").is_ok());
        assert!(
            session
                .follow(
                    &current,
                    "http://127.0.0.1:8080/v2/orgs/acme/members?page=2"
                )
                .is_ok()
        );
        for foreign in [
            "http://127.0.0.1:8081/v2/orgs/acme/members?page=2",
            "https://127.0.0.1:8080/v2/orgs/acme/members?page=2",
            "http://evil.example/v2/orgs/acme/members?page=2",
            "//evil.example/x",
        ] {
            let err = session.follow(&current, foreign).unwrap_err();
            assert!(err.contains("another origin"), "{foreign}: {err}");
        }
    }

    #[test]
    fn error_details_never_carry_the_token() {
        let session = Session {
            client: reqwest::Client::new(),
            origin: Url::parse("http://127.0.0.1:1").unwrap(),
            secret: "dckr_pat_secret".into(),
            bearer: "bearer-xyz".into(),
            settings: ClientSettings {
                timeout: Duration::from_secs(1),
                max_retries: 0,
                retry_base: Duration::from_millis(1),
                max_wait: Duration::from_secs(1),
                ca_file: None,
            },
            retries_used: 0,
        };
        let detail = session.detail(r#"{"detail": "bad token dckr_pat_secret or bearer-xyz"}"#);
        assert!(!detail.contains("dckr_pat_secret") && !detail.contains("bearer-xyz"));
        assert!(detail.contains("[redacted]"));
    }

    #[test]
    fn export_activity_fills_in_where_the_api_has_none() {
        let api = vec![
            parse_member(&object(json!({"username": "a", "email": "A@x.example"})), 1).unwrap(),
            parse_member(
                &object(json!({"username": "b", "last_logged_in_at": "2026-01-01T00:00:00Z"})),
                2,
            )
            .unwrap(),
        ];
        let csv = "Username,Email,Last Logged-In Date\na,a@x.example,2026-03-01\nb,,2026-06-01\n";
        let export =
            activity::read_bytes(std::path::Path::new("m.csv"), csv.as_bytes(), "insights")
                .unwrap();
        let merged = merge_activity(api, Some(&export.members));
        assert_eq!(merged[0].activity_source, MemberSource::Export);
        assert_eq!(merged[0].last_activity().1, "Last Logged-In Date");
        assert_eq!(merged[1].activity_source, MemberSource::HubApi);
        assert_eq!(
            merged[1].last_activity().0,
            Seen::At(activity::parse_hub_time("2026-01-01").unwrap())
        );
    }
}
