//! The built-in demo: the invented organization "Acme Robotics" (`acmerobotics`) and a fake
//! Docker Hub SCIM 2.0 server that serves it on 127.0.0.1.
//!
//! This module owns the demo fixtures (compiled in from `fixtures/demo/`) and the server used
//! by `hubreview demo` and by the integration tests. The server answers like Docker Hub's SCIM
//! API: `GET /v2/scim/2.0/Users` paged by `startIndex` and `count` (silently capped at
//! [`ServerOptions::max_page`]), `GET /Users/{id}`, `GET /ServiceProviderConfig`, bearer
//! tokens, SCIM error bodies with `status` as a string, and `application/scim+json`. Any
//! method but `GET` gets `405`, and every request is recorded so a test can prove the product
//! stayed read-only.
//!
//! [`ServerOptions`] fixes how the server is built: its real page cap, whether a `count`
//! above it is capped silently or refused with `400`, what `/ServiceProviderConfig`
//! announces (sort, `maxResults`) or that it is missing, and a latency added to every
//! answer. [`Faults`] switches misbehaviour on while the server runs: failing pages,
//! outages, rate limits with each retry hint Docker has used, a `totalResults` that changes
//! mid-fetch (once or on every page), duplicate ids, short, empty, truncated or HTML
//! pages, slow pages, and emails as plain strings. The server counts the requests it
//! answers at once, so a test can see how many pages a client asks for in parallel.

pub mod hub_api;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The organization of the demo fixtures.
pub const DEMO_ORGANIZATION: &str = "acmerobotics";
/// The review date the demo fixtures are built around.
pub const DEMO_AS_OF: &str = "2026-11-30";
/// The date of the demo baseline snapshot, one week before [`DEMO_AS_OF`].
pub const DEMO_BASELINE_DATE: &str = "2026-11-23";
/// The SCIM token the demo server accepts by default. Not a secret: it opens only the demo.
pub const DEMO_TOKEN: &str = "demo-scim-token-opens-only-the-demo";
/// The Okta people export of the demo organization.
pub const DEMO_OKTA_CSV: &str = include_str!("../fixtures/demo/okta.csv");
/// The Docker Hub members (Insights) export of the demo organization.
pub const DEMO_ACTIVITY_CSV: &str = include_str!("../fixtures/demo/activity.csv");
/// The findings the demo must produce, as computed by `fixtures/demo/generate.py`.
pub const DEMO_EXPECTED_JSON: &str = include_str!("../fixtures/demo/expected.json");

const DEMO_BASELINE_JSON: &str = include_str!("../fixtures/demo/scim_baseline.json");
const DEMO_CURRENT_JSON: &str = include_str!("../fixtures/demo/scim_current.json");

/// The path under which the server answers, as on Docker Hub.
pub const BASE_PATH: &str = "/v2/scim/2.0";

const SCIM_JSON: &str = "application/scim+json";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// The demo organization one week before the review date.
pub fn demo_baseline() -> Vec<Value> {
    serde_json::from_str(DEMO_BASELINE_JSON).expect("fixtures/demo/scim_baseline.json is JSON")
}

/// The demo organization on the review date.
pub fn demo_current() -> Vec<Value> {
    serde_json::from_str(DEMO_CURRENT_JSON).expect("fixtures/demo/scim_current.json is JSON")
}

/// How the server behaves when no fault is switched on.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The bearer token every request must carry.
    pub token: String,
    /// The largest page served; a larger `count` is silently capped, like Docker (200).
    pub max_page: usize,
    /// Name the list `resources`, as Docker does, instead of RFC 7644's `Resources`.
    pub lowercase_resources: bool,
    /// Refuse a `count` above `max_page` with `400 invalidValue` instead of capping it.
    pub reject_count_over_max: bool,
    /// What `/ServiceProviderConfig` says, or that it is missing.
    pub provider: ProviderOptions,
    /// Waited before every answer, as from a server far away.
    pub latency: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            token: DEMO_TOKEN.to_string(),
            max_page: 200,
            lowercase_resources: true,
            reject_count_over_max: false,
            provider: ProviderOptions::default(),
            latency: Duration::ZERO,
        }
    }
}

/// The server's `/ServiceProviderConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOptions {
    /// Answer `/ServiceProviderConfig` with this status and a SCIM error body instead.
    pub status: Option<u16>,
    /// `sort.supported`. When `false`, a list request with `sortBy` or `sortOrder` is
    /// answered `501`, as RFC 7644 says for a feature the server does not announce.
    pub sort: bool,
    /// `filter.maxResults`, which may differ from what the server really serves; `None`
    /// leaves it out.
    pub max_results: Option<usize>,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            status: None,
            sort: true,
            max_results: Some(200),
        }
    }
}

/// Misbehaviour switched on by a test, at any time, through [`ScimServer::faults`].
///
/// Everything is off by default. Faults limited to a number of requests count down as they
/// fire, so a test can read back how many remain.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every request is answered with this status and a SCIM error body, for as long as set.
    pub fail_all_status: Option<u16>,
    /// The next requests, of any kind, are answered `429` with a retry hint.
    pub rate_limit: Option<RateLimit>,
    /// Faults of the list page at a given `startIndex`, applied in order.
    pub pages: Vec<PageFault>,
    /// A change of the user list applied once, right after the next list page is served:
    /// `totalResults` differs between the first page and the later ones.
    pub change_after_next_page: Option<UserChange>,
    /// A change of the user list applied after every list page, for as long as set: the
    /// organization never holds still.
    pub change_after_every_page: Option<UserChange>,
    /// Serve `emails` as `["a@x"]` instead of `[{"value": "a@x", ...}]`.
    pub plain_string_emails: bool,
}

/// `429 Too Many Requests` for the next `times` requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub hint: RetryHint,
    /// How many requests remain to be refused; counts down to zero.
    pub times: u32,
}

/// How a `429` says when to come back. The number is seconds from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// `Retry-After: <seconds>`
    RetryAfterSeconds(u64),
    /// `Retry-After: <HTTP date>`
    RetryAfterDate(u64),
    /// `X-Retry-After: <Unix time>`, as older Docker servers send.
    XRetryAfter(u64),
    /// `X-RateLimit-Reset: <Unix time>`
    XRateLimitReset(u64),
    /// No hint at all.
    None,
}

