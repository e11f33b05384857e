//! `hubreview doctor`: checks everything a run needs, one line per check, and changes
//! nothing: no store is created or migrated, no lock is taken, nothing is sent.
//!
//! The checks, in order: the configuration parses; the store is writable (or its folder
//! is, when there is no store yet); the SCIM URL and token (`/ServiceProviderConfig`, then
//! one `/Users?count=1`); the Hub API (sign-in and one page of members, when `[hub]` is
//! configured); the SMTP relay's connection and AUTH; the IdP
//! export (and the members export, when configured) reads. Tokens and passwords never
//! appear in a line, even when a server echoes them.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tracing::instrument;

use crate::config::{Config, ConfigError, Secrets};
use crate::http::{self, ClientSettings};
use crate::store::{Store, StoreError};

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    /// Not configured, or cannot be checked because an earlier check failed.
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One line of the doctor's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
        }
    }

    fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Skip,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Continuation lines of a detail are indented under it, so each check starts a line.
        let detail = self.detail.replace('\n', &format!("\n{:18}", ""));
        write!(
            f,
            "{:<4}  {:<10}  {}",
            self.status.as_str(),
            self.name,
            detail
        )
    }
}

/// The names of every check, in order.
pub const CHECKS: [&str; 8] = [
    "config",
    "store",
    "scim",
    "hub",
    "smtp",
    "idp",
    "activity",
    "exceptions",
];

/// The lines for a configuration that did not load: the failure, then every other check
/// skipped.
pub fn config_failed(error: &ConfigError) -> Vec<Check> {
    let mut checks = vec![Check::fail("config", error.to_string().replace('\n', " "))];
    checks.extend(
        CHECKS[1..]
            .iter()
            .map(|name| Check::skip(name, "not checked: the configuration did not load")),
    );
    checks
}

/// Runs every check after the configuration loaded from `file` (if any).
pub async fn run(file: Option<&Path>, config: &Config, secrets: &Secrets) -> Vec<Check> {
    let mut checks = vec![Check::ok(
        "config",
        match file {
            Some(path) => format!("`{}` parsed and valid", path.display()),
            None => "no config file; defaults and HUBREVIEW_* variables are valid".into(),
        },
    )];
    checks.push(store(&config.store.path));
    checks.push(scim(config, secrets).await);
    checks.push(hub(config, secrets).await);
    checks.push(smtp(config, secrets).await);
    checks.push(idp(config));
    checks.push(activity(config));
    checks.push(exceptions(config));
    checks
}

fn store(path: &Path) -> Check {
    match Store::inspect(path) {
        Ok(found) if found.schema_version > found.known_version as i64 => Check::fail(
            "store",
            format!(
                "`{}` has schema version {}, newer than this hubreview ({}); use a newer \
                 hubreview",
                path.display(),
                found.schema_version,
                found.known_version
            ),
        ),
        Ok(found) if !found.writable => Check::fail(
            "store",
            format!(
                "`{}` cannot be written by this user; check its owner and mode (0600) and \
                 its folder's",
                path.display()
            ),
        ),
        Ok(found) if found.quick_check != "ok" => Check::fail(
            "store",
            format!(
                "`{}` fails PRAGMA quick_check: {}; restore it from a backup",
                path.display(),
                found.quick_check
            ),
        ),
        Ok(found) => {
            let migration = if found.schema_version < found.known_version as i64 {
                format!(
                    "; the next run migrates it from schema {} to {}",
                    found.schema_version, found.known_version
                )
            } else {
                String::new()
            };
            Check::ok(
                "store",
                format!(
                    "`{}` is writable, {} runs, schema {}{migration}",
                    path.display(),
                    found.runs,
                    found.schema_version
                ),
            )
        }
        Err(StoreError::Missing { .. }) => folder_writable(path),
        Err(e) => Check::fail("store", http::error_chain(&e)),
    }
}

/// For a store that does not exist yet: whether its folder exists and takes a new file. A
/// probe file is created and removed at once.
fn folder_writable(path: &Path) -> Check {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.is_dir() {
        return Check::ok(
            "store",
            format!(
                "no store at `{}` yet; the first run creates it and its folder `{}`",
                path.display(),
                folder.display()
            ),
        );
    }
    let probe = folder.join(format!(".hubreview-doctor-{}", std::process::id()));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match created {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Check::ok(
                "store",
                format!(
                    "no store at `{}` yet; its folder is writable and the first run creates it",
                    path.display()
                ),
            )
        }
        Err(e) => Check::fail(
            "store",
            format!(
                "no store at `{}` yet, and its folder `{}` is not writable: {e}; set \
                 `store.path` to a writable place",
                path.display(),
                folder.display()
            ),
        ),
    }
}

