//! The SCIM step: reads every Docker Hub user of the organization through SCIM 2.0.
//!
//! It only ever sends `GET`. Pages advance by the number of resources actually received,
//! never by `itemsPerPage`, and a snapshot is complete only when the unique ids add up to
//! `totalResults`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One Docker Hub user as SCIM describes it. Every attribute but `id` may be missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    /// `userName`, the sign-in email.
    pub user_name: Option<String>,
    pub external_id: Option<String>,
    /// The enterprise extension's `employeeNumber`.
    pub employee_number: Option<String>,
    /// `displayName`, which Docker fills with the Docker ID.
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// `active`; a missing value counts as active, so a leaver is never hidden by it.
    pub active: bool,
    pub emails: Vec<Email>,
    pub groups: Vec<String>,
    /// The Docker extension's `dockerRole`: member, editor or owner.
    pub role: Option<String>,
    /// The Docker extension's `dockerTeam`.
    pub team: Option<String>,
    /// The Docker extension's `dockerOrg`.
    pub org: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub last_modified: Option<DateTime<Utc>>,
}

/// One entry of a SCIM user's `emails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub value: String,
    pub primary: bool,
    pub kind: Option<String>,
}

impl Account {
    /// The name a reviewer recognizes: "given family", else the display name.
    pub fn full_name(&self) -> Option<String> {
        let parts: Vec<&str> = [self.given_name.as_deref(), self.family_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect();
        if parts.is_empty() {
            None
        } else {
            Some(parts.join(" "))
        }
    }

    /// The email shown for the account: `userName`, else the primary email, else the first.
    pub fn email(&self) -> Option<&str> {
        self.user_name
            .as_deref()
            .or_else(|| {
                self.emails
                    .iter()
                    .find(|e| e.primary)
                    .map(|e| e.value.as_str())
            })
            .or_else(|| self.emails.first().map(|e| e.value.as_str()))
    }
}

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::{Map, Value};
use tokio::task::JoinSet;
use tracing::{debug, info, instrument, warn};

use crate::config::ScimConfig;
use crate::http::{self, ClientSettings, HttpError};

const DOCKER_EXTENSION: &str = "urn:ietf:params:scim:schemas:extension:docker:2.0:User";
const ENTERPRISE_EXTENSION: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The largest `count` Docker's SCIM API serves.
pub const MAX_PAGE: u32 = 200;

/// Whether a snapshot can be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completeness {
    Complete,
    /// Not every user arrived, or the numbers do not add up: never diffed.
    Incomplete {
        reason: String,
    },
}

impl Completeness {
    pub fn is_complete(&self) -> bool {
        matches!(self, Completeness::Complete)
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Completeness::Complete => None,
            Completeness::Incomplete { reason } => Some(reason),
        }
    }
}

/// What one fetch of `/Users` brought back.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Each account with its resource as received, for the raw column of the store.
    pub accounts: Vec<(Account, String)>,
    pub total_results: Option<u64>,
    pub pages: u32,
    pub completeness: Completeness,
}

/// What `/ServiceProviderConfig` announced about listing users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// `filter.maxResults`: the most resources one response holds.
    pub max_results: Option<u64>,
    /// `sort.supported`: whether `sortBy` may be sent.
    pub sort: bool,
}

impl Provider {
    /// What is assumed of a server whose configuration could not be read: no sort, no
    /// announced maximum.
    pub const UNKNOWN: Provider = Provider {
        max_results: None,
        sort: false,
    };

