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

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::{Map, Value};
use tracing::{debug, info, instrument, warn};

use crate::config::ScimConfig;
use crate::http::{self, ClientSettings, HttpError};

const DOCKER_EXTENSION: &str = "urn:ietf:params:scim:schemas:extension:docker:2.0:User";
const ENTERPRISE_EXTENSION: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

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

/// Fetches every user under `cfg.url`, page by page, and judges the result.
///
/// Failures after the first request do not return `Err`: they come back as an incomplete
/// snapshot with the reason, so the run can store and report them.
#[instrument(skip_all, fields(url = %cfg.url))]
pub async fn fetch_all(cfg: &ScimConfig, token: &str, progress: bool) -> Result<Fetched, String> {
    let base = http::check_url("scim.url", &cfg.url)?;
    let settings = ClientSettings {
        timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
        max_retries: cfg.max_retries,
        retry_base: Duration::from_millis(cfg.retry_base_ms),
        max_wait: Duration::from_secs(120),
    };
    let client = http::build_client(&settings)?;
    let mut pager = Pager {
        client,
        base,
        token,
        settings,
        retries_used: 0,
    };
    let count = cfg.page_size.clamp(1, 200);

    let bar = progress_bar(progress);
    let mut fetched = Fetched {
        accounts: Vec::new(),
        total_results: None,
        pages: 0,
        completeness: Completeness::Complete,
    };
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let mut received: u64 = 0;
    let mut start: u64 = 1;

    let incomplete = loop {
        let page = match pager.page(start, count).await {
            Ok(page) => page,
            Err(e) => break Some(format!("page at startIndex {start} failed: {e}")),
        };
        fetched.pages += 1;

        match (fetched.total_results, page.total_results) {
            (_, None) => break Some(format!("page at startIndex {start} has no totalResults")),
            (None, Some(t)) => {
                fetched.total_results = Some(t);
                bar.set_length(t);
            }
            (Some(before), Some(now)) if before != now => {
                break Some(format!(
                    "totalResults changed from {before} to {now} during the fetch"
                ));
            }
            _ => {}
        }
        let total = fetched.total_results.unwrap_or(0);

        if page.resources.is_empty() {
            if received < total {
                break Some(format!(
                    "page at startIndex {start} was empty after {received} of {total} users"
                ));
            }
            break None;
        }

        let mut conflict = None;
        for resource in page.resources {
            let account = match parse_account(&resource) {
                Ok(a) => a,
                Err(e) => {
                    conflict = Some(format!("page at startIndex {start}: {e}"));
                    break;
                }
            };
            match index_of.get(&account.id) {
                Some(&i) if fetched.accounts[i].0 != account => {
                    conflict = Some(format!(
                        "user id {} came back with different content on two pages",
                        account.id
                    ));
                    break;
                }
                Some(_) => debug!(id = %account.id, "same user served twice; kept once"),
                None => {
                    index_of.insert(account.id.clone(), fetched.accounts.len());
                    fetched.accounts.push((account, resource.to_string()));
                }
            }
            received += 1;
        }
        if conflict.is_some() {
            break conflict;
        }
        bar.set_position(fetched.accounts.len() as u64);
        start += page.received;

        if received >= total {
            break None;
        }
    };
    bar.finish_and_clear();

    let unique = fetched.accounts.len() as u64;
    fetched.completeness = match (incomplete, fetched.total_results) {
        (Some(reason), _) => Completeness::Incomplete { reason },
        (None, Some(total)) if unique != total => Completeness::Incomplete {
            reason: format!("{unique} unique user ids do not add up to totalResults {total}"),
        },
        (None, _) => Completeness::Complete,
    };
    match &fetched.completeness {
        Completeness::Complete => info!(users = unique, pages = fetched.pages, "snapshot complete"),
        Completeness::Incomplete { reason } => {
            warn!(users = unique, %reason, "snapshot incomplete")
        }
    }
    Ok(fetched)
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

#[derive(Debug)]
struct Page {
    total_results: Option<u64>,
    resources: Vec<Value>,
    received: u64,
}

struct Pager<'a> {
    client: reqwest::Client,
    base: Url,
    token: &'a str,
    settings: ClientSettings,
    retries_used: u32,
}

