//! `hubreview run` and the step commands against a SCIM server started by the test.

use hubreview::demo::{self, Faults, PageAction, PageFault, ServerOptions};
use serde_json::Value;

use crate::common::*;

fn options() -> ServerOptions {
    ServerOptions {
        token: TOKEN.into(),
        ..ServerOptions::default()
    }
}

/// 450 users over three pages: user0000-0004 are leavers, user0440-0449 are unknown to
/// the IdP, user0001 and user0002 are owner and editor.
fn organization() -> (Vec<Value>, Vec<(String, &'static str)>) {
    let mut accounts = users(450);
    accounts[1]["urn:ietf:params:scim:schemas:extension:docker:2.0:User"]["dockerRole"] =
        "owner".into();
    accounts[2]["urn:ietf:params:scim:schemas:extension:docker:2.0:User"]["dockerRole"] =
        "editor".into();
    let people = (0..440)
        .map(|i| {
            let status = if i < 5 { "DEPROVISIONED" } else { "ACTIVE" };
            // Case and spaces differ from SCIM: normalization must still match.
            (format!(" User{i:04}@TestOrg.example "), status)
        })
        .collect();
    (accounts, people)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reports_the_counts_per_kind_and_writes_every_file() {
    let (accounts, people) = organization();
    let server = demo::start(accounts, options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");

    let out = hubreview(
        tmp.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--as-of",
            "2026-11-30",
        ],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));

    let dirs = report_dirs(&tmp.path().join("reports"));
    assert_eq!(dirs.len(), 1);
    let summary = read_json(&dirs[0].join("summary.json"));
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["as_of"], "2026-11-30");
    assert_eq!(summary["snapshot"]["accounts"], 450);
    assert_eq!(summary["findings"]["terminated_active"], 5);
    assert_eq!(summary["findings"]["shadow"], 10);
    assert_eq!(summary["findings"]["privileged"], 2);
    assert_eq!(
        summary["findings"]["drift"],
        Value::Null,
        "first snapshot: nothing to diff"
    );
    assert_eq!(
        summary["findings"]["idle_seat"],
        Value::Null,
        "no activity data"
    );

    for kind in ["terminated_active", "shadow", "privileged"] {
        assert!(dirs[0].join(format!("{kind}.csv")).exists(), "{kind}.csv");
    }
    assert!(dirs[0].join("report.html").exists());
    let outbox = std::fs::read_dir(tmp.path().join("outbox"))
        .unwrap()
        .count();
    assert_eq!(outbox, 1);

    // Read-only: nothing but GET ever reached the server, always with the token.
    let log = server.request_log();
    assert!(log.len() >= 3, "three pages at least: {log:?}");
    assert!(
        log.iter()
            .all(|r| r.method == "GET" && r.authorization_present),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_failing_until_the_retries_run_out_stores_an_incomplete_snapshot_and_no_findings() {
    let (accounts, people) = organization();
    let server = demo::start(accounts, options()).await.unwrap();
    server.set_faults(Faults {
        pages: vec![PageFault::always(201, PageAction::Status(500))],
        ..Faults::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");

    let out = hubreview(
        tmp.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--as-of",
            "2026-11-30",
        ],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("INCOMPLETE"), "{stdout}");

    let dirs = report_dirs(&tmp.path().join("reports"));
    let summary = read_json(&dirs[0].join("summary.json"));
    assert_eq!(summary["status"], "incomplete");
    let reason = summary["reason"].as_str().unwrap();
    assert!(reason.contains("startIndex 201"), "{reason}");
    for (kind, count) in summary["findings"].as_object().unwrap() {
        assert_eq!(
            count,
            &Value::Null,
            "{kind} must not be counted from a partial snapshot"
        );
    }
    assert!(findings_csv_is_absent_or_empty(&dirs[0]));

    // The page was tried once plus the configured two retries.
    let tries = server
        .request_log()
        .iter()
        .filter(|r| r.path_and_query.contains("startIndex=201"))
        .count();
    assert_eq!(tries, 3);

    // The store says so too, and reconcile refuses the snapshot.
    let history = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "history"],
        &[],
    )
    .await;
    assert!(
        text(&history.stdout).contains("incomplete"),
        "{}",
        text(&history.stdout)
    );
    let again = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "reconcile"],
        &[],
    )
    .await;
    assert_eq!(again.status.code(), Some(3), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("never reconciled"),
        "{}",
        text(&again.stderr)
    );
}