    /// Reads a ServiceProviderConfig body leniently: keys match case-insensitively and a
    /// `supported` or number may come as a string.
    pub fn parse(body: &Value) -> Provider {
        let object = body.as_object();
        let section = |name: &str| object.and_then(|o| get(o, name)).and_then(Value::as_object);
        let supported = |name: &str| {
            section(name)
                .and_then(|s| get(s, "supported"))
                .is_some_and(|v| match v {
                    Value::Bool(b) => *b,
                    Value::String(s) => s.trim().eq_ignore_ascii_case("true"),
                    _ => false,
                })
        };
        let max_results = section("filter")
            .and_then(|f| get(f, "maxResults"))
            .and_then(|v| match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
            .filter(|n| *n > 0);
        Provider {
            max_results,
            sort: supported("sort"),
        }
    }

    /// The `count` to ask for: `min(page_size, maxResults, 200)`, at least 1.
    pub fn count(&self, page_size: u32) -> u32 {
        let announced = self
            .max_results
            .map_or(MAX_PAGE, |m| u32::try_from(m).unwrap_or(MAX_PAGE));
        page_size.min(announced).clamp(1, MAX_PAGE)
    }
}

/// Fetches every user under `cfg.url` and judges the result.
///
/// It reads `/ServiceProviderConfig` first, for the page size and whether to sort by id.
/// The first page of `/Users` fixes `totalResults` and the page size the server really
/// serves; the other pages are then fetched `cfg.concurrency` at a time from offsets
/// computed from that size, and put in order. A page that comes back shorter than planned
/// switches to sequential paging from the first gap, so the result is the one a sequential
/// fetch gives. If `totalResults` changes during the fetch, the fetch starts over, up to
/// `cfg.max_restarts` times.
///
/// Only a bad configuration (URL, CA file) returns `Err`. Every failure of the server
/// comes back as an incomplete snapshot with the reason, so the run can store and report
/// it.
#[instrument(skip_all, fields(url = %cfg.url))]
pub async fn fetch_all(cfg: &ScimConfig, token: &str, progress: bool) -> Result<Fetched, String> {
    let (base, settings, client) = client(cfg)?;
    let pager = Arc::new(Pager {
        client,
        base,
        token: token.to_owned(),
        settings,
        retries_used: AtomicU32::new(0),
        concurrency: AtomicUsize::new(cfg.concurrency.max(1) as usize),
        deadline: tokio::time::Instant::now() + Duration::from_secs(cfg.deadline_secs.max(1)),
        deadline_secs: cfg.deadline_secs.max(1),
    });

    let provider = match pager.provider().await {
        Ok(provider) => provider,
        Err(reason) => {
            warn!(%reason, "snapshot incomplete");
            return Ok(Fetched {
                accounts: Vec::new(),
                total_results: None,
                pages: 0,
                completeness: Completeness::Incomplete { reason },
            });
        }
    };
    let plan = Plan {
        count: provider.count(cfg.page_size),
        sort: provider.sort,
    };
    debug!(
        count = plan.count,
        sort = plan.sort,
        max_results = provider.max_results,
        "paging plan from /ServiceProviderConfig"
    );

    let bar = progress_bar(progress);
    let mut restarts = 0;
    let fetched = loop {
        bar.set_position(0);
        let attempt = fetch_once(&pager, plan, &bar).await;
        match attempt.stop {
            Some(Stop::TotalChanged { before, now }) if restarts < cfg.max_restarts => {
                restarts += 1;
                warn!(
                    before,
                    now,
                    restart = restarts,
                    "totalResults changed during the fetch; starting over"
                );
            }
            stop => break attempt.collected.judge(stop, restarts),
        }
    };
    bar.finish_and_clear();

    let unique = fetched.accounts.len();
    match &fetched.completeness {
        Completeness::Complete => {
            info!(
                users = unique,
                pages = fetched.pages,
                restarts,
                "snapshot complete"
            )
        }
        Completeness::Incomplete { reason } => {
            warn!(users = unique, %reason, "snapshot incomplete")
        }
    }
    Ok(fetched)
}

/// Checks what a fetch needs from the configuration (the URL, the CA file) without
/// sending anything, so that a bad value fails before a run begins.
pub fn check(cfg: &ScimConfig) -> Result<(), String> {
    client(cfg).map(|_| ())
}

fn client(cfg: &ScimConfig) -> Result<(Url, ClientSettings, reqwest::Client), String> {
    let base = http::check_url("scim.url", &cfg.url)?;
    let settings = ClientSettings {
        timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
        max_retries: cfg.max_retries,
        retry_base: Duration::from_millis(cfg.retry_base_ms),
        max_wait: Duration::from_secs(cfg.retry_max_wait_secs),
        ca_file: cfg.ca_file.clone().map(|path| ("scim.ca_file", path)),
    };
    let client = http::build_client(&settings, &base)?;
    Ok((base, settings, client))
}

/// How the pages are asked for.
#[derive(Debug, Clone, Copy)]
struct Plan {
    count: u32,
    sort: bool,
}

/// Why a fetch stopped before the end.
#[derive(Debug)]
enum Stop {
    /// A page could not be had, or its content cannot be trusted.
    Failed(String),
    /// `totalResults` changed between pages: the fetch may start over.
    TotalChanged { before: u64, now: u64 },
}

/// One pass over every page.
struct Attempt {
    collected: Collected,
    stop: Option<Stop>,
}

/// The users received so far in one pass, in page order, each id once.
#[derive(Default)]
struct Collected {
    accounts: Vec<(Account, String)>,
    index_of: HashMap<String, usize>,
    total: Option<u64>,
    /// Resources received, a user served twice counted twice.
    received: u64,
    pages: u32,
}

impl Collected {
    /// Adds one page, in order. Returns how many resources it held.
    ///
    /// A page that holds users but not one that earlier pages did not already bring is a
    /// server that ignores `startIndex` (or serves a page again): paging on would never
    /// end, so the fetch stops there, incomplete.
    fn absorb(&mut self, start: u64, page: Page) -> Result<u64, Stop> {
        self.pages += 1;
        match (self.total, page.total_results) {
            (_, None) => {
                return Err(Stop::Failed(format!(
                    "page at startIndex {start} has no totalResults"
                )));
            }
            (None, Some(now)) => self.total = Some(now),
            (Some(before), Some(now)) if before != now => {
                return Err(Stop::TotalChanged { before, now });
            }
            _ => {}
        }
        let received = page.accounts.len() as u64;
        let mut new = 0u64;
        for (account, raw) in page.accounts {
            match self.index_of.get(&account.id) {
                Some(&i) if self.accounts[i].0 != account => {
                    return Err(Stop::Failed(format!(
                        "user id `{}` was served twice with different content (the second \
                         time on the page at startIndex {start}); ids are compared without \
                         surrounding spaces, so `1` and `1 ` are the same id",
                        account.id
                    )));
                }
                Some(_) => warn!(
                    id = %account.id,
                    start,
                    "the same user was served twice; counted once"
                ),
                None => {
                    self.index_of
                        .insert(account.id.clone(), self.accounts.len());
                    self.accounts.push((account, raw));
                    new += 1;
                }
            }
        }
        self.received += received;
        if received > 0 && new == 0 {
            return Err(Stop::Failed(format!(
                "page at startIndex {start} brought no new user: its {received} users all \
                 came on earlier pages, so the server ignores startIndex or serves a page \
                 again; stopped after {} of {} users rather than page on without end",
                self.accounts.len(),
                self.total()
            )));
        }
        Ok(received)
    }

