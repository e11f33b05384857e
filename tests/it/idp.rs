//! The IdP export through the binary: the export size guard, and presets read end to end
//! against a SCIM server started by the test.

use hubreview::demo::{self, ServerOptions};
use serde_json::Value;

use crate::common::*;

fn options() -> ServerOptions {
    ServerOptions {
        token: TOKEN.into(),
        ..ServerOptions::default()
    }
}

/// An Okta export of `user0000..` for the first `n` SCIM users, all active.
fn okta_people(n: usize) -> Vec<(String, &'static str)> {
    (0..n)
        .map(|i| (format!("user{i:04}@testorg.example"), "ACTIVE"))
        .collect()
}

async fn run(dir: &std::path::Path, config: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--config", config, "run", "--as-of", "2026-11-30"];
    args.extend_from_slice(extra);
    hubreview(dir, &args, &[("HUBREVIEW_SCIM_TOKEN", TOKEN)]).await
}

fn newest_summary(dir: &std::path::Path) -> Value {
    let dirs = report_dirs(&dir.join("reports"));
    read_json(
        &dirs
            .last()
            .expect("a report directory")
            .join("summary.json"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_export_that_shrank_is_refused_with_exit_3_until_accepted() {
    let server = demo::start(users(50), options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &okta_people(50));
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let config = config.to_str().unwrap();

    let out = run(tmp.path(), config, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // 20 of 50 people gone: 40 % and 20, past both 10 % and 5.
    write_okta(tmp.path(), &okta_people(30));
    server.clear_request_log();
    let out = run(tmp.path(), config, &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("INCOMPLETE"), "{stdout}");
    assert!(stdout.contains("--accept-drop idp"), "{stdout}");
    assert!(
        server.request_log().is_empty(),
        "a refused export fetches nothing"
    );
    let summary = newest_summary(tmp.path());
    assert_eq!(summary["status"], "incomplete");
    let reason = summary["reason"].as_str().unwrap();
    assert!(reason.contains("30 people, 20 (40.0%) fewer"), "{reason}");
    assert!(reason.contains("--accept-drop idp"), "{reason}");
    assert_eq!(summary["idp"]["rows"], 30, "the refused export is evidence");
    let dirs = report_dirs(&tmp.path().join("reports"));
    let html = std::fs::read_to_string(dirs.last().unwrap().join("report.html")).unwrap();
    assert!(html.contains("--accept-drop idp"), "the report says why");
    assert!(
        summary["findings"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_null),
        "{summary}"
    );

    // Refused again: the refused export never became the baseline.
    let out = run(tmp.path(), config, &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));

    let out = run(tmp.path(), config, &["--accept-drop", "idp"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary = newest_summary(tmp.path());
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["accepted_drops"], serde_json::json!(["idp"]));
    assert_eq!(summary["findings"]["shadow"], 20);

    // The accepted export is the new baseline.
    let out = run(tmp.path(), config, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // `reconcile` applies the same guard to a stored, not yet reported snapshot.
    let out = hubreview(
        tmp.path(),
        &["--config", config, "snapshot"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    write_okta(tmp.path(), &okta_people(10));
    let out = hubreview(tmp.path(), &["--config", config, "reconcile"], &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("nothing was reconciled"), "{stderr}");
    assert!(stderr.contains("--accept-drop idp"), "{stderr}");
    let out = hubreview(
        tmp.path(),
        &["--config", config, "reconcile", "--accept-drop", "idp"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = hubreview(tmp.path(), &["--config", config, "report"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary = newest_summary(tmp.path());
    assert_eq!(summary["accepted_drops"], serde_json::json!(["idp"]));
    assert_eq!(summary["idp"]["rows"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_missing_from_an_okta_api_export_is_a_shadow_not_a_leaver() {
    let accounts = vec![
        user(
            "00000000-0000-4000-8000-00000000000a",
            "a@testorg.example",
            true,
            "member",
        ),
        user(
            "00000000-0000-4000-8000-00000000000b",
            "b@testorg.example",
            true,
            "member",
        ),
        user(
            "00000000-0000-4000-8000-00000000000c",
            "c@testorg.example",
            true,
            "member",
        ),
    ];
    let server = demo::start(accounts, options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("okta-users.json");
    let users = serde_json::json!([
        {"id": "00ua", "status": "ACTIVE", "profile": {"login": "a@testorg.example"}},
        {"id": "00ub", "status": "DEPROVISIONED",
         "profile": {"login": "b@testorg.example", "email": "b@testorg.example"}}
    ]);
    std::fs::write(&export, users.to_string()).unwrap();
    let config = write_config(tmp.path(), &server.base_url(), &export, "");

    let out = run(tmp.path(), config.to_str().unwrap(), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dirs = report_dirs(&tmp.path().join("reports"));
    let findings = findings_csv(&dirs[0].join("findings.csv"));
    let of = |kind: &str| -> Vec<&str> {
        findings
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, id)| id.as_str())
            .collect()
    };
    assert_eq!(
        of("terminated_active"),
        ["00000000-0000-4000-8000-00000000000b"]
    );
    assert_eq!(of("shadow"), ["00000000-0000-4000-8000-00000000000c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_powershell_export_is_read_with_its_zone_and_guests_are_marked() {
    let accounts = vec![
        user(
            "00000000-0000-4000-8000-000000000001",
            "n.spring@acme.example",
            true,
            "member",
        ),
        user(
            "00000000-0000-4000-8000-000000000002",
            "late.leaver@acme.example",
            true,
            "member",
        ),
        user(
            "00000000-0000-4000-8000-000000000003",
            "g.guest@partner.example",
            true,
            "member",
        ),
    ];
    let server = demo::start(accounts, options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let export =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/idp/entra-powershell.csv");
    let config = write_config(tmp.path(), &server.base_url(), &export, "");

    let out = run(tmp.path(), config.to_str().unwrap(), &[]).await;
    assert_eq!(out.status.code(), Some(2), "okta is the configured format");
    assert!(
        text(&out.stderr).contains("column `Primary Email` not found"),
        "{}",
        text(&out.stderr)
    );

    let out = hubreview(
        tmp.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--set",
            "idp.format=entra",
            "--set",
            "idp.timezone=America/New_York",
            "run",
            "--as-of",
            "2026-11-30",
        ],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dirs = report_dirs(&tmp.path().join("reports"));
    let mut reader = csv::Reader::from_path(dirs[0].join("terminated_active.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[column("email")].to_owned(),
                r[column("evidence")].to_owned(),
            )
        })
        .collect();
    let emails: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        emails.len(),
        2,
        "the late leaver leaves on 2026-12-01 UTC: {rows:?}"
    );
    assert!(emails.contains(&"n.spring@acme.example"), "{rows:?}");
    let guest = rows
        .iter()
        .find(|(e, _)| e == "g.guest@partner.example")
        .expect("the disabled guest is a leaver");
    assert!(guest.1.contains("idp_guest=true"), "{guest:?}");
    let spring = rows
        .iter()
        .find(|(e, _)| e == "n.spring@acme.example")
        .unwrap();
    assert!(
        spring.1.contains("idp_termination=3/8/2026 2:30:00 AM"),
        "{spring:?}"
    );
}

// Regression: an export's cell holding terminal escapes reached the terminal raw inside
// the error that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapes_in_an_export_never_reach_the_terminal() {
    let server = demo::start(users(2), options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(
        tmp.path(),
        &[("user0000@testorg.example".into(), "\u{1b}[2JWEIRD\u{202e}")],
    );
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let out = run(tmp.path(), config.to_str().unwrap(), &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("WEIRD"), "the cell is named: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    assert!(!stderr.contains('\u{202e}'), "{stderr:?}");

    // doctor names the same cell, escaped too.
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "doctor"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    let stdout = text(&out.stdout);
    assert!(stdout.contains("WEIRD"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
}