impl Pager<'_> {
    /// One page, retried under the fetch's single retry budget.
    async fn page(&mut self, start: u64, count: u32) -> Result<Page, HttpError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| HttpError::Transport {
                what: "SCIM URL".into(),
                cause: "cannot be a base URL".into(),
            })?
            .push("Users");
        url.query_pairs_mut()
            .append_pair("startIndex", &start.to_string())
            .append_pair("count", &count.to_string());
        let what = format!("GET /Users?startIndex={start}&count={count}");

        let mut last;
        loop {
            let attempt = self.send(&url, &what).await;
            let wait = match attempt {
                Ok(page) => return Ok(page),
                Err(Retry::Fatal(e)) => return Err(e),
                Err(Retry::After(wait, why)) => {
                    last = why;
                    wait
                }
                Err(Retry::Backoff(why)) => {
                    last = why;
                    http::backoff(self.settings.retry_base, self.retries_used)
                }
            };
            if self.retries_used >= self.settings.max_retries {
                return Err(HttpError::RetriesExhausted {
                    what,
                    retries: self.retries_used,
                    last,
                });
            }
            self.retries_used += 1;
            let wait = wait.min(self.settings.max_wait);
            warn!(request = %what, reason = %last, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn send(&self, url: &Url, what: &str) -> Result<Page, Retry> {
        let response = self
            .client
            .get(url.clone())
            .bearer_auth(self.token)
            .header("accept", "application/scim+json, application/json")
            .send()
            .await
            .map_err(|e| Retry::Backoff(transport_cause(e)))?;

        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = http::retry_after(response.headers(), chrono::Utc::now())
                .unwrap_or_else(|| http::backoff(self.settings.retry_base, self.retries_used));
            return Err(Retry::After(wait, "HTTP 429 Too Many Requests".into()));
        }
        if http::is_retryable(status) {
            return Err(Retry::Backoff(format!("HTTP {}", status.as_u16())));
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response
            .text()
            .await
            .map_err(|e| Retry::Backoff(transport_cause(e)))?;

        if !status.is_success() {
            return Err(Retry::Fatal(HttpError::Status {
                what: what.to_owned(),
                status: status.as_u16(),
                detail: scim_error_detail(&body),
                hint: http::hint_for(status),
            }));
        }
        parse_page(&body, &content_type).map_err(|cause| {
            Retry::Fatal(HttpError::Transport {
                what: what.to_owned(),
                cause,
            })
        })
    }
}

enum Retry {
    /// Wait as the server asked, then retry.
    After(Duration, String),
    /// Back off exponentially, then retry.
    Backoff(String),
    /// Retrying cannot help.
    Fatal(HttpError),
}

fn transport_cause(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else {
        // The URL carries no secret, but keep the message short and free of it anyway.
        http::error_chain(&e.without_url())
    }
}

/// The `detail` of a SCIM error body, if the body is one.
fn scim_error_detail(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| get(v.as_object()?, "detail").and_then(as_text))
        .map(|d| format!(" ({})", d.chars().take(200).collect::<String>()))
        .unwrap_or_default()
}

fn parse_page(body: &str, content_type: &str) -> Result<Page, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        let kind = if content_type.is_empty() {
            "no content type"
        } else {
            content_type
        };
        format!("the body is not SCIM JSON ({kind}): {e}")
    })?;
    let object = value
        .as_object()
        .ok_or("the body is JSON but not a SCIM ListResponse object")?;
    let total_results = get(object, "totalResults").and_then(|v| match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    let resources = match get(object, "Resources") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err("`Resources` is not an array".into()),
    };
    let received = resources.len() as u64;
    Ok(Page {
        total_results,
        resources,
        received,
    })
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

/// A string or number as trimmed text; empty is `None`.
fn as_text(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

fn text_at(object: &Map<String, Value>, key: &str) -> Option<String> {
    get(object, key).and_then(as_text)
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
        role: docker.and_then(|d| text_at(d, "dockerRole")),
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
            assert_eq!(page.received, 1, "{key}");
            assert_eq!(page.total_results, Some(1));
        }
    }

    #[test]
    fn an_html_page_is_not_a_scim_page() {
        let err = parse_page("<html>maintenance</html>", "text/html").unwrap_err();
        assert!(err.contains("not SCIM JSON (text/html)"), "{err}");
    }
}