    fn total(&self) -> u64 {
        self.total.unwrap_or(0)
    }

    /// The snapshot and whether it can be trusted.
    fn judge(self, stop: Option<Stop>, restarts: u32) -> Fetched {
        let unique = self.accounts.len() as u64;
        let completeness = match (stop, self.total) {
            (Some(Stop::Failed(reason)), _) => Completeness::Incomplete { reason },
            (Some(Stop::TotalChanged { before, now }), _) => Completeness::Incomplete {
                reason: format!(
                    "totalResults changed from {before} to {now} during the fetch{}; users \
                     were being added or removed: take the snapshot again later, or raise \
                     `scim.max_restarts`",
                    match restarts {
                        0 => String::new(),
                        n => format!(", again after {n} restart{}", if n == 1 { "" } else { "s" }),
                    }
                ),
            },
            (None, Some(total)) if unique != total => Completeness::Incomplete {
                reason: format!("{unique} unique user ids do not add up to totalResults {total}"),
            },
            (None, None) => Completeness::Incomplete {
                reason: "no page was received".into(),
            },
            (None, Some(_)) => Completeness::Complete,
        };
        Fetched {
            accounts: self.accounts,
            total_results: self.total,
            pages: self.pages,
            completeness,
        }
    }
}

/// One pass: the first page, the planned pages at once, then sequential paging from the
/// first gap if there is one.
async fn fetch_once(pager: &Arc<Pager>, plan: Plan, bar: &indicatif::ProgressBar) -> Attempt {
    let mut collected = Collected::default();
    let stop = page_all(pager, plan, bar, &mut collected).await.err();
    Attempt { collected, stop }
}

async fn page_all(
    pager: &Arc<Pager>,
    plan: Plan,
    bar: &indicatif::ProgressBar,
    got: &mut Collected,
) -> Result<(), Stop> {
    let first = pager
        .page(1, plan.count, plan.sort)
        .await
        .map_err(Stop::Failed)?;
    let first_size = got.absorb(1, first)?;
    let total = got.total();
    bar.set_length(total);
    bar.set_position(got.accounts.len() as u64);
    if got.received >= total {
        return Ok(());
    }
    if first_size == 0 {
        return Err(empty_page(1, got));
    }

    // The pages after the first, planned from its size; computed, never listed, so a huge
    // `totalResults` costs no memory.
    let offsets = Offsets {
        first_size,
        len: (total - 1) / first_size,
    };
    let resume_at = if pager.concurrency() > 1 && offsets.len > 1 {
        concurrent(pager, plan, bar, got, offsets, first_size).await?
    } else {
        (offsets.len > 0).then(|| offsets.at(0))
    };
    if let Some(start) = resume_at {
        sequential(pager, plan, bar, got, start).await?;
    }
    Ok(())
}

/// The `startIndex` of the planned pages after the first: `1 + k × first_size`.
#[derive(Debug, Clone, Copy)]
struct Offsets {
    first_size: u64,
    len: u64,
}

impl Offsets {
    fn at(&self, index: u64) -> u64 {
        1 + (index + 1) * self.first_size
    }
}

/// Fetches the planned pages a few at a time and adds them in order. Returns where to go
/// on sequentially when a page came back with another size than planned.
async fn concurrent(
    pager: &Arc<Pager>,
    plan: Plan,
    bar: &indicatif::ProgressBar,
    got: &mut Collected,
    offsets: Offsets,
    first_size: u64,
) -> Result<Option<u64>, Stop> {
    let total = got.total();
    let count = u32::try_from(first_size).unwrap_or(MAX_PAGE);
    let mut tasks = JoinSet::new();
    let mut arrived: BTreeMap<u64, Result<Page, String>> = BTreeMap::new();
    let (mut launched, mut absorbed, mut in_flight) = (0u64, 0u64, 0usize);

    let resume_at = loop {
        while launched < offsets.len && in_flight < pager.concurrency() {
            let (pager, index, start) = (pager.clone(), launched, offsets.at(launched));
            tasks.spawn(async move { (index, pager.page(start, count, plan.sort).await) });
            launched += 1;
            in_flight += 1;
        }

        let mut gap = None;
        while let Some(result) = arrived.remove(&absorbed) {
            let start = offsets.at(absorbed);
            let received = got.absorb(start, result.map_err(Stop::Failed)?)?;
            bar.set_position(got.accounts.len() as u64);
            absorbed += 1;
            let planned = first_size.min(total - (start - 1));
            if received != planned {
                debug!(
                    start,
                    received, planned, "page size differs from the plan; paging sequentially"
                );
                gap = Some(start + received);
                break;
            }
        }
        if gap.is_some() || absorbed == offsets.len {
            break gap.filter(|_| got.received < total);
        }

        match tasks.join_next().await {
            Some(Ok((index, result))) => {
                in_flight -= 1;
                arrived.insert(index, result);
            }
            Some(Err(e)) => {
                return Err(Stop::Failed(format!("a page request stopped: {e}")));
            }
            None => return Err(Stop::Failed("page requests ended before every page".into())),
        }
    };
    tasks.abort_all();
    Ok(resume_at)
}

/// Pages one after the other from `start`, each `startIndex` the previous one plus the
/// resources received, until `totalResults` resources have arrived.
async fn sequential(
    pager: &Pager,
    plan: Plan,
    bar: &indicatif::ProgressBar,
    got: &mut Collected,
    mut start: u64,
) -> Result<(), Stop> {
    while got.received < got.total() {
        let page = pager
            .page(start, plan.count, plan.sort)
            .await
            .map_err(Stop::Failed)?;
        let received = got.absorb(start, page)?;
        bar.set_position(got.accounts.len() as u64);
        if received == 0 {
            return Err(empty_page(start, got));
        }
        start += received;
    }
    Ok(())
}

fn empty_page(start: u64, got: &Collected) -> Stop {
    Stop::Failed(format!(
        "page at startIndex {start} was empty after {} of {} users",
        got.received,
        got.total()
    ))
}

fn progress_bar(wanted: bool) -> indicatif::ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} SCIM users {pos}/{len} {wide_bar}")
    {
        bar.set_style(style);
    }
    bar
}