#[instrument(skip_all, fields(url = %config.scim.url))]
async fn scim(config: &Config, secrets: &Secrets) -> Check {
    let Some(token) = secrets.scim_token.as_deref() else {
        return Check::fail(
            "scim",
            "no SCIM token: set HUBREVIEW_SCIM_TOKEN (or HUBREVIEW_SCIM_TOKEN_FILE)",
        );
    };
    let base = match http::check_url("scim.url", &config.scim.url) {
        Ok(url) => url,
        Err(e) => return Check::fail("scim", e),
    };
    let settings = ClientSettings {
        timeout: Duration::from_secs(config.scim.timeout_secs.max(1)),
        max_retries: 0,
        retry_base: Duration::ZERO,
        max_wait: Duration::ZERO,
        ca_file: config
            .scim
            .ca_file
            .clone()
            .map(|path| ("scim.ca_file", path)),
    };
    let client = match http::build_client(&settings, &base) {
        Ok(c) => c,
        Err(e) => return Check::fail("scim", e),
    };
    let base = base.as_str().trim_end_matches('/').to_owned();

    let spc = format!("{base}/ServiceProviderConfig");
    if let Err(e) = get_json(&client, &spc, token).await {
        return Check::fail("scim", redact(e, token));
    }
    let users = format!("{base}/Users?startIndex=1&count=1");
    match get_json(&client, &users, token).await {
        Ok(body) => match body.get("totalResults").and_then(Value::as_u64) {
            Some(total) => Check::ok(
                "scim",
                format!(
                    "`{base}`: ServiceProviderConfig answered and /Users reports {total} users"
                ),
            ),
            None => Check::fail(
                "scim",
                format!(
                    "`{users}` answered without totalResults; check that `scim.url` is \
                     Docker's SCIM base ending in /v2/scim/2.0"
                ),
            ),
        },
        Err(e) => Check::fail("scim", redact(e, token)),
    }
}

/// GETs `url` with the token and parses a JSON body; the error names the URL, the status
/// and what to check.
async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Result<Value, String> {
    let response = client
        .get(url)
        .bearer_auth(token)
        .header(reqwest::header::ACCEPT, "application/scim+json")
        .send()
        .await
        .map_err(|e| format!("`{url}`: {}", http::error_chain(&e)))?;
    let status = response.status();
    if status != StatusCode::OK {
        return Err(format!(
            "`{url}`: HTTP {}; {}",
            status.as_u16(),
            http::hint_for(status)
        ));
    }
    let text = response
        .text()
        .await
        .map_err(|e| format!("`{url}`: {}", http::error_chain(&e)))?;
    serde_json::from_str(&text).map_err(|e| {
        format!("`{url}` answered 200 but not with JSON ({e}); check `scim.url` and any proxy")
    })
}

fn redact(text: String, secret: &str) -> String {
    if secret.is_empty() {
        text
    } else {
        text.replace(secret, "[redacted]")
    }
}

/// Signs in to the Hub API and reads one page of members, when `[hub]` is configured.
async fn hub(config: &Config, secrets: &Secrets) -> Check {
    if !config.hub.configured() {
        let token = if secrets.hub_token.is_some() {
            "; HUBREVIEW_HUB_TOKEN is set but unused"
        } else {
            ""
        };
        return Check::skip(
            "hub",
            format!(
                "not configured: set `hub.org` and `hub.username` to read the organization's \
                 members and invites{token}"
            ),
        );
    }
    let Some(token) = secrets.hub_token.as_deref() else {
        return Check::fail(
            "hub",
            "no Hub token: set HUBREVIEW_HUB_TOKEN (or HUBREVIEW_HUB_TOKEN_FILE) to an access \
             token of `hub.username`",
        );
    };
    // One attempt: a check should answer quickly, not wait out a rate limit.
    let scim = crate::config::ScimConfig {
        max_retries: 0,
        ..config.scim.clone()
    };
    let origin = config.hub.url.trim_end_matches('/');
    match crate::hub::probe(&config.hub, &scim, token).await {
        Ok(seen) => Check::ok("hub", format!("`{origin}`: {seen}")),
        Err(e) => Check::fail("hub", redact(format!("`{origin}`: {e}"), token)),
    }
}

