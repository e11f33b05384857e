//! `hubreview demo`: the whole job on the built-in organization, checked against the
//! counts its generator wrote down.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_finds_exactly_what_its_fixtures_were_built_to_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let out = hubreview(tmp.path(), &["demo", "--dir", "demo"], &[]).await;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("report: "), "{stdout}");

    let expected: Value =
        serde_json::from_str(hubreview::demo::DEMO_EXPECTED_JSON).expect("expected.json");
    let dirs = report_dirs(&tmp.path().join("demo"));
    assert_eq!(dirs.len(), 1, "one report directory: {dirs:?}");
    let summary = read_json(&dirs[0].join("summary.json"));

    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["as_of"], "2026-11-30");
    assert_eq!(summary["snapshot"]["accounts"], expected["accounts"]);
    for (kind, count) in expected["findings"].as_object().unwrap() {
        assert_eq!(&summary["findings"][kind], count, "count of {kind}");
    }
    assert_eq!(summary["findings"]["identifier_changed"], 1);
    assert_eq!(
        summary["not_evaluated"],
        serde_json::json!({}),
        "every kind is evaluated"
    );
    // Members plus invites hold seats.
    assert_eq!(
        summary["seats"]["in_use"].as_u64(),
        Some(expected["activity_rows"].as_u64().unwrap() + expected["invites"].as_u64().unwrap())
    );

    // Not just the counts: the very accounts the fixtures hold.
    let rows = findings_csv(&dirs[0].join("findings.csv"));
    for kind in [
        "terminated_active",
        "shadow",
        "idle_seat",
        "privileged",
        "identifier_changed",
    ] {
        let want: BTreeSet<String> = expected["details"][kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect();
        let got: BTreeSet<String> = rows
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(got, want, "accounts of {kind}");
    }

    // The invites and the Hub-only members, by their keys.
    let keys = finding_keys(&dirs[0].join("findings.csv"));
    for invite in expected["details"]["pending_invite"].as_array().unwrap() {
        let key = format!("pending_invite:{}", invite["id"].as_str().unwrap());
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    for id in expected["no_finding"]["invite_within_invite_days"]
        .as_array()
        .unwrap()
    {
        let key = format!("pending_invite:{}", id.as_str().unwrap());
        assert!(!keys.contains(&key), "{key} is not pending yet");
    }
    for member in expected["details"]["not_provisioned"].as_array().unwrap() {
        let key = format!("not_provisioned:{}", member["docker_id"].as_str().unwrap());
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }

    for file in [
        "report.html",
        "findings.csv",
        "terminated_active.csv",
        "manifest.json",
    ] {
        assert!(dirs[0].join(file).exists(), "{file} is written");
    }
    let outbox: Vec<_> = std::fs::read_dir(tmp.path().join("demo/outbox"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(outbox.len(), 1, "one message in the outbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_gives_the_same_counts_when_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = hubreview(tmp.path(), &["demo", "--dir", "demo"], &[]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let dirs = report_dirs(&tmp.path().join("demo"));
    assert_eq!(dirs.len(), 2);
    let first = read_json(&dirs[0].join("summary.json"));
    let second = read_json(&dirs[1].join("summary.json"));
    assert_eq!(first["findings"], second["findings"]);
}

// Regression: `history | head` (a closed stdout) and a closed stderr panicked with exit
// code 101 instead of keeping the command's own exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_or_stderr_never_turns_into_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let out = hubreview(tmp.path(), &["demo", "--dir", "demo"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cwd = tmp.path().to_path_buf();
    let full = |args: &'static [&'static str]| {
        let cwd = cwd.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_hubreview"))
                .current_dir(&cwd)
                .args(args)
                .env_clear()
                // Every write to /dev/full fails, as one to a closed pipe does.
                .stdout(std::fs::File::create("/dev/full").unwrap())
                .stderr(std::fs::File::create("/dev/full").unwrap())
                .status()
                .unwrap()
        })
    };
    let history = full(&["--set", "store.path=demo/hubreview.db", "history"])
        .await
        .unwrap();
    assert_eq!(history.code(), Some(0));
    let missing = full(&["--set", "idp.file=absent.csv", "-v", "run"])
        .await
        .unwrap();
    assert_eq!(missing.code(), Some(2), "a usage error stays exit 2");
}

/// The `key` column of a findings CSV.
fn finding_keys(path: &std::path::Path) -> BTreeSet<String> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "key")
        .unwrap();
    reader
        .records()
        .map(|r| r.unwrap()[column].to_owned())
        .collect()
}