/// One page of `/Users`, its resources read into accounts.
#[derive(Debug)]
struct Page {
    total_results: Option<u64>,
    accounts: Vec<(Account, String)>,
}

/// Sends the requests of one fetch, under one retry budget.
struct Pager {
    client: reqwest::Client,
    base: Url,
    token: String,
    settings: ClientSettings,
    retries_used: AtomicU32,
    /// Pages in flight at most; halved after each 429, never below one.
    concurrency: AtomicUsize,
    /// When the whole fetch must have ended (`scim.deadline_secs`).
    deadline: tokio::time::Instant,
    deadline_secs: u64,
}

/// How one attempt at a request ended.
enum Retry {
    /// Wait as the server asked, then retry.
    After(Duration, String),
    /// Back off exponentially, then retry.
    Backoff(String),
    /// Retrying cannot help.
    Fatal(HttpError),
}

impl Pager {
    fn concurrency(&self) -> usize {
        self.concurrency.load(Ordering::Relaxed).max(1)
    }

    /// Halves the concurrency after a 429, so the server is asked less at once.
    fn slow_down(&self) {
        let before = self
            .concurrency
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c > 1).then_some(c / 2)
            });
        if let Ok(before) = before {
            info!(
                from = before,
                to = before / 2,
                "rate limited; fewer pages at once"
            );
        }
    }

    /// Takes one retry from the fetch's budget; `false` when none is left.
    fn take_retry(&self) -> bool {
        self.retries_used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used < self.settings.max_retries).then_some(used + 1)
            })
            .is_ok()
    }

    fn url(&self, segment: &str) -> Result<Url, HttpError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| HttpError::Transport {
                what: "SCIM URL".into(),
                cause: "cannot be a base URL".into(),
            })?
            .pop_if_empty()
            .push(segment);
        Ok(url)
    }

    /// Reads `/ServiceProviderConfig`. A server without one (404, 501) or with one that is
    /// not JSON gets the cautious defaults; a refused token or an outage ends the fetch.
    async fn provider(&self) -> Result<Provider, String> {
        let what = "GET /ServiceProviderConfig";
        let url = self
            .url("ServiceProviderConfig")
            .map_err(|e| e.to_string())?;
        let read = |body: &str, _: &str| {
            serde_json::from_str::<Value>(body)
                .map(|v| Provider::parse(&v))
                .map_err(|e| format!("not JSON: {e}"))
        };
        match self.get(&url, what, read).await {
            Ok(provider) => Ok(provider),
            Err(HttpError::Status { status, .. }) if status == 404 || status == 501 => {
                warn!(
                    status,
                    "no /ServiceProviderConfig; paging without sort, at `scim.page_size`"
                );
                Ok(Provider::UNKNOWN)
            }
            Err(e) => Err(format!("reading the server's configuration failed: {e}")),
        }
    }

    /// One page of `/Users`, retried under the fetch's single retry budget.
    async fn page(&self, start: u64, count: u32, sort: bool) -> Result<Page, String> {
        let failed = |e: &dyn std::fmt::Display| format!("page at startIndex {start} failed: {e}");
        let mut url = self.url("Users").map_err(|e| failed(&e))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("startIndex", &start.to_string())
                .append_pair("count", &count.to_string());
            if sort {
                query
                    .append_pair("sortBy", "id")
                    .append_pair("sortOrder", "ascending");
            }
        }
        let what = format!("GET /Users?startIndex={start}&count={count}");
        let resources = self
            .get(&url, &what, parse_page)
            .await
            .map_err(|e| failed(&e))?;
        let total_results = resources
            .total_results
            .map_err(|e| format!("page at startIndex {start}: {}", self.clean(&e)))?;
        let mut accounts = Vec::with_capacity(resources.resources.len());
        for (i, mut resource) in resources.resources.into_iter().enumerate() {
            redact_value(&mut resource, &self.token);
            let account = parse_account(&resource).map_err(|e| {
                format!(
                    "page at startIndex {start}: resource {} (user {}): {e}",
                    i + 1,
                    start + i as u64
                )
            })?;
            accounts.push((account, resource.to_string()));
        }
        Ok(Page {
            total_results,
            accounts,
        })
    }

    /// A `GET` whose body `read` turns into `T`, retried on 429, 5xx, timeouts, resets and
    /// bodies that do not read (a proxy's error page, a cut connection).
    #[instrument(skip_all, fields(request = %what))]
    async fn get<T>(
        &self,
        url: &Url,
        what: &str,
        read: impl Fn(&str, &str) -> Result<T, String>,
    ) -> Result<T, HttpError> {
        loop {
            let sent = tokio::time::timeout_at(self.deadline, self.send(url, what, &read));
            let wait = match sent.await {
                Err(_) => return Err(self.past_deadline(what)),
                Ok(result) => result,
            };
            let wait = match wait {
                Ok(value) => return Ok(value),
                Err(Retry::Fatal(e)) => return Err(e),
                Err(Retry::After(wait, why)) => (wait, why),
                Err(Retry::Backoff(why)) => (
                    http::backoff(
                        self.settings.retry_base,
                        self.retries_used.load(Ordering::Relaxed),
                    ),
                    why,
                ),
            };
            let (wait, last) = wait;
            if !self.take_retry() {
                return Err(HttpError::RetriesExhausted {
                    what: what.to_owned(),
                    retries: self.retries_used.load(Ordering::Relaxed),
                    last,
                });
            }
            let wait = wait.min(self.settings.max_wait);
            if tokio::time::Instant::now() + wait >= self.deadline {
                return Err(self.past_deadline(what));
            }
            warn!(reason = %last, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn send<T>(
        &self,
        url: &Url,
        what: &str,
        read: &impl Fn(&str, &str) -> Result<T, String>,
    ) -> Result<T, Retry> {
        let response = self
            .client
            .get(url.clone())
            .bearer_auth(&self.token)
            .header("accept", "application/scim+json, application/json")
            .send()
            .await
            .map_err(|e| Retry::Backoff(self.clean(&transport_cause(e))))?;

        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.slow_down();
            let hinted = http::retry_after(response.headers(), chrono::Utc::now());
            let wait = hinted.unwrap_or_else(|| {
                http::backoff(
                    self.settings.retry_base,
                    self.retries_used.load(Ordering::Relaxed),
                )
            });
            return Err(Retry::After(wait, "HTTP 429 Too Many Requests".into()));
        }
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| self.clean(&String::from_utf8_lossy(v.as_bytes())))
            .unwrap_or_default();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Retry::Backoff(self.clean(&transport_cause(e))))?;

        if http::is_retryable(status) {
            return Err(Retry::Backoff(format!(
                "HTTP {}{}",
                status.as_u16(),
                scim_error_detail(&String::from_utf8_lossy(&bytes), &self.token)
            )));
        }
        if !status.is_success() {
            return Err(Retry::Fatal(HttpError::Status {
                what: what.to_owned(),
                status: status.as_u16(),
                detail: scim_error_detail(&String::from_utf8_lossy(&bytes), &self.token),
                hint: http::hint_for(status),
            }));
        }
        // Never decoded lossily: a replaced character would change a name or an id.
        let body = std::str::from_utf8(&bytes).map_err(|e| {
            Retry::Fatal(HttpError::Transport {
                what: what.to_owned(),
                cause: format!(
                    "the response body is not UTF-8 (invalid byte at offset {}); SCIM \
                     responses are UTF-8 JSON, so it was refused rather than read lossily",
                    e.valid_up_to()
                ),
            })
        })?;
        read(body, &content_type).map_err(|e| Retry::Backoff(self.clean(&e)))
    }

    /// The fetch ran out of `scim.deadline_secs`.
    fn past_deadline(&self, what: &str) -> HttpError {
        HttpError::Transport {
            what: what.to_owned(),
            cause: format!(
                "the snapshot took longer than `scim.deadline_secs` ({} s) and was stopped; \
                 raise it if the organization is this large or the server this slow",
                self.deadline_secs
            ),
        }
    }

    /// Server-supplied text made safe for errors, logs, the store and reports.
    fn clean(&self, text: &str) -> String {
        http::server_text(text, &self.token)
    }
}

