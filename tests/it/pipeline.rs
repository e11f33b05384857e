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

// Regression: a SCIM answer with no users at all was a "complete" snapshot with every
// count zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_organization_is_refused_unless_accepted() {
    let server = demo::start(vec![], options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[("gone@testorg.example".into(), "SUSPENDED")]);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let config = config.to_str().unwrap();
    let env = [("HUBREVIEW_SCIM_TOKEN", TOKEN)];

    let out = hubreview(tmp.path(), &["--config", config, "run"], &env).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("no users at all"),
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
}

// Regression: `--accept-drop` was recorded (and bannered in the report) although no
// guard had tripped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_drop_is_recorded_only_when_a_guard_tripped() {
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
            "--accept-drop",
            "scim",
        ],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dirs = report_dirs(&tmp.path().join("reports"));
    let summary = read_json(&dirs[0].join("summary.json"));
    assert_eq!(summary["accepted_drops"], serde_json::json!([]));
}

// Regression: re-running `reconcile` or `report` on a run that was already reported
// rewrote the evidence in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_run_is_never_rewritten_and_send_checks_the_manifest() {
    let (accounts, people) = organization();
    let server = demo::start(accounts, options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let config = config.to_str().unwrap();
    let env = [("HUBREVIEW_SCIM_TOKEN", TOKEN)];

    let out = hubreview(tmp.path(), &["--config", config, "run"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let first = report_dirs(&tmp.path().join("reports"));
    let before = std::fs::read(first[0].join("summary.json")).unwrap();

    let out = hubreview(
        tmp.path(),
        &[
            "--config",
            config,
            "reconcile",
            "--run",
            "1",
            "--as-of",
            "2020-01-01",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("already reported"),
        "{}",
        text(&out.stderr)
    );

    let out = hubreview(
        tmp.path(),
        &["--config", config, "report", "--run", "1"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let after = report_dirs(&tmp.path().join("reports"));
    assert_eq!(after.len(), 2, "a second directory: {after:?}");
    assert_eq!(
        std::fs::read(first[0].join("summary.json")).unwrap(),
        before
    );

    // Tamper with the newest report: send refuses it.
    std::fs::write(after[1].join("findings.csv"), "kind\n").unwrap();
    let out = hubreview(tmp.path(), &["--config", config, "send", "--run", "1"], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("findings.csv changed"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_refuses_a_run_that_was_not_reconciled() {
    let server = demo::start(users(3), options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[("user0000@testorg.example".into(), "ACTIVE")]);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let config = config.to_str().unwrap();
    let out = hubreview(
        tmp.path(),
        &["--config", config, "snapshot"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = hubreview(tmp.path(), &["--config", config, "report"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("reconcile --run 1"),
        "{}",
        text(&out.stderr)
    );
}

// Regression: `hubreview history | head -1` panicked on the closed pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_into_a_closed_pipe_does_not_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, "[store]\npath = \"s.db\"\n").unwrap();
    let script = format!(
        "'{}' --config '{}' history | head -c 0; exit ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_hubreview"),
        config.display()
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
}

// Regression: a bad `mail.to`, a store path that is a directory and a report directory
// that is a file were found only after the fetch (exit 4 or 3, nothing in the outbox).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paths_and_addresses_fail_before_anything_is_fetched() {
    let server = demo::start(users(3), options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[("user0000@testorg.example".into(), "ACTIVE")]);
    std::fs::write(tmp.path().join("reports"), "not a directory").unwrap();
    std::fs::create_dir_all(tmp.path().join("store/hubreview.db")).unwrap();
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let out = hubreview(
        tmp.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--set",
            "mail.to=not-an-address",
            "run",
        ],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("`mail.to`"), "{stderr}");
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "run"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("`report.dir`"), "{stderr}");
    assert!(stderr.contains("`store.path`"), "{stderr}");
    assert!(server.request_log().is_empty(), "nothing fetched");
}