async fn smtp(config: &Config, secrets: &Secrets) -> Check {
    if !crate::mail::relay_configured(&config.mail) {
        return Check::skip(
            "smtp",
            format!(
                "no `mail.smtp_host`: messages go to the outbox `{}`",
                config.mail.outbox.display()
            ),
        );
    }
    match crate::mail::check_relay(&config.mail, secrets).await {
        Ok(check) => Check::ok("smtp", check.to_string()),
        Err(e) => Check::fail(
            "smtp",
            redact(
                http::error_chain(&e),
                secrets.smtp_password.as_deref().unwrap_or_default(),
            ),
        ),
    }
}

fn idp(config: &Config) -> Check {
    if config.idp.file.is_none() {
        return Check::fail(
            "idp",
            "no `idp.file`: set it (or HUBREVIEW_IDP_FILE) to the IdP export; `run` needs it",
        );
    }
    match crate::idp::read(&config.idp) {
        Ok(export) => Check::ok(
            "idp",
            format!(
                "`{}` reads as {}: {} rows, sha256 {}",
                export.path.display(),
                export.format.as_str(),
                export.rows,
                &export.sha256[..export.sha256.len().min(12)]
            ),
        ),
        Err(e) => Check::fail("idp", http::error_chain(&e)),
    }
}

fn activity(config: &Config) -> Check {
    let Some(path) = &config.activity.file else {
        let without = match config.hub.configured() {
            true => "no `activity.file`: the Hub API gives the members and any activity it has",
            false => "no `activity.file`: idle_seat and not_provisioned are not evaluated",
        };
        return Check::skip("activity", without);
    };
    match crate::activity::read(path, &config.activity.format) {
        Ok(export) => Check::ok(
            "activity",
            format!(
                "`{}` reads as {}: {} members",
                path.display(),
                config.activity.format,
                export.members.len()
            ),
        ),
        Err(e) => Check::fail("activity", http::error_chain(&e)),
    }
}

fn exceptions(config: &Config) -> Check {
    let Some(path) = &config.review.exceptions else {
        return Check::skip(
            "exceptions",
            "no `review.exceptions`: every finding counts as open",
        );
    };
    match crate::exceptions::read(path) {
        Ok(file) => Check::ok(
            "exceptions",
            format!(
                "`{}` reads: {} exceptions",
                path.display(),
                file.exceptions.len()
            ),
        ),
        Err(e) => Check::fail("exceptions", http::error_chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_that_does_not_load_fails_one_line_and_skips_the_rest() {
        let checks = config_failed(&ConfigError {
            problems: vec!["`scim.page_size` = 500: must be 1 to 200".into()],
        });
        let names: Vec<_> = checks.iter().map(|c| c.name).collect();
        assert_eq!(names, CHECKS);
        assert_eq!(checks[0].status, Status::Fail);
        assert!(checks[0].detail.contains("scim.page_size"));
        assert!(!checks[0].detail.contains('\n'), "one line per check");
        assert!(checks[1..].iter().all(|c| c.status == Status::Skip));
    }

    #[test]
    fn a_missing_store_in_a_writable_folder_passes_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let check = store(&dir.path().join("hubreview.db"));
        assert_eq!(check.status, Status::Ok, "{check}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_store_newer_than_this_binary_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::open(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let check = store(&path);
        assert_eq!(check.status, Status::Fail, "{check}");
        assert!(check.detail.contains("newer"), "{check}");
    }

    #[test]
    fn a_store_file_that_is_not_sqlite_fails_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        std::fs::write(
            &path,
            "this is not a database, just text long enough to look at",
        )
        .unwrap();
        let check = store(&path);
        assert_eq!(check.status, Status::Fail, "{check}");
        assert!(check.detail.contains("s.db"), "{check}");
    }

    #[test]
    fn redaction_removes_every_copy_of_the_secret() {
        assert_eq!(
            redact("a tok b tok".into(), "tok"),
            "a [redacted] b [redacted]"
        );
        assert_eq!(redact("abc".into(), ""), "abc");
    }
}
