//! The report directory a real run writes, and `hubreview verify` on it: what auditors
//! file as evidence.

use std::path::Path;

use hubreview::demo::{self, ServerOptions};
use serde_json::Value;

use crate::common::*;

fn options() -> ServerOptions {
    ServerOptions {
        token: TOKEN.into(),
        ..ServerOptions::default()
    }
}

/// Eight users: user0000 and user0001 left, user0006 and user0007 are unknown to the
/// IdP, user0002 owns the organization. One hostile name among them.
fn small_organization() -> (Vec<Value>, Vec<(String, &'static str)>) {
    let mut accounts = users(8);
    let extension = "urn:ietf:params:scim:schemas:extension:docker:2.0:User";
    accounts[2][extension]["dockerRole"] = "owner".into();
    accounts[6]["name"]["givenName"] = "=HYPERLINK(\"https://evil.example\")".into();
    accounts[7]["name"]["familyName"] = "<img src=x onerror=alert(1)>".into();
    let people = (0..6)
        .map(|i| {
            let status = if i < 2 { "DEPROVISIONED" } else { "ACTIVE" };
            (format!("user{i:04}@testorg.example"), status)
        })
        .collect();
    (accounts, people)
}

async fn run(dir: &Path, config: &Path, as_of: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["run", "--as-of", as_of]);
    hubreview(dir, &args, &[("HUBREVIEW_SCIM_TOKEN", TOKEN)]).await
}

