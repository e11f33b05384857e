//! Findings across runs: exceptions that accept a finding (and expire), how long each
//! finding has been open, leavers resolved between runs, and `hubreview history`.

use hubreview::demo::{self, ServerOptions};
use serde_json::Value;

use crate::common::*;

fn options() -> ServerOptions {
    ServerOptions {
        token: TOKEN.into(),
        ..ServerOptions::default()
    }
}

/// Six users: user0000 has left (DEPROVISIONED), user0004 and user0005 are unknown to
/// the IdP (user0005 is a CI bot with an exception in force, user0004's has expired).
fn people() -> Vec<(String, &'static str)> {
    (0..4)
        .map(|i| {
            let status = if i == 0 { "DEPROVISIONED" } else { "ACTIVE" };
            (format!("user{i:04}@testorg.example"), status)
        })
        .collect()
}

const EXCEPTIONS: &str = r#"
[[exception]]
kind = "shadow"
account = "user0005@testorg.example"
owner = "platform-team@testorg.example"
reason = "CI bot, token rotated quarterly"
expires = 2027-06-30

[[exception]]
key = "shadow:00000000-0000-4000-8000-000000000004"
owner = "qa@testorg.example"
reason = "load-test account"
expires = 2026-10-31
"#;

async fn run(dir: &std::path::Path, config: &std::path::Path, as_of: &str) -> std::process::Output {
    hubreview(
        dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--as-of",
            as_of,
        ],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await
}

/// `(key, status, days_open, exception)` of every row of a findings CSV.
fn rows(path: &std::path::Path) -> Vec<(String, String, String, String)> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (key, status, days, exception) =
        (at("key"), at("status"), at("days_open"), at("exception"));
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[key].to_owned(),
                r[status].to_owned(),
                r[days].to_owned(),
                r[exception].to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_findings_are_shown_not_counted_and_history_follows_them_across_runs() {
    let server = demo::start(users(6), options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people());
    std::fs::write(tmp.path().join("exceptions.toml"), EXCEPTIONS).unwrap();
    let config = write_config(
        tmp.path(),
        &server.base_url(),
        &okta,
        "[review]\nexceptions = \"exceptions.toml\"\n",
    );

    // Run 1: the leaver is open, the CI bot is accepted, the load-test account's
    // exception has expired so it counts.
    let out = run(tmp.path(), &config, "2026-11-16").await;
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    let dirs = report_dirs(&tmp.path().join("reports"));
    let summary = read_json(&dirs[0].join("summary.json"));
    assert_eq!(summary["findings"]["terminated_active"], 1);
    assert_eq!(
        summary["findings"]["shadow"], 1,
        "the accepted bot is not counted"
    );
    assert_eq!(summary["accepted"]["shadow"], 1);
    assert_eq!(summary["expired_exceptions"], 1);
    let first = rows(&dirs[0].join("shadow.csv"));
    assert_eq!(
        first.len(),
        2,
        "accepted findings stay in the report: {first:?}"
    );
    let bot = first
        .iter()
        .find(|r| r.0.ends_with("000000000005"))
        .unwrap();
    assert_eq!(bot.1, "accepted");
    assert!(bot.3.contains("platform-team@testorg.example"), "{bot:?}");
    assert!(bot.3.contains("exceptions.toml entry 1"), "{bot:?}");
    let expired = first
        .iter()
        .find(|r| r.0.ends_with("000000000004"))
        .unwrap();
    assert_eq!(expired.1, "open (exception expired)");
    let manifest = read_json(&dirs[0].join("manifest.json"));
    let inputs = manifest["inputs"].as_array().unwrap();
    assert!(
        inputs
            .iter()
            .any(|i| i["role"] == "exceptions" && i["sha256"].as_str().unwrap().len() == 64),
        "the exceptions file is evidence: {inputs:?}"
    );
    let html = std::fs::read_to_string(dirs[0].join("report.html")).unwrap();
    assert!(html.contains("Expired exceptions"));
    assert!(
        html.contains("(1 open, 1 accepted)"),
        "section heading counts"
    );

    // Run 2, two weeks later: the leaver's account was deactivated.
    let mut accounts = users(6);
    accounts[0]["active"] = Value::Bool(false);
    server.set_users(accounts);
    let out = run(tmp.path(), &config, "2026-11-30").await;
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    let dirs = report_dirs(&tmp.path().join("reports"));
    assert_eq!(dirs.len(), 2);
    let summary = read_json(&dirs[1].join("summary.json"));
    assert_eq!(summary["findings"]["terminated_active"], 0);
    assert_eq!(summary["resolved"], 1);
    let second = rows(&dirs[1].join("shadow.csv"));
    assert!(
        second.iter().all(|r| r.2 == "14"),
        "both shadows were first seen two weeks ago: {second:?}"
    );
    let html = std::fs::read_to_string(dirs[1].join("report.html")).unwrap();
    let resolved = &html[html.find("id=\"resolved\"").expect("a resolved section")..];
    assert!(resolved.contains("user0000@testorg.example"), "{resolved}");
    assert!(
        resolved.contains("14 days from the first seen; account deactivated"),
        "{resolved}"
    );

    // `hubreview history` shows the open findings per kind over both runs.
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "history"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{stdout}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("terminated_active"), "1 0");
    assert_eq!(line("shadow"), "1 1");
    assert_eq!(line("drift"), "n/a 1", "deactivated since the first run");
    assert_eq!(line("resolved"), "0 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_exceptions_file_stops_the_run_before_anything_is_fetched() {
    let server = demo::start(users(2), options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people());
    std::fs::write(
        tmp.path().join("exceptions.csv"),
        "kind,account,owner,reason,expires\nshadow,user0001@testorg.example,,CI,next year\n",
    )
    .unwrap();
    let config = write_config(
        tmp.path(),
        &server.base_url(),
        &okta,
        "[review]\nexceptions = \"exceptions.csv\"\n",
    );
    let out = run(tmp.path(), &config, "2026-11-30").await;
    assert_eq!(out.status.code(), Some(2), "stdout:\n{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("exceptions.csv"), "{stderr}");
    assert!(stderr.contains("row 2: `owner` is missing"), "{stderr}");
    assert!(
        stderr.contains("row 2: `expires` = `next year` is not a date"),
        "{stderr}"
    );
    assert!(server.request_log().is_empty(), "nothing was fetched");
}

// Regression: a run back-dated before one already reconciled wrote first-seen dates after
// its own review date, and empty ages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_date_before_one_already_reconciled_is_refused() {
    let server = demo::start(users(4), options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people());
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let out = run(tmp.path(), &config, "2026-11-30").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(tmp.path(), &config, "2026-11-30").await;
    assert_eq!(out.status.code(), Some(0), "the same date again is fine");
    let out = run(tmp.path(), &config, "2026-11-01").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("only runs forward"), "{stderr}");
    assert_eq!(
        report_dirs(&tmp.path().join("reports")).len(),
        2,
        "nothing was run"
    );
}

// Regression: a review date mistyped into the future (2062 for 2026) was accepted, and
// every later run was then refused as back-dated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_date_in_the_future_is_refused_before_anything_is_fetched() {
    let server = demo::start(users(4), options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people());
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let out = run(tmp.path(), &config, "2062-11-30").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("lies in the future"), "{stderr}");
    assert!(server.request_log().is_empty(), "nothing was fetched");
    assert!(report_dirs(&tmp.path().join("reports")).is_empty());
    // Today still works afterwards.
    let today = chrono::Utc::now().date_naive().to_string();
    let out = run(tmp.path(), &config, &today).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