/// One row of the page fault table: what happens to the list page at `start_index`.
#[derive(Debug, Clone, PartialEq)]
pub struct PageFault {
    /// The 1-based `startIndex` of the request it applies to.
    pub start_index: usize,
    pub action: PageAction,
    /// How many more times it fires; `None` is forever.
    pub times: Option<u32>,
    /// How many times it has fired.
    pub fired: u32,
}

impl PageFault {
    /// A fault that fires on every request for the page.
    pub fn always(start_index: usize, action: PageAction) -> PageFault {
        PageFault {
            start_index,
            action,
            times: None,
            fired: 0,
        }
    }

    /// A fault that fires on the next `times` requests for the page, then stops.
    pub fn times(start_index: usize, action: PageAction, times: u32) -> PageFault {
        PageFault {
            start_index,
            action,
            times: Some(times),
            fired: 0,
        }
    }
}

/// What a [`PageFault`] does to its page.
#[derive(Debug, Clone, PartialEq)]
pub enum PageAction {
    /// Answer with this status and a SCIM error body.
    Status(u16),
    /// Serve no users although more exist; `totalResults` is unchanged.
    Empty,
    /// Serve at most this many users although more were asked for and exist.
    Short(usize),
    /// Serve the first half of the JSON body, with status 200.
    TruncatedJson,
    /// Serve an HTML error page, as a proxy might, with status 200.
    HtmlError,
    /// Wait this long before answering; other faults of the page still apply.
    Delay(Duration),
    /// Serve the user at 0-based `index` again in place of the page's first user, with the
    /// fields of `patch` (an object) laid over it.
    Duplicate { index: usize, patch: Option<Value> },
}

/// A change of the served users, applied once by [`Faults::change_after_next_page`].
#[derive(Debug, Clone, PartialEq)]
pub enum UserChange {
    /// Append this user.
    Add(Value),
    /// Remove the user at this 0-based position; later users move up one place.
    RemoveAt(usize),
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path_and_query: String,
    /// Whether an `Authorization` header was sent at all, right or wrong.
    pub authorization_present: bool,
}

/// A running fake SCIM server. Dropping it shuts it down.
pub struct ScimServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

struct Shared {
    options: ServerOptions,
    base_url: String,
    users: Mutex<Vec<Value>>,
    /// Positions of `users` in `id` order, computed on first use after each change.
    by_id: Mutex<Option<Vec<usize>>>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<RecordedRequest>>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> InFlight<'a> {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Locks a mutex; a panic in another holder (a failed test) does not hide the data.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts a server on `127.0.0.1` and an ephemeral port, serving `users` in this order.
pub async fn start(users: Vec<Value>, options: ServerOptions) -> std::io::Result<ScimServer> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        options,
        base_url: format!("http://{addr}{BASE_PATH}"),
        users: Mutex::new(users),
        by_id: Mutex::new(None),
        faults: Mutex::new(Faults::default()),
        log: Mutex::new(Vec::new()),
        in_flight: AtomicUsize::new(0),
        peak_in_flight: AtomicUsize::new(0),
    });
    let app = Router::new().fallback(handle).with_state(shared.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        // An accept error ends the demo server; the test or command sees its requests fail.
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    });
    Ok(ScimServer {
        addr,
        shared,
        stop: Some(stop),
        task: Some(task),
    })
}