/// `text` with the values that change from one run to the next replaced by names.
fn normalized(text: &str, dir: &Path) -> String {
    let summary = read_json(&dir.join("summary.json"));
    let manifest = read_json(&dir.join("manifest.json"));
    let shown = |rfc3339: &Value| {
        chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string()
    };
    // The snapshot is often taken in the same second the report is generated.
    let mut text = text
        .replace(&shown(&summary["generated_at"]), "[time]")
        .replace(&shown(&summary["snapshot"]["taken_at"]), "[time]");
    for (value, name) in [
        (&manifest["config"]["sha256"], "[config sha256]"),
        (&manifest["snapshot_sha256"], "[snapshot sha256]"),
        (
            &manifest["previous_manifest"]["sha256"],
            "[previous manifest sha256]",
        ),
    ] {
        if let Some(value) = value.as_str() {
            text = text.replace(value, name);
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_the_report_its_snapshots_hold() {
    let (accounts, people) = small_organization();
    let server = demo::start(accounts, options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");

    for as_of in ["2026-11-23", "2026-11-30"] {
        let out = run(tmp.path(), &config, as_of, &[]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }

    let dirs = report_dirs(&tmp.path().join("reports"));
    assert_eq!(dirs.len(), 2);
    let html = std::fs::read_to_string(dirs[1].join("report.html")).unwrap();
    // The body as the template placed it; the style and script blocks have their own
    // snapshot in the unit tests.
    let body = &html[html.find("<body>").unwrap()..html.find("<script>").unwrap()];
    insta::assert_snapshot!("report_body", normalized(body, &dirs[1]));
    let csv = std::fs::read_to_string(dirs[1].join("findings.csv")).unwrap();
    insta::assert_snapshot!("findings_csv", csv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_form_a_chain_that_verify_checks_even_after_old_reports_are_pruned() {
    let (accounts, people) = small_organization();
    let server = demo::start(accounts, options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let config_arg = config.to_str().unwrap();

    for as_of in ["2026-11-23", "2026-11-30"] {
        let out = run(tmp.path(), &config, as_of, &[]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let dirs = report_dirs(&tmp.path().join("reports"));
    let first_manifest = std::fs::read(dirs[0].join("manifest.json")).unwrap();
    let second = read_json(&dirs[1].join("manifest.json"));
    assert_eq!(second["previous_manifest"]["run_id"], 1);
    assert_eq!(
        second["previous_manifest"]["sha256"],
        hubreview::report::sha256_hex(&first_manifest).as_str()
    );
    assert_eq!(second["inputs"][0]["role"], "idp");
    assert_eq!(
        second["inputs"][0]["sha256"],
        hubreview::report::sha256_hex(&std::fs::read(&okta).unwrap()).as_str()
    );
    assert_eq!(second["snapshot_id"], 2);
    assert_eq!(second["snapshot_sha256"].as_str().unwrap().len(), 64);
    assert!(!second["config"]["effective"].to_string().contains(TOKEN));

    let verify = |dir: &Path| {
        let dir = dir.to_str().unwrap().to_string();
        let config = config_arg.to_string();
        let cwd = tmp.path().to_path_buf();
        async move { hubreview(&cwd, &["--config", &config, "verify", &dir], &[]).await }
    };

    // Untouched, both verify, each against the store's record and its link.
    for dir in &dirs {
        let out = verify(dir).await;
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
        assert!(
            stdout.contains("the one the store recorded for run"),
            "{stdout}"
        );
    }

    // The first report pruned: the second still verifies, chain included.
    std::fs::remove_dir_all(&dirs[0]).unwrap();
    let out = verify(&dirs[1]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("ok        chain: links run 1's manifest"),
        "{stdout}"
    );

    // One cell changed: verify names the file and exits 1.
    let csv = dirs[1].join("shadow.csv");
    let changed = std::fs::read_to_string(&csv)
        .unwrap()
        .replace("user0006", "user0009");
    std::fs::write(&csv, changed).unwrap();
    let out = verify(&dirs[1]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("  CHANGED   shadow.csv: SHA-256 is "),
        "{stdout}"
    );
    assert!(stdout.contains("the directory does NOT match its manifest: 1 problem"));

    // A directory that is not a report is a usage error that says what to pass.
    let out = verify(&tmp.path().join("reports")).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("pass the directory of one run's report"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_files_are_owner_only_and_csvs_carry_a_bom_when_asked() {
    let (accounts, people) = small_organization();
    let server = demo::start(accounts, options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");

    let out = run(
        tmp.path(),
        &config,
        "2026-11-30",
        &["--set", "report.csv_bom=true"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let dir = &report_dirs(&tmp.path().join("reports"))[0];
    let mut csvs = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        if path.extension().is_some_and(|x| x == "csv") {
            csvs += 1;
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                bytes.starts_with(b"\xEF\xBB\xBFkind,severity,"),
                "{}",
                path.display()
            );
        }
    }
    assert!(csvs >= 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    // Formula-looking names are neutralized; findings.json keeps them as they are.
    let csv = std::fs::read_to_string(dir.join("shadow.csv")).unwrap();
    assert!(csv.contains("'=HYPERLINK("), "{csv}");
    let json = read_json(&dir.join("findings.json"));
    let names: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("=HYPERLINK(")),
        "{names:?}"
    );
}

// Regression: a report whose files were rewritten together with their manifest entries was
// sent as the run's report; and a copy of it verified clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_rewritten_with_its_manifest_is_neither_sent_nor_verified() {
    let (accounts, people) = small_organization();
    let server = demo::start(accounts, options()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &people);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let config_arg = config.to_str().unwrap();
    let out = run(tmp.path(), &config, "2026-11-30", &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dir = report_dirs(&tmp.path().join("reports")).remove(0);

    // A leaver's row taken out of the CSVs, and the manifest made to agree.
    let mut manifest = read_json(&dir.join("manifest.json"));
    for name in ["findings.csv", "terminated_active.csv"] {
        let path = dir.join(name);
        let kept: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|line| !line.contains("user0000"))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(&path, &kept).unwrap();
        for file in manifest["files"].as_array_mut().unwrap() {
            if file["name"] == name {
                file["sha256"] = hubreview::report::sha256_hex(kept.as_bytes()).into();
                file["bytes"] = kept.len().into();
            }
        }
    }
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let outbox = tmp.path().join("outbox");
    let messages = || std::fs::read_dir(&outbox).map_or(0, |d| d.count());
    let before = messages();

    let sent = hubreview(
        tmp.path(),
        &["--config", config_arg, "send", "--run", "1"],
        &[],
    )
    .await;
    assert_eq!(sent.status.code(), Some(3), "{}", text(&sent.stdout));
    let stderr = text(&sent.stderr);
    assert!(
        stderr.contains("is not the report the run wrote"),
        "{stderr}"
    );
    assert!(stderr.contains("Nothing was sent"), "{stderr}");
    assert_eq!(messages(), before, "no message was written");

    // A copy elsewhere is checked against run 1's record all the same.
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let copy_arg = copy.to_str().unwrap();
    let verified = hubreview(
        tmp.path(),
        &["--config", config_arg, "verify", copy_arg],
        &[],
    )
    .await;
    let stdout = text(&verified.stdout);
    assert_eq!(verified.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("CHANGED   manifest.json"), "{stdout}");

    // A file name that would drive the terminal is shown escaped.
    std::fs::write(copy.join("\u{1b}[2Jok.csv"), "x").unwrap();
    let verified = hubreview(
        tmp.path(),
        &["--config", config_arg, "verify", copy_arg],
        &[],
    )
    .await;
    let stdout = text(&verified.stdout);
    assert!(stdout.contains("UNLISTED"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    std::fs::remove_file(copy.join("\u{1b}[2Jok.csv")).unwrap();

    // Without the store, nothing can vouch for the manifest: not verified, exit 1.
    let alone = hubreview(tmp.path(), &["verify", copy_arg], &[]).await;
    let stdout = text(&alone.stdout);
    assert_eq!(alone.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("NOT VERIFIED"), "{stdout}");
    assert!(
        !tmp.path().join("hubreview.db.lock").exists(),
        "verify takes no lock"
    );
}

// Regression: `send` without a store created an empty one before failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_without_a_store_creates_none() {
    let tmp = tempfile::tempdir().unwrap();
    let out = hubreview(
        tmp.path(),
        &[
            "--set",
            "store.path=absent/hubreview.db",
            "send",
            "--dry-run",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no store at"));
    assert!(!tmp.path().join("absent/hubreview.db").exists());
    // Nor the folder the lock file would have gone into.
    assert!(!tmp.path().join("absent").exists());
}
