//! A fake Docker Hub organization API on 127.0.0.1, for `hubreview demo` and the tests.
//!
//! It answers like Docker Hub: `POST /v2/auth/token` takes `identifier` and `secret` and
//! gives an `access_token` (a wrong pair gets `401` with a `detail`);
//! `GET /v2/orgs/{org}/members` pages by `page` and `page_size` (silently capped at 100)
//! and answers `{count, next, previous, results}` with an absolute `next` URL;
//! `GET /v2/orgs/{org}/invites` answers `{data: [...]}`. Every other method gets `405`, and
//! every request is recorded with the `Authorization` header it carried, so a test can
//! prove the product stayed read-only and sent its token nowhere else.
//!
//! [`HubFaults`] switches misbehaviour on while it runs: rate limits with `Retry-After`,
//! 500s, a page cut in the middle of its body, a page short of a member, a `next` link to
//! another origin, a bare array instead of the object, and a failing invites endpoint.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::activity::{self, Seen};

/// The Docker ID the demo's Hub token belongs to.
pub const DEMO_HUB_USERNAME: &str = "acme-review-bot";
/// The demo's Hub access token.
pub const DEMO_HUB_TOKEN: &str = "dckr_pat_demo-hub-token";
/// What the demo's Hub API adds to the members export: guests and invites.
pub const DEMO_HUB_JSON: &str = include_str!("../../fixtures/demo/hub.json");

/// The most members one page holds, as on Docker Hub.
pub const MAX_PAGE: usize = 100;

/// How the server is built.
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub org: String,
    pub username: String,
    pub token: String,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            org: super::DEMO_ORGANIZATION.into(),
            username: DEMO_HUB_USERNAME.into(),
            token: DEMO_HUB_TOKEN.into(),
        }
    }
}

/// Misbehaviour, switched on while the server runs.
#[derive(Debug, Clone, Default)]
pub struct HubFaults {
    /// The next this many `GET`s answer 429 with `Retry-After: retry_after`.
    pub rate_limited: u32,
    pub retry_after: Option<String>,
    /// The next this many `GET`s answer 500.
    pub server_errors: u32,
    /// This members page (from 1) comes back cut in the middle of its body, this many
    /// times (`u32::MAX`: always).
    pub cut_page: Option<(usize, u32)>,
    /// This members page leaves out its last member, while `count` stays.
    pub short_page: Option<usize>,
    /// This members page (from 1) is the last: no `count` and no `next` link, as from a
    /// server that lost the rest of the list.
    pub ends_without_count: Option<usize>,
    /// The `next` link of the first members page points at this origin instead.
    pub foreign_next: Option<String>,
    /// Members come as a bare array, paged by `page`, without `count` or `next`.
    pub bare_array: bool,
    /// With `bare_array`: every page is the whole list, whatever `page` says.
    pub unpaged: bool,
    /// The invites endpoint answers this status.
    pub invites_status: Option<u16>,
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct HubRequest {
    pub method: String,
    pub path_and_query: String,
    /// The `Authorization` header as sent, if any.
    pub authorization: Option<String>,
    pub body: String,
}

/// A running fake Hub API. Dropping it shuts it down.
pub struct HubServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

struct Shared {
    options: HubOptions,
    origin: String,
    bearer: String,
    members: Mutex<Vec<Value>>,
    invites: Mutex<Vec<Value>>,
    faults: Mutex<HubFaults>,
    log: Mutex<Vec<HubRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts a server on `127.0.0.1` and an ephemeral port.
pub async fn start(
    members: Vec<Value>,
    invites: Vec<Value>,
    options: HubOptions,
) -> std::io::Result<HubServer> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        origin: format!("http://{addr}"),
        bearer: format!("hub-bearer-{}", addr.port()),
        options,
        members: Mutex::new(members),
        invites: Mutex::new(invites),
        faults: Mutex::new(HubFaults::default()),
        log: Mutex::new(Vec::new()),
    });
    let app = Router::new().fallback(handle).with_state(shared.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    });
    Ok(HubServer {
        addr,
        shared,
        stop: Some(stop),
        task: Some(task),
    })
}