fn findings_csv_is_absent_or_empty(dir: &std::path::Path) -> bool {
    let path = dir.join("findings.csv");
    !path.exists() || findings_csv(&path).is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steps_run_one_by_one_give_what_run_gives() {
    let (accounts, people) = organization();
    let server = demo::start(accounts, options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let config = config.to_str().unwrap();
    let env = [("HUBREVIEW_SCIM_TOKEN", TOKEN)];

    let steps: [&[&str]; 4] = [
        &["--config", config, "snapshot"],
        &["--config", config, "reconcile", "--as-of", "2026-11-30"],
        &["--config", config, "report"],
        &["--config", config, "send"],
    ];
    for args in steps {
        let out = hubreview(tmp.path(), args, &env).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let dirs = report_dirs(&tmp.path().join("reports"));
    let summary = read_json(&dirs[0].join("summary.json"));
    assert_eq!(summary["findings"]["terminated_active"], 5);
    assert_eq!(summary["findings"]["shadow"], 10);

    // A second snapshot of the same organization: drift is evaluated and empty.
    let out = hubreview(
        tmp.path(),
        &["--config", config, "run", "--as-of", "2026-12-01"],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dirs = report_dirs(&tmp.path().join("reports"));
    let summary = read_json(&dirs.last().unwrap().join("summary.json"));
    assert_eq!(summary["findings"]["drift"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_drop_is_refused_unless_accepted() {
    let (accounts, people) = organization();
    let server = demo::start(accounts.clone(), options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let config = config.to_str().unwrap();
    let env = [("HUBREVIEW_SCIM_TOKEN", TOKEN)];

    let out = hubreview(tmp.path(), &["--config", config, "run"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    server.set_users(accounts[..300].to_vec());
    let out = hubreview(tmp.path(), &["--config", config, "run"], &env).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("--accept-drop scim"),
        "{}",
        text(&out.stdout)
    );

    let out = hubreview(
        tmp.path(),
        &["--config", config, "run", "--accept-drop", "scim"],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dirs = report_dirs(&tmp.path().join("reports"));
    let summary = read_json(&dirs.last().unwrap().join("summary.json"));
    assert_eq!(summary["accepted_drops"], serde_json::json!(["scim"]));
    assert_eq!(summary["findings"]["drift"], 150, "150 removed accounts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_reported_at_once_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(
        &config,
        "[scim]\npage_size = 500\n[idp]\nformat = \"ldap\"\n",
    )
    .unwrap();
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "run"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("scim.page_size"), "{stderr}");
    assert!(stderr.contains("idp.format"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_idp_column_fails_before_anything_is_fetched() {
    let server = demo::start(users(3), options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = tmp.path().join("okta.csv");
    std::fs::write(&okta, "Mail,Status\na@x.example,ACTIVE\n").unwrap();
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "run"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("column `Primary Email` not found"),
        "{stderr}"
    );
    assert!(stderr.contains("`Mail`, `Status`"), "{stderr}");
    assert!(
        server.request_log().is_empty(),
        "nothing fetched before the input is checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_says_what_to_check_and_never_echoes_the_token() {
    let server = demo::start(users(3), options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[("user0000@testorg.example".into(), "ACTIVE")]);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let secret = "wrong-token-3f9a1c";
    let out = hubreview(
        tmp.path(),
        &["-vv", "--config", config.to_str().unwrap(), "run"],
        &[("HUBREVIEW_SCIM_TOKEN", secret)],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("HTTP 401"), "{all}");
    assert!(all.contains("check the token"), "{all}");
    assert!(!all.contains(secret), "the token leaked: {all}");
    let store = std::fs::read(tmp.path().join("store/hubreview.db")).unwrap();
    assert!(!store.windows(secret.len()).any(|w| w == secret.as_bytes()));
}