fn transport_cause(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out (raise `scim.timeout_secs` if the server is slow)".into()
    } else {
        // The URL carries no secret, but keep the message short and free of it anyway.
        http::error_chain(&e.without_url())
    }
}

/// The `detail` of a SCIM error body, if the body is one, with `token` redacted (before it
/// is shortened, so no part of it is left) and control characters escaped.
fn scim_error_detail(body: &str, token: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| get(v.as_object()?, "detail").and_then(as_text))
        .map(|d| http::server_text(&d, token))
        .map(|d| format!(" ({})", d.chars().take(200).collect::<String>()))
        .unwrap_or_default()
}

/// Replaces `token` in every string (and key) of a resource, so that a server echoing it
/// cannot put it in the store or a report.
fn redact_value(value: &mut Value, token: &str) {
    if token.is_empty() {
        return;
    }
    match value {
        Value::String(s) if s.contains(token) => *s = http::redact(s, token),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, token)),
        Value::Object(object) => {
            if object.keys().any(|k| k.contains(token)) {
                *object = std::mem::take(object)
                    .into_iter()
                    .map(|(k, v)| (http::redact(&k, token), v))
                    .collect();
            }
            object.values_mut().for_each(|v| redact_value(v, token));
        }
        _ => {}
    }
}

/// A ListResponse body, before its resources are read.
#[derive(Debug)]
struct ListPage {
    /// `totalResults`: `None` when missing, an error when it is not a count.
    total_results: Result<Option<u64>, String>,
    resources: Vec<Value>,
}