impl HubServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the value for `hub.url`.
    pub fn origin(&self) -> String {
        self.shared.origin.clone()
    }

    /// The fault switches. Do not hold the guard across an `.await`.
    pub fn faults(&self) -> MutexGuard<'_, HubFaults> {
        lock(&self.shared.faults)
    }

    pub fn set_members(&self, members: Vec<Value>) {
        *lock(&self.shared.members) = members;
    }

    pub fn set_invites(&self, invites: Vec<Value>) {
        *lock(&self.shared.invites) = invites;
    }

    /// Every request received so far, in order.
    pub fn request_log(&self) -> Vec<HubRequest> {
        lock(&self.shared.log).clone()
    }

    /// The bearer token the server gives for the right credentials.
    pub fn bearer(&self) -> String {
        self.shared.bearer.clone()
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn answer(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn error(status: u16, detail: &str) -> Response {
    answer(status, &json!({"detail": detail, "message": detail}))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    lock(&shared.log).push(HubRequest {
        method: method.to_string(),
        path_and_query: uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| uri.path().to_owned()),
        authorization: authorization.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });

    if method == Method::POST && uri.path() == "/v2/auth/token" {
        let credentials: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let right = credentials["identifier"].as_str() == Some(&shared.options.username)
            && credentials["secret"].as_str() == Some(&shared.options.token);
        return if right {
            answer(200, &json!({"access_token": shared.bearer}))
        } else {
            error(401, "Incorrect authentication credentials.")
        };
    }
    if method != Method::GET {
        return error(405, "Method not allowed.");
    }
    if authorization.as_deref() != Some(&format!("Bearer {}", shared.bearer)) {
        return error(
            401,
            "Authentication credentials were not provided or are invalid.",
        );
    }
    {
        let mut faults = lock(&shared.faults);
        if faults.rate_limited > 0 {
            faults.rate_limited -= 1;
            let mut response = error(429, "Rate limit exceeded.");
            if let Some(after) = faults.retry_after.as_deref()
                && let Ok(value) = after.parse()
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        if faults.server_errors > 0 {
            faults.server_errors -= 1;
            return error(500, "Internal server error.");
        }
    }

    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v2", "orgs", org, "members"] if *org == shared.options.org => members_page(&shared, &uri),
        ["v2", "orgs", org, "invites"] if *org == shared.options.org => {
            if let Some(status) = lock(&shared.faults).invites_status {
                return error(status, "The invites could not be listed.");
            }
            answer(200, &json!({"data": *lock(&shared.invites)}))
        }
        ["v2", "orgs", _, _] => error(404, "Not found."),
        _ => error(404, "Not found."),
    }
}

fn members_page(shared: &Shared, uri: &Uri) -> Response {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let number = |key: &str, default: usize| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let page = number("page", 1).max(1);
    let size = number("page_size", 25).clamp(1, MAX_PAGE);
    let members = lock(&shared.members).clone();
    let mut faults = lock(&shared.faults);

    let start = (page - 1) * size;
    let mut results: Vec<Value> = members.iter().skip(start).take(size).cloned().collect();
    if faults.short_page == Some(page) {
        results.pop();
    }
    if faults.bare_array {
        if faults.unpaged {
            return answer(200, &Value::Array(members));
        }
        return answer(200, &Value::Array(results));
    }
    let path = uri.path();
    let next = (start + size < members.len()).then(|| {
        let origin = match (&faults.foreign_next, page) {
            (Some(foreign), 1) => foreign.clone(),
            _ => shared.origin.clone(),
        };
        format!("{origin}{path}?page={}&page_size={size}", page + 1)
    });
    let previous =
        (page > 1).then(|| format!("{}{path}?page={}&page_size={size}", shared.origin, page - 1));
    let (count, next) = match faults.ends_without_count == Some(page) {
        true => (None, None),
        false => (Some(members.len()), next),
    };
    let body = json!({
        "count": count,
        "next": next,
        "previous": previous,
        "results": results,
    })
    .to_string();
    if let Some((cut, times)) = faults.cut_page
        && cut == page
        && times > 0
    {
        if times != u32::MAX {
            faults.cut_page = Some((cut, times - 1));
        }
        let half = body.len() / 2;
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body[..half].to_owned()))
            .unwrap_or_default();
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// A member object as the members API gives it.
pub fn member_json(m: &activity::Member, guest: bool) -> Value {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
    };
    let seen = |s: Seen| match s {
        Seen::At(t) => Some(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        _ => None,
    };
    let role = match m.permission.as_deref() {
        Some("owner") => "Owner",
        Some("editor") => "Editor",
        _ => "Member",
    };
    let mut o = json!({
        "id": format!("{:032x}", m.row),
        "company": "",
        "date_joined": time(m.date_joined),
        "full_name": m.name.clone().unwrap_or_default(),
        "gravatar_email": "",
        "gravatar_url": "",
        "location": "",
        "profile_url": "",
        "type": "User",
        "username": m.username,
        "email": m.email,
        "role": role,
        "groups": m.teams.iter().flat_map(|t| t.split(',').map(|g| g.trim().to_owned())).collect::<Vec<_>>(),
        "is_guest": guest,
        "primary_email": m.email,
        "last_desktop_version": m.desktop_version.clone().unwrap_or_default(),
    });
    // Without Insights, the activity fields are absent, not null.
    if m.last_logged_in != Seen::Unknown {
        o["last_logged_in_at"] = json!(seen(m.last_logged_in));
    }
    if m.last_seen != Seen::Unknown {
        o["last_seen_at"] = json!(seen(m.last_seen));
    }
    o
}

/// The demo organization's members as the members API gives them: the members export's
/// rows, with the guests `hub.json` names.
pub fn demo_members() -> Vec<Value> {
    let hub: Value = serde_json::from_str(DEMO_HUB_JSON).unwrap_or(Value::Null);
    let guests: Vec<&str> = hub["guests"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let export = activity::read_bytes(
        std::path::Path::new("activity.csv"),
        super::DEMO_ACTIVITY_CSV.as_bytes(),
        "insights",
    );
    export
        .map(|e| {
            e.members
                .iter()
                .map(|m| {
                    let guest = m.username.as_deref().is_some_and(|u| guests.contains(&u));
                    member_json(m, guest)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The demo organization's pending invites.
pub fn demo_invites() -> Vec<Value> {
    let hub: Value = serde_json::from_str(DEMO_HUB_JSON).unwrap_or(Value::Null);
    hub["invites"].as_array().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_members_come_from_the_export_with_one_guest() {
        let members = demo_members();
        assert_eq!(members.len(), 497);
        let guests: Vec<&Value> = members.iter().filter(|m| m["is_guest"] == true).collect();
        assert_eq!(guests.len(), 1);
        assert_eq!(guests[0]["username"], "vsaarfreelance");
        assert_eq!(demo_invites().len(), 3);
        // Every member reads back as the product reads the API.
        for (i, m) in members.iter().enumerate() {
            crate::hub::parse_member(m.as_object().unwrap(), i + 1).unwrap();
        }
    }
}
