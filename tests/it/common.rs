//! Helpers shared by the integration tests: running the binary, writing configs and
//! exports, reading the report it wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const TOKEN: &str = "test-scim-token-never-real";

/// Runs the built `hubreview` with only the given environment (no inherited
/// `HUBREVIEW_*` variable can leak in), in `cwd`.
pub async fn hubreview(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hubreview"));
    command.current_dir(cwd).args(args).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    // The test's own SCIM server runs on this runtime: wait for the child off it.
    tokio::task::spawn_blocking(move || command.output().expect("the hubreview binary runs"))
        .await
        .expect("the waiting thread finishes")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A SCIM user as Docker serves it.
pub fn user(id: &str, email: &str, active: bool, role: &str) -> Value {
    serde_json::json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:docker:2.0:User"
        ],
        "id": id,
        "userName": email,
        "displayName": email.split('@').next().unwrap_or_default().replace('.', ""),
        "name": {"givenName": "Test", "familyName": id},
        "active": active,
        "emails": [{"value": email, "primary": true, "type": "work"}],
        "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z"},
        "urn:ietf:params:scim:schemas:extension:docker:2.0:User": {
            "dockerRole": role, "dockerTeam": "platform", "dockerOrg": "testorg"
        }
    })
}

/// `n` users `u0000..`, emails `user0000@testorg.example`, all active members.
pub fn users(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            user(
                &format!("00000000-0000-4000-8000-{i:012}"),
                &format!("user{i:04}@testorg.example"),
                true,
                "member",
            )
        })
        .collect()
}

/// Writes a config file pointing at `scim_url`, with the store, reports and outbox in
/// `dir`, and returns its path.
pub fn write_config(dir: &Path, scim_url: &str, idp_file: &Path, extra: &str) -> PathBuf {
    let path = dir.join("hubreview.toml");
    let text = format!(
        r#"
[scim]
url = "{scim_url}"
max_retries = 2
retry_base_ms = 10
timeout_secs = 5

[idp]
file = "{idp}"
format = "okta"

[store]
path = "store/hubreview.db"

[report]
dir = "reports"
organization = "Test Org"

[mail]
from = "hubreview@testorg.example"
to = "reviewers@testorg.example"
outbox = "outbox"
{extra}
"#,
        idp = idp_file.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// An Okta export; `rows` are (email, status).
pub fn write_okta(dir: &Path, rows: &[(String, &str)]) -> PathBuf {
    let mut text = String::from("Username,First Name,Last Name,Primary Email,Status\n");
    for (email, status) in rows {
        text.push_str(&format!("{email},Test,Person,{email},{status}\n"));
    }
    let path = dir.join("okta.csv");
    std::fs::write(&path, text).unwrap();
    path
}

/// The run directories under `reports`, oldest first.
pub fn report_dirs(reports: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(reports)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("summary.json").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// `(kind, account_id)` of every row of a findings CSV.
pub fn findings_csv(path: &Path) -> Vec<(String, String)> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let kind = headers.iter().position(|h| h == "kind").unwrap();
    let account = headers.iter().position(|h| h == "account_id").unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[kind].to_owned(), r[account].to_owned())
        })
        .collect()
}