fn parse_page(body: &str, content_type: &str) -> Result<ListPage, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        let kind = if content_type.is_empty() {
            "no content type"
        } else {
            content_type
        };
        format!("the body is not SCIM JSON ({kind}): {e}")
    })?;
    let Value::Object(mut object) = value else {
        return Err("the body is JSON but not a SCIM ListResponse object".into());
    };
    let total_results = get(&object, "totalResults").map_or(Ok(None), total_results);
    let key = object
        .keys()
        .find(|k| k.eq_ignore_ascii_case("Resources"))
        .cloned();
    let resources = match key.and_then(|k| object.remove(&k)) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("`Resources` is not an array".into()),
    };
    Ok(ListPage {
        total_results,
        resources,
    })
}

/// Reads `totalResults`: a whole number of users, given as a number (`5`, or `5.0`, which
/// is the same count) or a string of digits. Anything else, a negative number or a
/// fraction, is refused: the count the snapshot is judged by cannot be guessed.
fn total_results(value: &Value) -> Result<Option<u64>, String> {
    let refused = |shown: String| {
        Err(format!(
            "totalResults is {shown}, not a count of users (a whole number, 0 or more); \
             the snapshot cannot be judged complete without it"
        ))
    };
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(count), _) => Ok(Some(count)),
            // Exact below 2^53; `5.0` is the count 5.
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < 9_007_199_254_740_992.0 => {
                Ok(Some(f as u64))
            }
            _ => refused(n.to_string()),
        },
        Value::String(s) => match s.trim().parse::<u64>() {
            Ok(count) => Ok(Some(count)),
            Err(_) => refused(format!("`{}`", s.chars().take(40).collect::<String>())),
        },
        other => refused(format!(
            "`{}`",
            other.to_string().chars().take(40).collect::<String>()
        )),
    }
}

/// A member of a JSON object, by name, ignoring ASCII case.
fn get<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A string or number as trimmed text, control characters escaped (so that no name or
/// id can drive a terminal or forge a log line); empty is `None`.
fn as_text(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => http::server_text(s.trim(), ""),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

fn text_at(object: &Map<String, Value>, key: &str) -> Option<String> {
    get(object, key).and_then(as_text)
}

/// `dockerRole` as text. A value that is present but not text (a list, an object) is
/// kept as its JSON, escaped, so that reconciliation reports it as an unknown role instead
/// of reading the account as having none.
fn role_at(object: &Map<String, Value>) -> Option<String> {
    match get(object, "dockerRole")? {
        Value::Null => None,
        v @ (Value::Array(_) | Value::Object(_)) => Some(http::server_text(&v.to_string(), "")),
        v => as_text(v),
    }
}

fn date_at(object: &Map<String, Value>, key: &str) -> Option<DateTime<Utc>> {
    let text = text_at(object, key)?;
    DateTime::parse_from_rfc3339(&text)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Reads one SCIM user leniently: every attribute but `id` is optional, keys match
/// case-insensitively, `emails` may be strings or objects.
pub fn parse_account(resource: &Value) -> Result<Account, String> {
    let object = resource
        .as_object()
        .ok_or("a resource is not a JSON object")?;
    let id = text_at(object, "id").ok_or("a resource has no `id`")?;
    let name = get(object, "name").and_then(Value::as_object);
    let docker = get(object, DOCKER_EXTENSION).and_then(Value::as_object);
    let enterprise = get(object, ENTERPRISE_EXTENSION).and_then(Value::as_object);

    let active = match get(object, "active") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.trim().eq_ignore_ascii_case("false"),
        _ => true,
    };
    let emails = match get(object, "emails") {
        Some(Value::Array(items)) => items.iter().filter_map(parse_email).collect(),
        _ => Vec::new(),
    };
    let groups = match get(object, "groups") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|g| match g {
                Value::Object(o) => text_at(o, "display").or_else(|| text_at(o, "value")),
                other => as_text(other),
            })
            .collect(),
        _ => Vec::new(),
    };
    let meta = get(object, "meta").and_then(Value::as_object);

    Ok(Account {
        id,
        user_name: text_at(object, "userName"),
        external_id: text_at(object, "externalId"),
        employee_number: enterprise.and_then(|e| text_at(e, "employeeNumber")),
        display_name: text_at(object, "displayName"),
        given_name: name.and_then(|n| text_at(n, "givenName")),
        family_name: name.and_then(|n| text_at(n, "familyName")),
        active,
        emails,
        groups,
        role: docker.and_then(role_at),
        team: docker.and_then(|d| text_at(d, "dockerTeam")),
        org: docker.and_then(|d| text_at(d, "dockerOrg")),
        created: meta.and_then(|m| date_at(m, "created")),
        last_modified: meta.and_then(|m| date_at(m, "lastModified")),
    })
}