impl ScimServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v2/scim/2.0`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Replaces the served users.
    pub fn set_users(&self, users: Vec<Value>) {
        *lock(&self.shared.users) = users;
        *lock(&self.shared.by_id) = None;
    }

    /// The users served now, as stored (before faults change them on the wire).
    pub fn users(&self) -> Vec<Value> {
        lock(&self.shared.users).clone()
    }

    /// The fault switches. Do not hold the guard across an `.await`.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.shared.faults)
    }

    /// Replaces every fault switch at once.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Every request received so far, in order.
    pub fn request_log(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Forgets the requests received so far, and the peak of requests in flight.
    pub fn clear_request_log(&self) {
        lock(&self.shared.log).clear();
        self.shared.peak_in_flight.store(0, Ordering::SeqCst);
    }

    /// The most requests the server was answering at the same time.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Stops accepting connections and waits for requests in flight to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    lock(&shared.log).push(RecordedRequest {
        method: method.to_string(),
        path_and_query: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| uri.path().to_string()),
        authorization_present: headers.contains_key(header::AUTHORIZATION),
    });
    let _in_flight = InFlight::enter(&shared);
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }

    if method != Method::GET {
        let mut response = scim_error(405, None, "This SCIM server is read-only here.");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    if let Some(status) = lock(&shared.faults).fail_all_status {
        return scim_error(status, None, "The service is unavailable.");
    }
    if !authorized(&headers, &shared.options.token) {
        let mut response = scim_error(401, None, "Authentication failed: bad bearer token.");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    if let Some(hint) = take_rate_limit(&mut lock(&shared.faults)) {
        return too_many_requests(hint);
    }

    let Some(path) = uri.path().strip_prefix(BASE_PATH) else {
        return scim_error(404, None, "Not found.");
    };
    let path = path.trim_end_matches('/');
    match path {
        "/Users" => list_users(&shared, &uri).await,
        "/ServiceProviderConfig" => match shared.options.provider.status {
            Some(status) => scim_error(status, None, "No service provider configuration here."),
            None => json_response(StatusCode::OK, service_provider_config(&shared)),
        },
        _ => match path.strip_prefix("/Users/") {
            Some(id) if !id.contains('/') => get_user(&shared, id),
            _ => scim_error(404, None, "Not found."),
        },
    }
}

/// Checks `Authorization: Bearer <token>`; the scheme is case-insensitive.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, given)) => {
            scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && given.trim() == token
        }
        None => false,
    }
}

fn take_rate_limit(faults: &mut Faults) -> Option<RetryHint> {
    let limit = faults.rate_limit.as_mut()?;
    if limit.times == 0 {
        return None;
    }
    limit.times -= 1;
    Some(limit.hint)
}

fn too_many_requests(hint: RetryHint) -> Response {
    let mut response = scim_error(429, Some("tooMany"), "Too many requests.");
    let now = chrono::Utc::now();
    let at = |secs: u64| now.timestamp() + i64::try_from(secs).unwrap_or(i64::MAX / 2);
    let (name, value) = match hint {
        RetryHint::RetryAfterSeconds(secs) => (header::RETRY_AFTER.as_str(), secs.to_string()),
        RetryHint::RetryAfterDate(secs) => {
            let when = chrono::DateTime::from_timestamp(at(secs), 0).unwrap_or(now);
            let date = when.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            (header::RETRY_AFTER.as_str(), date)
        }
        RetryHint::XRetryAfter(secs) => ("x-retry-after", at(secs).to_string()),
        RetryHint::XRateLimitReset(secs) => ("x-ratelimit-reset", at(secs).to_string()),
        RetryHint::None => return response,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, value);
    }
    response
}

/// What the page faults matching one request decided.
#[derive(Default)]
struct PagePlan {
    delay: Duration,
    terminal: Option<PageAction>,
    modifiers: Vec<PageAction>,
}

fn plan_page(faults: &mut Faults, start_index: usize) -> PagePlan {
    let mut plan = PagePlan::default();
    for fault in faults.pages.iter_mut() {
        if fault.start_index != start_index || fault.times == Some(0) || plan.terminal.is_some() {
            continue;
        }
        if let Some(times) = fault.times.as_mut() {
            *times -= 1;
        }
        fault.fired += 1;
        match &fault.action {
            PageAction::Delay(d) => plan.delay += *d,
            PageAction::Status(_) | PageAction::TruncatedJson | PageAction::HtmlError => {
                plan.terminal = Some(fault.action.clone());
            }
            PageAction::Empty | PageAction::Short(_) | PageAction::Duplicate { .. } => {
                plan.modifiers.push(fault.action.clone());
            }
        }
    }
    plan
}

/// The query parameters of a list request.
struct ListQuery {
    start_index: usize,
    count: usize,
    sort_by: Option<String>,
    descending: bool,
    filter: Option<Filter>,
}

/// Why a list request was refused: the SCIM `scimType` (`notImplemented` for a `501`,
/// else a `400`) and the detail.
struct BadQuery(&'static str, &'static str);

impl BadQuery {
    fn into_response(self) -> Response {
        match self.0 {
            "notImplemented" => scim_error(501, None, self.1),
            scim_type => scim_error(400, Some(scim_type), self.1),
        }
    }
}

fn parse_list_query(uri: &Uri, options: &ServerOptions) -> Result<ListQuery, BadQuery> {
    let max_page = options.max_page;
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|_| BadQuery("invalidValue", "The query string is malformed."))?;
    let mut query = ListQuery {
        start_index: 1,
        count: max_page,
        sort_by: None,
        descending: false,
        filter: None,
    };
    for (name, value) in pairs {
        match name.as_str() {
            "startIndex" => {
                let n: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| BadQuery("invalidValue", "startIndex must be an integer."))?;
                // RFC 7644: a value below 1 is read as 1.
                query.start_index = usize::try_from(n.max(1)).unwrap_or(usize::MAX);
            }
            "count" => {
                let n: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| BadQuery("invalidValue", "count must be an integer."))?;
                // A negative count is read as 0; above the maximum it is silently capped,
                // or refused when the server is set up so.
                let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
                if n > max_page && options.reject_count_over_max {
                    return Err(BadQuery(
                        "invalidValue",
                        "count is above the maximum page size of this server.",
                    ));
                }
                query.count = n.min(max_page);
            }
            "sortBy" | "sortOrder" if !options.provider.sort => {
                return Err(BadQuery("notImplemented", "Sorting is not supported."));
            }
            "sortBy" => query.sort_by = Some(value),
            "sortOrder" => query.descending = value.eq_ignore_ascii_case("descending"),
            "filter" => {
                query.filter = Some(
                    Filter::parse(&value)
                        .ok_or(BadQuery("invalidFilter", "The filter is not supported."))?,
                );
            }
            _ => {}
        }
    }
    Ok(query)
}

/// A single comparison `attribute op "value"` with `eq`, `ne`, `co` or `sw`; strings only,
/// compared case-insensitively.
struct Filter {
    attribute: String,
    op: String,
    value: String,
}

impl Filter {
    fn parse(text: &str) -> Option<Filter> {
        let text = text.trim();
        let (attribute, rest) = text.split_once(char::is_whitespace)?;
        let (op, value) = rest.trim_start().split_once(char::is_whitespace)?;
        let op = op.to_ascii_lowercase();
        if !matches!(op.as_str(), "eq" | "ne" | "co" | "sw") {
            return None;
        }
        let value = value.trim().strip_prefix('"')?.strip_suffix('"')?;
        if value.contains('"') {
            return None;
        }
        Some(Filter {
            attribute: attribute.to_string(),
            op,
            value: value.to_lowercase(),
        })
    }

    fn matches(&self, user: &Value) -> bool {
        let found = user_attribute(user, &self.attribute).map(|s| s.to_lowercase());
        match (self.op.as_str(), found) {
            ("eq", Some(v)) => v == self.value,
            ("ne", Some(v)) => v != self.value,
            ("ne", None) => true,
            ("co", Some(v)) => v.contains(&self.value),
            ("sw", Some(v)) => v.starts_with(&self.value),
            _ => false,
        }
    }
}

/// A string attribute of a user by SCIM path (`userName`, `name.givenName`, `emails.value`).
fn user_attribute(user: &Value, path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    if lower == "emails.value" || lower == "emails" {
        let first = user.get("emails")?.as_array()?.first()?;
        return first
            .get("value")
            .or(Some(first))
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let mut node = user;
    for part in lower.split('.') {
        let object = node.as_object()?;
        node = object
            .iter()
            .find(|(k, _)| k.to_ascii_lowercase() == part)
            .map(|(_, v)| v)?;
    }
    node.as_str().map(str::to_string)
}

async fn list_users(shared: &Shared, uri: &Uri) -> Response {
    let query = match parse_list_query(uri, &shared.options) {
        Ok(q) => q,
        Err(bad) => return bad.into_response(),
    };
    let plan = plan_page(&mut lock(&shared.faults), query.start_index);
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    match plan.terminal {
        Some(PageAction::Status(status)) => {
            return scim_error(status, None, "The page could not be served.");
        }
        Some(PageAction::HtmlError) => return html_error_page(),
        _ => {}
    }

    let (total, mut page, duplicates) = {
        let users = lock(&shared.users);
        let order = ordered(shared, &users, &query);
        let total = order.len();
        let from = (query.start_index - 1).min(total);
        let to = from.saturating_add(query.count).min(total);
        let page: Vec<Value> = order[from..to].iter().map(|&i| users[i].clone()).collect();
        // The users that duplicate faults serve again, by their position in this order.
        let duplicates: Vec<Option<Value>> = plan
            .modifiers
            .iter()
            .map(|m| match m {
                PageAction::Duplicate { index, .. } => order.get(*index).map(|&i| users[i].clone()),
                _ => None,
            })
            .collect();
        (total, page, duplicates)
    };
    for (modifier, duplicate) in plan.modifiers.iter().zip(duplicates) {
        match modifier {
            PageAction::Empty => page.clear(),
            PageAction::Short(n) => page.truncate(*n),
            PageAction::Duplicate { patch, .. } => {
                if let (Some(mut copy), false) = (duplicate, page.is_empty()) {
                    if let (Some(target), Some(Value::Object(fields))) =
                        (copy.as_object_mut(), patch.as_ref())
                    {
                        for (k, v) in fields {
                            target.insert(k.clone(), v.clone());
                        }
                    }
                    page[0] = copy;
                }
            }
            _ => {}
        }
    }

    let plain_emails = {
        let mut faults = lock(&shared.faults);
        let changes = [
            faults.change_after_next_page.take(),
            faults.change_after_every_page.clone(),
        ];
        for change in changes.into_iter().flatten() {
            let mut stored = lock(&shared.users);
            match change {
                UserChange::Add(user) => stored.push(user),
                UserChange::RemoveAt(i) if i < stored.len() => {
                    stored.remove(i);
                }
                UserChange::RemoveAt(_) => {}
            }
            *lock(&shared.by_id) = None;
        }
        faults.plain_string_emails
    };
    let resources: Vec<Value> = page
        .into_iter()
        .map(|u| on_the_wire(u, &shared.base_url, plain_emails))
        .collect();
    let list_key = if shared.options.lowercase_resources {
        "resources"
    } else {
        "Resources"
    };
    let body = json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "startIndex": query.start_index,
        list_key: resources,
    });
    if plan.terminal == Some(PageAction::TruncatedJson) {
        let text = body.to_string();
        let mut cut = text.len() / 2;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        return raw_response(StatusCode::OK, SCIM_JSON, text[..cut].to_string());
    }
    json_response(StatusCode::OK, body)
}

/// The positions of the users a list request sees, filtered and sorted as it asks. The
/// order by id is cached, so a large organization is not sorted again for every page.
fn ordered(shared: &Shared, users: &[Value], query: &ListQuery) -> Vec<usize> {
    let sort = query.sort_by.as_deref().map(str::to_ascii_lowercase);
    let mut order: Vec<usize> = match (&query.filter, sort.as_deref()) {
        (None, Some("id")) => lock(&shared.by_id)
            .get_or_insert_with(|| {
                let mut order: Vec<usize> = (0..users.len()).collect();
                order.sort_by_key(|&i| user_attribute(&users[i], "id"));
                order
            })
            .clone(),
        (filter, sort) => {
            let mut order: Vec<usize> = (0..users.len())
                .filter(|&i| filter.as_ref().is_none_or(|f| f.matches(&users[i])))
                .collect();
            let key = match sort {
                Some("id") => Some("id"),
                Some("username") => Some("userName"),
                Some("displayname") => Some("displayName"),
                _ => None,
            };
            if let Some(key) = key {
                order.sort_by_key(|&i| user_attribute(&users[i], key));
            }
            order
        }
    };
    if query.descending {
        order.reverse();
    }
    order
}

fn get_user(shared: &Shared, id: &str) -> Response {
    let found = lock(&shared.users)
        .iter()
        .find(|u| u.get("id").and_then(Value::as_str) == Some(id))
        .cloned();
    let plain_emails = lock(&shared.faults).plain_string_emails;
    match found {
        Some(user) => json_response(
            StatusCode::OK,
            on_the_wire(user, &shared.base_url, plain_emails),
        ),
        None => scim_error(404, None, "Resource not found."),
    }
}

/// A stored user as served: `meta.location` points at this server, and emails are plain
/// strings when that fault is on.
fn on_the_wire(mut user: Value, base_url: &str, plain_emails: bool) -> Value {
    let id = user.get("id").and_then(Value::as_str).map(str::to_string);
    if let (Some(id), Some(meta)) = (id, user.get_mut("meta").and_then(Value::as_object_mut)) {
        meta.insert(
            "location".into(),
            Value::String(format!("{base_url}/Users/{id}")),
        );
    }
    if plain_emails && let Some(Value::Array(emails)) = user.get_mut("emails") {
        for email in emails.iter_mut() {
            if let Some(value) = email.get("value").cloned() {
                *email = value;
            }
        }
    }
    user
}

fn service_provider_config(shared: &Shared) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": match shared.options.provider.max_results {
            Some(max) => json!({"supported": true, "maxResults": max}),
            None => json!({"supported": true}),
        },
        "changePassword": {"supported": false},
        "sort": {"supported": shared.options.provider.sort},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication scheme using the OAuth Bearer Token Standard",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", shared.base_url)
        }
    })
}

fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": code.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(scim_type) = scim_type {
        body["scimType"] = Value::String(scim_type.to_string());
    }
    json_response(code, body)
}

fn html_error_page() -> Response {
    let page = "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n\
                <body><h1>Service Unavailable</h1><p>Please try again later.</p></body></html>\n";
    raw_response(StatusCode::OK, "text/html; charset=utf-8", page.to_string())
}

fn json_response(status: StatusCode, body: Value) -> Response {
    raw_response(status, SCIM_JSON, body.to_string())
}

fn raw_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const TOKEN: &str = "test-token";

    fn user(n: usize) -> Value {
        json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:docker:2.0:User"
            ],
            "id": format!("00000000-0000-4000-8000-{:012}", 1000 - n),
            "userName": format!("user{n}@acmerobotics.example"),
            "displayName": format!("user{n}"),
            "active": true,
            "emails": [{"value": format!("user{n}@acmerobotics.example"), "primary": true,
                        "type": "work"}],
            "meta": {"resourceType": "User", "location": "https://hub.docker.example/x"}
        })
    }

    fn users(n: usize) -> Vec<Value> {
        (0..n).map(user).collect()
    }

    async fn server(n: usize) -> ScimServer {
        let options = ServerOptions {
            token: TOKEN.into(),
            ..ServerOptions::default()
        };
        start(users(n), options).await.expect("the server starts")
    }

    fn client() -> reqwest::Client {
        // No proxy: the requests must reach the server on 127.0.0.1 and nothing else.
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a client")
    }

    async fn get(server: &ScimServer, path: &str) -> reqwest::Response {
        client()
            .get(format!("{}{path}", server.base_url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the request reaches the server")
    }

    async fn get_json(server: &ScimServer, path: &str) -> (u16, Value) {
        let response = get(server, path).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    fn ids(body: &Value) -> Vec<String> {
        body["resources"]
            .as_array()
            .expect("a resources list")
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn user_names(body: &Value) -> Vec<String> {
        body["resources"]
            .as_array()
            .expect("a resources list")
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn pages_follow_one_based_start_index_and_count() {
        let s = server(25).await;
        let (status, body) = get_json(&s, "/Users?startIndex=1&count=10").await;
        assert_eq!(status, 200);
        assert_eq!(body["startIndex"], 1);
        assert_eq!(body["itemsPerPage"], 10);
        assert_eq!(user_names(&body)[0], "user0@acmerobotics.example");
        let (_, body) = get_json(&s, "/Users?startIndex=21&count=10").await;
        assert_eq!(body["itemsPerPage"], 5);
        assert_eq!(user_names(&body)[0], "user20@acmerobotics.example");
        assert_eq!(user_names(&body)[4], "user24@acmerobotics.example");
        let (_, body) = get_json(&s, "/Users?startIndex=26&count=10").await;
        assert_eq!(body["itemsPerPage"], 0);
        assert_eq!(body["totalResults"], 25);
    }

    #[tokio::test]
    async fn a_count_above_200_is_silently_capped_at_200() {
        let s = server(450).await;
        let (status, body) = get_json(&s, "/Users?startIndex=1&count=500").await;
        assert_eq!(status, 200);
        assert_eq!(ids(&body).len(), 200);
        assert_eq!(body["itemsPerPage"], 200);
        assert_eq!(body["totalResults"], 450);
    }

    #[tokio::test]
    async fn a_missing_count_means_a_full_page_and_a_missing_start_index_means_one() {
        let s = server(250).await;
        let (_, body) = get_json(&s, "/Users").await;
        assert_eq!(body["startIndex"], 1);
        assert_eq!(ids(&body).len(), 200);
    }

    #[tokio::test]
    async fn total_results_counts_every_user_while_items_per_page_counts_this_page() {
        let s = server(7).await;
        let (_, body) = get_json(&s, "/Users?startIndex=5&count=2").await;
        assert_eq!(body["totalResults"], 7);
        assert_eq!(body["itemsPerPage"], 2);
        assert_eq!(
            body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
        );
    }

    #[tokio::test]
    async fn the_list_key_is_lowercase_resources_like_docker() {
        let s = server(3).await;
        let (_, body) = get_json(&s, "/Users").await;
        assert!(body.get("resources").is_some());
        assert!(body.get("Resources").is_none());
    }

    #[tokio::test]
    async fn the_list_key_can_be_capitalized_resources_as_in_rfc_7644() {
        let options = ServerOptions {
            token: TOKEN.into(),
            lowercase_resources: false,
            ..ServerOptions::default()
        };
        let s = start(users(3), options).await.unwrap();
        let (_, body) = get_json(&s, "/Users").await;
        assert_eq!(body["Resources"].as_array().unwrap().len(), 3);
        assert!(body.get("resources").is_none());
    }

    #[tokio::test]
    async fn responses_carry_the_scim_media_type() {
        let s = server(1).await;
        let response = get(&s, "/Users").await;
        assert_eq!(response.headers()["content-type"], "application/scim+json");
    }

    #[tokio::test]
    async fn a_wrong_or_missing_token_gets_401_with_the_status_as_a_string() {
        let s = server(3).await;
        let url = format!("{}/Users", s.base_url());
        for request in [
            client().get(&url).bearer_auth("wrong"),
            client().get(&url),
            client()
                .get(&url)
                .header("Authorization", format!("Basic {TOKEN}")),
        ] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 401);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["status"], "401");
            assert_eq!(
                body["schemas"],
                json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
            );
            assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
    }

    #[tokio::test]
    async fn sort_by_id_orders_users_by_id_while_the_default_order_is_insertion_order() {
        let s = server(5).await;
        let (_, body) = get_json(&s, "/Users").await;
        let inserted = ids(&body);
        let (_, again) = get_json(&s, "/Users").await;
        assert_eq!(ids(&again), inserted);
        let (_, sorted) = get_json(&s, "/Users?sortBy=id&sortOrder=ascending").await;
        let mut expected = inserted.clone();
        expected.sort();
        assert_eq!(ids(&sorted), expected);
        assert_ne!(ids(&sorted), inserted);
        let (_, descending) = get_json(&s, "/Users?sortBy=id&sortOrder=descending").await;
        expected.reverse();
        assert_eq!(ids(&descending), expected);
    }

    #[tokio::test]
    async fn a_filter_on_user_name_matches_without_regard_to_case() {
        let s = server(5).await;
        let path = "/Users?filter=userName%20eq%20%22USER3@acmerobotics.example%22";
        let (_, body) = get_json(&s, path).await;
        assert_eq!(body["totalResults"], 1);
        assert_eq!(user_names(&body), ["user3@acmerobotics.example"]);
        let (status, body) = get_json(&s, "/Users?filter=userName%20gt%20%22a%22").await;
        assert_eq!(status, 400);
        assert_eq!(body["scimType"], "invalidFilter");
    }

    #[tokio::test]
    async fn a_single_user_is_served_by_id_and_an_unknown_id_is_404() {
        let s = server(3).await;
        let id = user(1)["id"].as_str().unwrap().to_string();
        let (status, body) = get_json(&s, &format!("/Users/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(body["userName"], "user1@acmerobotics.example");
        let (status, body) = get_json(&s, "/Users/no-such-id").await;
        assert_eq!(status, 404);
        assert_eq!(body["status"], "404");
    }

    #[tokio::test]
    async fn meta_location_points_at_this_server() {
        let s = server(1).await;
        let (_, body) = get_json(&s, "/Users").await;
        let id = ids(&body)[0].clone();
        let location = format!("{}/Users/{id}", s.base_url());
        assert_eq!(body["resources"][0]["meta"]["location"], location);
        assert!(s.base_url().starts_with("http://127.0.0.1:"));
        assert!(s.base_url().ends_with("/v2/scim/2.0"));
    }

    #[tokio::test]
    async fn the_service_provider_config_advertises_filter_sort_patch_and_bearer_tokens() {
        let s = server(0).await;
        let (status, body) = get_json(&s, "/ServiceProviderConfig").await;
        assert_eq!(status, 200);
        assert_eq!(body["patch"]["supported"], true);
        assert_eq!(body["bulk"]["supported"], false);
        assert_eq!(
            body["filter"],
            json!({"supported": true, "maxResults": 200})
        );
        assert_eq!(body["sort"]["supported"], true);
        assert_eq!(body["authenticationSchemes"][0]["type"], "oauthbearertoken");
    }

    #[tokio::test]
    async fn a_count_over_the_maximum_can_be_refused_with_400_instead_of_capped() {
        let options = ServerOptions {
            token: TOKEN.into(),
            max_page: 50,
            reject_count_over_max: true,
            ..ServerOptions::default()
        };
        let s = start(users(80), options).await.unwrap();
        let (status, body) = get_json(&s, "/Users?startIndex=1&count=51").await;
        assert_eq!(status, 400);
        assert_eq!(body["scimType"], "invalidValue");
        let (status, body) = get_json(&s, "/Users?startIndex=1&count=50").await;
        assert_eq!(status, 200);
        assert_eq!(ids(&body).len(), 50);
    }

    #[tokio::test]
    async fn the_service_provider_config_says_what_the_options_say_or_is_missing() {
        let options = ServerOptions {
            token: TOKEN.into(),
            provider: ProviderOptions {
                status: None,
                sort: false,
                max_results: None,
            },
            ..ServerOptions::default()
        };
        let s = start(users(3), options).await.unwrap();
        let (_, body) = get_json(&s, "/ServiceProviderConfig").await;
        assert_eq!(body["sort"]["supported"], false);
        assert_eq!(body["filter"], json!({"supported": true}));

        let options = ServerOptions {
            token: TOKEN.into(),
            provider: ProviderOptions {
                status: Some(404),
                ..ProviderOptions::default()
            },
            ..ServerOptions::default()
        };
        let s = start(users(3), options).await.unwrap();
        let (status, body) = get_json(&s, "/ServiceProviderConfig").await;
        assert_eq!(status, 404);
        assert_eq!(body["status"], "404");
    }

    #[tokio::test]
    async fn sorting_is_refused_with_501_when_the_config_does_not_announce_it() {
        let options = ServerOptions {
            token: TOKEN.into(),
            provider: ProviderOptions {
                sort: false,
                ..ProviderOptions::default()
            },
            ..ServerOptions::default()
        };
        let s = start(users(3), options).await.unwrap();
        for query in ["/Users?sortBy=id", "/Users?sortOrder=ascending"] {
            let (status, body) = get_json(&s, query).await;
            assert_eq!(status, 501, "{query}");
            assert_eq!(body["status"], "501");
        }
        let (status, _) = get_json(&s, "/Users").await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn latency_delays_every_answer() {
        let options = ServerOptions {
            token: TOKEN.into(),
            latency: Duration::from_millis(150),
            ..ServerOptions::default()
        };
        let s = start(users(3), options).await.unwrap();
        for path in ["/ServiceProviderConfig", "/Users"] {
            let started = Instant::now();
            get_json(&s, path).await;
            assert!(started.elapsed() >= Duration::from_millis(150), "{path}");
        }
    }

    #[tokio::test]
    async fn a_change_after_every_page_keeps_changing_total_results() {
        let s = server(20).await;
        s.faults().change_after_every_page = Some(UserChange::RemoveAt(0));
        let mut totals = Vec::new();
        for _ in 0..3 {
            let (_, body) = get_json(&s, "/Users?startIndex=1&count=5").await;
            totals.push(body["totalResults"].as_u64().unwrap());
        }
        assert_eq!(totals, [20, 19, 18]);
        assert!(s.faults().change_after_every_page.is_some());
    }

    #[tokio::test]
    async fn the_peak_of_requests_in_flight_is_counted() {
        let options = ServerOptions {
            token: TOKEN.into(),
            latency: Duration::from_millis(100),
            ..ServerOptions::default()
        };
        let s = start(users(3), options).await.unwrap();
        let (a, b, c) = tokio::join!(
            get(&s, "/Users"),
            get(&s, "/Users"),
            get(&s, "/ServiceProviderConfig")
        );
        assert!([a, b, c].iter().all(|r| r.status() == 200));
        assert_eq!(s.peak_in_flight(), 3);
        s.clear_request_log();
        assert_eq!(s.peak_in_flight(), 0);
        get(&s, "/Users").await;
        assert_eq!(s.peak_in_flight(), 1);
    }

    #[tokio::test]
    async fn sorting_by_id_is_served_from_a_cache_that_follows_changes() {
        let s = server(5).await;
        let (_, before) = get_json(&s, "/Users?sortBy=id").await;
        let mut replaced = users(5);
        replaced.reverse();
        replaced.truncate(3);
        s.set_users(replaced.clone());
        let (_, after) = get_json(&s, "/Users?sortBy=id").await;
        let mut want: Vec<String> = replaced
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        want.sort();
        assert_eq!(ids(&after), want);
        assert_ne!(ids(&after), ids(&before));
    }

    #[tokio::test]
    async fn every_method_but_get_is_refused_with_405_and_recorded() {
        let s = server(2).await;
        let id = user(0)["id"].as_str().unwrap().to_string();
        let url = format!("{}/Users/{id}", s.base_url());
        let c = client();
        for request in [
            c.put(&url)
                .bearer_auth(TOKEN)
                .json(&json!({"active": false})),
            c.patch(&url).bearer_auth(TOKEN),
            c.delete(&url).bearer_auth(TOKEN),
            c.post(format!("{}/Users", s.base_url())).bearer_auth(TOKEN),
        ] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 405);
            assert_eq!(response.headers()["allow"], "GET");
        }
        let writes: Vec<_> = s
            .request_log()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| r.method)
            .collect();
        assert_eq!(writes, ["PUT", "PATCH", "DELETE", "POST"]);
        assert_eq!(s.users()[0]["active"], true);
    }

    #[tokio::test]
    async fn the_request_log_records_method_path_and_whether_a_token_was_sent() {
        let s = server(2).await;
        get(&s, "/Users?startIndex=1&count=1").await;
        client()
            .get(format!("{}/Users", s.base_url()))
            .send()
            .await
            .unwrap();
        let log = s.request_log();
        assert_eq!(
            log,
            [
                RecordedRequest {
                    method: "GET".into(),
                    path_and_query: "/v2/scim/2.0/Users?startIndex=1&count=1".into(),
                    authorization_present: true,
                },
                RecordedRequest {
                    method: "GET".into(),
                    path_and_query: "/v2/scim/2.0/Users".into(),
                    authorization_present: false,
                },
            ]
        );
        s.clear_request_log();
        assert!(s.request_log().is_empty());
    }

    #[tokio::test]
    async fn set_users_replaces_what_is_served() {
        let s = server(2).await;
        s.set_users(users(9));
        let (_, body) = get_json(&s, "/Users").await;
        assert_eq!(body["totalResults"], 9);
    }

    #[tokio::test]
    async fn a_page_fails_n_times_with_the_chosen_status_then_succeeds() {
        let s = server(30).await;
        s.faults()
            .pages
            .push(PageFault::times(11, PageAction::Status(500), 2));
        for _ in 0..2 {
            let (status, body) = get_json(&s, "/Users?startIndex=11&count=10").await;
            assert_eq!(status, 500);
            assert_eq!(body["status"], "500");
        }
        let (status, body) = get_json(&s, "/Users?startIndex=11&count=10").await;
        assert_eq!(status, 200);
        assert_eq!(ids(&body).len(), 10);
        let (status, _) = get_json(&s, "/Users?startIndex=1&count=10").await;
        assert_eq!(status, 200);
        let faults = s.faults();
        assert_eq!(faults.pages[0].fired, 2);
        assert_eq!(faults.pages[0].times, Some(0));
    }

    #[tokio::test]
    async fn a_page_can_fail_forever() {
        let s = server(30).await;
        s.faults()
            .pages
            .push(PageFault::always(21, PageAction::Status(502)));
        for _ in 0..6 {
            let (status, _) = get_json(&s, "/Users?startIndex=21&count=10").await;
            assert_eq!(status, 502);
        }
        let (status, _) = get_json(&s, "/Users?startIndex=1&count=10").await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn fail_all_status_answers_every_request_until_switched_off() {
        let s = server(3).await;
        s.faults().fail_all_status = Some(503);
        for path in ["/Users", "/ServiceProviderConfig", "/Users/x"] {
            let (status, body) = get_json(&s, path).await;
            assert_eq!(status, 503);
            assert_eq!(body["status"], "503");
        }
        s.faults().fail_all_status = None;
        let (status, _) = get_json(&s, "/Users").await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn a_rate_limit_sends_each_retry_hint_form_for_the_first_n_requests() {
        let s = server(3).await;
        let now = chrono::Utc::now().timestamp();
        let cases = [
            (RetryHint::RetryAfterSeconds(7), "retry-after"),
            (RetryHint::RetryAfterDate(60), "retry-after"),
            (RetryHint::XRetryAfter(30), "x-retry-after"),
            (RetryHint::XRateLimitReset(45), "x-ratelimit-reset"),
        ];
        for (hint, name) in cases {
            s.faults().rate_limit = Some(RateLimit { hint, times: 2 });
            for _ in 0..2 {
                let response = get(&s, "/Users").await;
                assert_eq!(response.status().as_u16(), 429);
                let value = response.headers()[name].to_str().unwrap().to_string();
                match hint {
                    RetryHint::RetryAfterSeconds(_) => assert_eq!(value, "7"),
                    RetryHint::RetryAfterDate(_) => {
                        let at = chrono::DateTime::parse_from_rfc2822(&value).unwrap();
                        assert!(value.ends_with(" GMT"));
                        assert!((at.timestamp() - now - 60).abs() <= 5);
                    }
                    RetryHint::XRetryAfter(_) | RetryHint::XRateLimitReset(_) => {
                        let at: i64 = value.parse().unwrap();
                        let secs = if name == "x-retry-after" { 30 } else { 45 };
                        assert!((at - now - secs).abs() <= 5);
                    }
                    RetryHint::None => unreachable!(),
                }
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["status"], "429");
            }
            let (status, _) = get_json(&s, "/Users").await;
            assert_eq!(status, 200);
        }
    }

    #[tokio::test]
    async fn a_rate_limit_can_come_without_any_hint() {
        let s = server(3).await;
        s.faults().rate_limit = Some(RateLimit {
            hint: RetryHint::None,
            times: 1,
        });
        let response = get(&s, "/Users").await;
        assert_eq!(response.status().as_u16(), 429);
        assert!(response.headers().get("retry-after").is_none());
    }

    #[tokio::test]
    async fn total_results_grows_after_the_first_page_when_a_user_is_added() {
        let s = server(20).await;
        s.faults().change_after_next_page = Some(UserChange::Add(user(99)));
        let (_, first) = get_json(&s, "/Users?startIndex=1&count=10").await;
        assert_eq!(first["totalResults"], 20);
        let (_, second) = get_json(&s, "/Users?startIndex=11&count=10").await;
        assert_eq!(second["totalResults"], 21);
        assert!(s.faults().change_after_next_page.is_none());
    }

    #[tokio::test]
    async fn total_results_shrinks_after_the_first_page_when_a_user_is_removed() {
        let s = server(20).await;
        s.faults().change_after_next_page = Some(UserChange::RemoveAt(0));
        let (_, first) = get_json(&s, "/Users?startIndex=1&count=10").await;
        assert_eq!(first["totalResults"], 20);
        let (_, second) = get_json(&s, "/Users?startIndex=11&count=10").await;
        assert_eq!(second["totalResults"], 19);
        // Everyone moved up one place: user10 slid onto the first page and is never served.
        let mut seen = user_names(&first);
        seen.extend(user_names(&second));
        assert!(!seen.contains(&"user10@acmerobotics.example".to_string()));
    }

    #[tokio::test]
    async fn a_duplicate_id_is_served_again_on_a_later_page_with_changed_content() {
        let s = server(20).await;
        s.faults().pages.push(PageFault::always(
            11,
            PageAction::Duplicate {
                index: 3,
                patch: Some(json!({"active": false})),
            },
        ));
        let (_, first) = get_json(&s, "/Users?startIndex=1&count=10").await;
        let (_, second) = get_json(&s, "/Users?startIndex=11&count=10").await;
        assert_eq!(second["totalResults"], 20);
        assert_eq!(second["resources"][0]["id"], first["resources"][3]["id"]);
        assert_eq!(second["resources"][0]["active"], false);
        assert_eq!(first["resources"][3]["active"], true);
        let mut all = ids(&first);
        all.extend(ids(&second));
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 19);
    }

    #[tokio::test]
    async fn a_short_page_serves_fewer_users_than_asked_while_more_remain() {
        let s = server(30).await;
        s.faults()
            .pages
            .push(PageFault::always(11, PageAction::Short(4)));
        let (_, body) = get_json(&s, "/Users?startIndex=11&count=10").await;
        assert_eq!(ids(&body).len(), 4);
        assert_eq!(body["itemsPerPage"], 4);
        assert_eq!(body["totalResults"], 30);
        let (_, next) = get_json(&s, "/Users?startIndex=15&count=10").await;
        assert_eq!(user_names(&next)[0], "user14@acmerobotics.example");
    }

    #[tokio::test]
    async fn an_empty_page_is_served_at_the_chosen_start_index() {
        let s = server(30).await;
        s.faults()
            .pages
            .push(PageFault::always(11, PageAction::Empty));
        let (status, body) = get_json(&s, "/Users?startIndex=11&count=10").await;
        assert_eq!(status, 200);
        assert!(ids(&body).is_empty());
        assert_eq!(body["totalResults"], 30);
    }

    #[tokio::test]
    async fn a_truncated_body_does_not_parse_as_json() {
        let s = server(10).await;
        s.faults()
            .pages
            .push(PageFault::times(1, PageAction::TruncatedJson, 1));
        let response = get(&s, "/Users?startIndex=1&count=10").await;
        assert_eq!(response.status().as_u16(), 200);
        let text = response.text().await.unwrap();
        assert!(text.starts_with('{'));
        assert!(serde_json::from_str::<Value>(&text).is_err());
        let (status, body) = get_json(&s, "/Users?startIndex=1&count=10").await;
        assert_eq!(status, 200);
        assert_eq!(ids(&body).len(), 10);
    }

    #[tokio::test]
    async fn an_html_error_page_comes_with_status_200() {
        let s = server(10).await;
        s.faults()
            .pages
            .push(PageFault::always(1, PageAction::HtmlError));
        let response = get(&s, "/Users?startIndex=1&count=5").await;
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(response.text().await.unwrap().contains("<html>"));
    }

    #[tokio::test]
    async fn a_delayed_page_arrives_late_and_other_pages_do_not() {
        let s = server(20).await;
        let delay = Duration::from_millis(400);
        s.faults()
            .pages
            .push(PageFault::always(11, PageAction::Delay(delay)));
        let started = Instant::now();
        let (status, _) = get_json(&s, "/Users?startIndex=11&count=10").await;
        assert_eq!(status, 200);
        assert!(started.elapsed() >= delay);
        let started = Instant::now();
        get_json(&s, "/Users?startIndex=1&count=10").await;
        assert!(started.elapsed() < delay);
    }

    #[tokio::test]
    async fn a_delay_times_out_a_client_with_a_shorter_timeout() {
        let s = server(5).await;
        s.faults().pages.push(PageFault::always(
            1,
            PageAction::Delay(Duration::from_secs(2)),
        ));
        let result = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap()
            .get(format!("{}/Users?startIndex=1", s.base_url()))
            .bearer_auth(TOKEN)
            .send()
            .await;
        assert!(result.is_err_and(|e| e.is_timeout()));
    }

    #[tokio::test]
    async fn emails_can_be_served_as_plain_strings() {
        let s = server(2).await;
        s.faults().plain_string_emails = true;
        let (_, body) = get_json(&s, "/Users").await;
        assert_eq!(
            body["resources"][0]["emails"],
            json!(["user0@acmerobotics.example"])
        );
        let stored = s.users();
        assert!(stored[0]["emails"][0].is_object());
    }

    #[tokio::test]
    async fn shutdown_stops_the_server() {
        let s = server(1).await;
        let url = format!("{}/Users", s.base_url());
        s.shutdown().await;
        assert!(client().get(url).bearer_auth(TOKEN).send().await.is_err());
    }

    #[tokio::test]
    async fn the_demo_organization_is_served_whole_in_pages_of_200() {
        let current = demo_current();
        let options = ServerOptions::default();
        let s = start(current.clone(), options).await.unwrap();
        let c = client();
        let mut seen = Vec::new();
        let mut start_index = 1;
        loop {
            let body: Value = c
                .get(format!(
                    "{}/Users?startIndex={start_index}&count=200",
                    s.base_url()
                ))
                .bearer_auth(DEMO_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let page = ids(&body);
            if page.is_empty() {
                break;
            }
            start_index += page.len();
            seen.extend(page);
            assert_eq!(body["totalResults"], current.len());
        }
        let expected: Vec<String> = current
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn the_demo_fixtures_parse_and_hold_at_least_450_users() {
        let current = demo_current();
        let baseline = demo_baseline();
        assert!(current.len() >= 450, "{} current users", current.len());
        assert!(baseline.len() >= 450, "{} baseline users", baseline.len());
        for u in current.iter().chain(&baseline) {
            assert!(u["id"].as_str().is_some_and(|id| id.len() == 36));
            let ext = &u["urn:ietf:params:scim:schemas:extension:docker:2.0:User"];
            assert_eq!(ext["dockerOrg"], DEMO_ORGANIZATION);
        }
        let expected: Value = serde_json::from_str(DEMO_EXPECTED_JSON).unwrap();
        assert_eq!(expected["as_of"], DEMO_AS_OF);
        assert_eq!(expected["accounts"], current.len());
        let active = current.iter().filter(|u| u["active"] == true).count();
        assert_eq!(expected["active_accounts"], active);
    }

    #[test]
    fn the_demo_csv_exports_have_the_documented_headers() {
        let okta = DEMO_OKTA_CSV.lines().next().unwrap();
        assert_eq!(
            okta,
            "User Id,Username,First Name,Last Name,Primary Email,Secondary Email,\
             Employee Number,Department,Status"
        );
        let activity = DEMO_ACTIVITY_CSV.lines().next().unwrap();
        assert_eq!(
            activity,
            "Name,Username,Email,Type,Permission,Teams,Date Joined,Last Logged-In Date,\
             Docker Desktop Version,Last Seen Date"
        );
        assert!(DEMO_OKTA_CSV.lines().count() > 480);
        assert!(DEMO_ACTIVITY_CSV.lines().count() > 480);
    }
}