fn parse_email(item: &Value) -> Option<Email> {
    match item {
        Value::Object(o) => Some(Email {
            value: text_at(o, "value")?,
            primary: matches!(get(o, "primary"), Some(Value::Bool(true)))
                || matches!(get(o, "primary"), Some(Value::String(s)) if s == "true"),
            kind: text_at(o, "type"),
        }),
        other => Some(Email {
            value: as_text(other)?,
            primary: false,
            kind: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_account_with_only_an_id_parses_as_active() {
        let a = parse_account(&json!({"id": "u1"})).unwrap();
        assert_eq!(a.id, "u1");
        assert!(a.active);
        assert_eq!(a.user_name, None);
        assert!(a.emails.is_empty());
    }

    #[test]
    fn a_resource_without_id_is_refused() {
        assert!(parse_account(&json!({"userName": "a@x"})).is_err());
        assert!(parse_account(&json!({"id": "  "})).is_err());
        assert!(parse_account(&json!("u1")).is_err());
    }

    #[test]
    fn keys_match_case_insensitively_and_extensions_are_read() {
        let a = parse_account(&json!({
            "ID": "u2",
            "USERNAME": "Jane@Example.com",
            "Active": false,
            "externalid": 42,
            "Name": {"GivenName": "Jane", "familyName": "Doe"},
            "urn:ietf:params:scim:schemas:extension:docker:2.0:User":
                {"dockerRole": "owner", "dockerTeam": "platform", "dockerOrg": "acme"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                {"employeeNumber": "00042"},
            "meta": {"created": "2024-01-02T03:04:05Z"}
        }))
        .unwrap();
        assert_eq!(a.id, "u2");
        assert_eq!(a.user_name.as_deref(), Some("Jane@Example.com"));
        assert!(!a.active);
        assert_eq!(a.external_id.as_deref(), Some("42"));
        assert_eq!(a.full_name().as_deref(), Some("Jane Doe"));
        assert_eq!(a.role.as_deref(), Some("owner"));
        assert_eq!(a.team.as_deref(), Some("platform"));
        assert_eq!(a.org.as_deref(), Some("acme"));
        assert_eq!(a.employee_number.as_deref(), Some("00042"));
        assert!(a.created.is_some());
    }

    #[test]
    fn emails_may_be_strings_or_objects() {
        let a = parse_account(&json!({
            "id": "u3",
            "emails": ["a@x.example", {"value": "b@x.example", "primary": true}, {"type": "work"}]
        }))
        .unwrap();
        let values: Vec<_> = a.emails.iter().map(|e| e.value.as_str()).collect();
        assert_eq!(values, ["a@x.example", "b@x.example"]);
        assert_eq!(a.email(), Some("b@x.example"));
    }

    #[test]
    fn both_spellings_of_the_list_key_are_read() {
        for key in ["Resources", "resources"] {
            let body = format!(r#"{{"totalResults": 1, "{key}": [{{"id": "u"}}]}}"#);
            let page = parse_page(&body, "application/scim+json").unwrap();
            assert_eq!(page.resources.len(), 1, "{key}");
            assert_eq!(page.total_results, Ok(Some(1)));
        }
    }

    #[test]
    fn the_service_provider_config_is_read_leniently() {
        let cases = [
            (
                json!({"filter": {"supported": true, "maxResults": 50}, "sort": {"supported": true}}),
                Provider {
                    max_results: Some(50),
                    sort: true,
                },
            ),
            (
                json!({"FILTER": {"maxresults": "120"}, "Sort": {"Supported": "true"}}),
                Provider {
                    max_results: Some(120),
                    sort: true,
                },
            ),
            (
                json!({"filter": {"maxResults": 0}, "sort": {"supported": false}}),
                Provider::UNKNOWN,
            ),
            (json!({}), Provider::UNKNOWN),
            (json!("not an object"), Provider::UNKNOWN),
        ];
        for (body, want) in cases {
            assert_eq!(Provider::parse(&body), want, "{body}");
        }
    }

    #[test]
    fn the_count_is_the_smallest_of_page_size_max_results_and_200() {
        let with = |max_results| Provider {
            max_results,
            sort: true,
        };
        assert_eq!(with(None).count(200), 200);
        assert_eq!(with(None).count(500), 200);
        assert_eq!(with(Some(50)).count(200), 50);
        assert_eq!(with(Some(1000)).count(120), 120);
        assert_eq!(with(Some(u64::MAX)).count(200), 200);
        assert_eq!(with(Some(10)).count(0), 1);
    }

    #[test]
    fn an_html_page_is_not_a_scim_page() {
        let err = parse_page("<html>maintenance</html>", "text/html").unwrap_err();
        assert!(err.contains("not SCIM JSON (text/html)"), "{err}");
    }

    #[test]
    fn total_results_is_a_whole_number_or_refused_clearly() {
        for (value, want) in [
            (json!(5), Ok(Some(5))),
            (json!(5.0), Ok(Some(5))),
            (json!("5"), Ok(Some(5))),
            (json!(" 7 "), Ok(Some(7))),
            (json!(0), Ok(Some(0))),
            (Value::Null, Ok(None)),
        ] {
            assert_eq!(total_results(&value), want, "{value}");
        }
        for (value, shown) in [
            (json!(-1), "-1"),
            (json!(5.5), "5.5"),
            (json!(-0.5), "-0.5"),
            (json!(1e300), "1e+300"),
            (json!("-1"), "`-1`"),
            (json!("five"), "`five`"),
            (json!(true), "`true`"),
            (json!([5]), "`[5]`"),
        ] {
            let err = total_results(&value).unwrap_err();
            assert!(err.contains(&format!("totalResults is {shown}")), "{err}");
            assert!(err.contains("not a count of users"), "{err}");
        }
        let page = parse_page(r#"{"totalResults": -1, "Resources": []}"#, "").unwrap();
        assert!(page.total_results.is_err());
    }

    fn page_of(ids: &[&str], total: u64) -> Page {
        Page {
            total_results: Some(total),
            accounts: ids
                .iter()
                .map(|id| (parse_account(&json!({"id": id})).unwrap(), String::new()))
                .collect(),
        }
    }

    #[test]
    fn ids_1_and_1_with_a_space_are_one_user_never_counted_twice() {
        let mut got = Collected::default();
        got.absorb(1, page_of(&["1", "1 ", "2"], 2)).unwrap();
        assert_eq!(got.accounts.len(), 1 + 1);
        let fetched = got.judge(None, 0);
        assert_eq!(fetched.completeness, Completeness::Complete);
        assert_eq!(fetched.accounts.len(), 2);

        // Served with other content under the near-same id: refused, not merged.
        let mut got = Collected::default();
        let mut page = page_of(&["1", "2"], 2);
        page.accounts.push((
            parse_account(&json!({"id": "1 ", "userName": "other@x.example"})).unwrap(),
            String::new(),
        ));
        let Err(Stop::Failed(reason)) = got.absorb(1, page) else {
            panic!("a different user under id `1 ` was accepted");
        };
        assert!(reason.contains("user id `1` was served twice"), "{reason}");
        assert!(reason.contains("startIndex 1"), "{reason}");
    }

    #[test]
    fn a_page_served_again_stops_the_fetch_as_incomplete() {
        let mut got = Collected::default();
        got.absorb(1, page_of(&["a", "b"], 1_000_000_000_000))
            .unwrap();
        let Err(Stop::Failed(reason)) = got.absorb(3, page_of(&["a", "b"], 1_000_000_000_000))
        else {
            panic!("a repeated page was accepted");
        };
        assert!(
            reason.contains("startIndex 3 brought no new user"),
            "{reason}"
        );
        assert!(reason.contains("ignores startIndex"), "{reason}");
        assert!(reason.contains("2 of 1000000000000 users"), "{reason}");
    }

    #[test]
    fn control_characters_in_server_text_are_escaped_and_the_token_redacted() {
        let a = parse_account(&json!({
            "id": "u\u{1b}[2J1",
            "userName": "a@x.example\r\nINFO forged",
            "name": {"givenName": "Eve\u{202e}"}
        }))
        .unwrap();
        assert_eq!(a.id, "u\\u{1b}[2J1");
        assert_eq!(
            a.user_name.as_deref(),
            Some("a@x.example\\u{d}\\u{a}INFO forged")
        );
        assert_eq!(a.given_name.as_deref(), Some("Eve\\u{202e}"));

        let mut resource = json!({"id": "u", "displayName": "see tok-9", "tok-9": ["tok-9!"]});
        redact_value(&mut resource, "tok-9");
        assert!(!resource.to_string().contains("tok-9"), "{resource}");

        let body = r#"{"status": "401", "detail": "Bearer tok-9 refused\u001b[31m"}"#;
        let detail = scim_error_detail(body, "tok-9");
        assert_eq!(detail, " (Bearer [redacted] refused\\u{1b}[31m)");
        let long = format!(r#"{{"detail": "{}tok-9"}}"#, "x".repeat(197));
        assert!(!scim_error_detail(&long, "tok-9").contains("tok"));
    }

    // Regression: a `dockerRole` sent as a list or an object read as no role at all.
    #[test]
    fn a_role_that_is_not_text_is_kept_as_json_not_dropped() {
        let resource = serde_json::json!({
            "id": "1",
            "urn:ietf:params:scim:schemas:extension:docker:2.0:User": {"dockerRole": ["owner"]}
        });
        let account = parse_account(&resource).unwrap();
        assert_eq!(account.role.as_deref(), Some(r#"["owner"]"#));
    }
}
