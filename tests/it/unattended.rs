//! Running unattended: the run lock, crash safety under `kill -9`, `--fail-on`, retention,
//! metrics, the log's summary line, `diff`, and owner-only files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hubreview::demo::{self, Faults, PageAction, PageFault, ScimServer, ServerOptions};
use rusqlite::Connection;
use serde_json::Value;

use crate::common::*;

/// `n` active members, as [`users`] makes them.
fn users_of(n: usize) -> Vec<Value> {
    users(n)
}

fn options() -> ServerOptions {
    ServerOptions {
        token: TOKEN.into(),
        ..ServerOptions::default()
    }
}

/// 450 active members over three pages; user0000-0004 have left the company.
fn people() -> Vec<(String, &'static str)> {
    (0..450)
        .map(|i| {
            let status = if i < 5 { "DEPROVISIONED" } else { "ACTIVE" };
            (format!("user{i:04}@testorg.example"), status)
        })
        .collect()
}

/// A test's organization: a SCIM server, the IdP export and a config in a temporary folder.
struct Setup {
    server: ScimServer,
    tmp: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    async fn new(count: usize, extra_config: &str) -> Setup {
        let server = demo::start(users_of(count), options()).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let okta = write_okta(tmp.path(), &people());
        let config = write_config(tmp.path(), &server.base_url(), &okta, extra_config);
        Setup {
            server,
            tmp,
            config,
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn store(&self) -> PathBuf {
        self.dir().join("store/hubreview.db")
    }

    fn args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--config", self.config.to_str().unwrap()];
        args.extend_from_slice(rest);
        args
    }

    async fn run(&self, rest: &[&str]) -> std::process::Output {
        hubreview(
            self.dir(),
            &self.args(rest),
            &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
        )
        .await
    }

    /// Starts `hubreview` without waiting for it.
    fn spawn(&self, rest: &[&str]) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hubreview"));
        command
            .current_dir(self.dir())
            .args(self.args(rest))
            .env_clear()
            .env("HUBREVIEW_SCIM_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        command.spawn().expect("the hubreview binary starts")
    }

    /// Waits until the server has been asked for the list page at `start_index`.
    async fn wait_for_page(&self, start_index: usize) {
        let wanted = format!("startIndex={start_index}&");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .server
            .request_log()
            .iter()
            .any(|r| format!("{}&", r.path_and_query).contains(&wanted))
        {
            assert!(
                Instant::now() < deadline,
                "the run never asked for page {start_index}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Makes the page at `start_index` wait `delay`, and forgets earlier requests so that
    /// [`Setup::wait_for_page`] sees only the next run's.
    fn hold_page(&self, start_index: usize, delay: Duration) {
        self.server.clear_request_log();
        self.server.set_faults(Faults {
            pages: vec![PageFault::always(start_index, PageAction::Delay(delay))],
            ..Faults::default()
        });
    }

    fn sql(&self) -> Connection {
        Connection::open(self.store()).unwrap()
    }
}

async fn wait(child: Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

fn integrity(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// `(id, status, reason)` of every run, oldest first.
fn runs(conn: &Connection) -> Vec<(i64, String, Option<String>)> {
    let mut stmt = conn
        .prepare("SELECT id, status, reason FROM runs ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every snapshot holds exactly the accounts its row counts: no snapshot is half written.
fn assert_no_partial_snapshot(conn: &Connection) {
    let mut stmt = conn
        .prepare(
            "SELECT s.id, s.accounts, (SELECT count(*) FROM accounts a WHERE a.snapshot_id = s.id) \
             FROM snapshots s",
        )
        .unwrap();
    let rows: Vec<(i64, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, counted, stored) in rows {
        assert_eq!(counted, stored, "snapshot {id} is half written");
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_started_together_one_proceeds_and_the_other_exits_with_the_lock_code() {
    let setup = Setup::new(450, "").await;
    // The second page takes two seconds: whoever wins the lock still holds it when the
    // other one asks.
    setup.hold_page(201, Duration::from_secs(2));

    let first = setup.spawn(&["run", "--as-of", "2026-11-30"]);
    let second = setup.spawn(&["run", "--as-of", "2026-11-30"]);
    let started = Instant::now();
    let (a, b) = (wait(first).await, wait(second).await);

    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(
        codes,
        [Some(0), Some(5)],
        "first:\n{}\nsecond:\n{}",
        text(&a.stderr),
        text(&b.stderr)
    );
    let locked = if a.status.code() == Some(5) { &a } else { &b };
    let stderr = text(&locked.stderr);
    assert!(stderr.contains("holds the lock"), "{stderr}");
    assert!(stderr.contains("hubreview.db.lock"), "{stderr}");
    assert!(stderr.contains("pid "), "names the holder: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // The refused run left no trace in the store: one run, complete.
    let conn = setup.sql();
    let all = runs(&conn);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].1, "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_exits_at_once_while_history_still_reads_the_store() {
    let setup = Setup::new(450, "").await;
    assert_eq!(
        setup
            .run(&["run", "--as-of", "2026-11-23"])
            .await
            .status
            .code(),
        Some(0)
    );
    setup.hold_page(201, Duration::from_secs(3));
    let holder = setup.spawn(&["run", "--as-of", "2026-11-30"]);
    setup.wait_for_page(201).await;

    let started = Instant::now();
    let refused = setup.run(&["snapshot"]).await;
    assert_eq!(refused.status.code(), Some(5), "{}", text(&refused.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the refused run must not wait for the lock"
    );

    // Reading never takes the lock: history works, and shows the run in progress.
    let history = setup.run(&["history"]).await;
    assert_eq!(history.status.code(), Some(0), "{}", text(&history.stderr));
    let listing = text(&history.stdout);
    assert!(listing.contains("running"), "{listing}");

    // The store, its lock and its journal files are readable by their owner only, while
    // the run has them open.
    #[cfg(unix)]
    {
        let store = setup.store();
        for path in [
            store.clone(),
            PathBuf::from(format!("{}-wal", store.display())),
            PathBuf::from(format!("{}-shm", store.display())),
            PathBuf::from(format!("{}.lock", store.display())),
        ] {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }

    let out = wait(holder).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_inside_the_snapshot_leaves_the_previous_one_intact_and_is_marked_failed() {
    let setup = Setup::new(450, "").await;
    let first = setup.run(&["run", "--as-of", "2026-11-23"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));

    setup.hold_page(201, Duration::from_secs(30));
    let mut victim = setup.spawn(&["run", "--as-of", "2026-11-30"]);
    setup.wait_for_page(201).await;
    victim.kill().unwrap(); // SIGKILL
    let _ = wait(victim).await;

    {
        let conn = setup.sql();
        assert_eq!(integrity(&conn), "ok");
        let all = runs(&conn);
        assert_eq!(all[1].1, "running", "nobody has looked yet: {all:?}");
    }

    setup.server.set_faults(Faults::default());
    let next = setup.run(&["run", "--as-of", "2026-11-30"]).await;
    assert_eq!(next.status.code(), Some(0), "{}", text(&next.stderr));

    let conn = setup.sql();
    assert_eq!(integrity(&conn), "ok");
    let all = runs(&conn);
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[0].1, "complete");
    assert_eq!(
        all[1].1, "failed",
        "the killed run is marked failed: {all:?}"
    );
    assert!(
        all[1]
            .2
            .as_deref()
            .unwrap_or_default()
            .contains("interrupted"),
        "{all:?}"
    );
    assert_eq!(all[2].1, "complete");
    let previous: i64 = conn
        .query_row(
            "SELECT count(*) FROM accounts WHERE snapshot_id = \
             (SELECT snapshot_id FROM runs WHERE id = 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(previous, 450, "the previous snapshot is intact");
    assert_no_partial_snapshot(&conn);

    // The new run compared itself with the intact snapshot: no drift, not "all added".
    let dirs = report_dirs(&setup.dir().join("reports"));
    let summary = read_json(&dirs.last().unwrap().join("summary.json"));
    assert_eq!(summary["findings"]["drift"], 0, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_at_any_moment_of_the_snapshot_write_never_leave_a_half_written_snapshot() {
    let setup = Setup::new(3000, "").await;
    let first = setup.run(&["snapshot"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));

    // The last page is at 2801; the write starts once it arrives. Kill at moments spread
    // over the write and what follows it.
    for delay_ms in [0u64, 3, 10, 30, 80, 200] {
        setup.server.clear_request_log();
        let mut victim = setup.spawn(&["snapshot"]);
        setup.wait_for_page(2801).await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let _ = victim.kill();
        let _ = wait(victim).await;

        let conn = setup.sql();
        assert_eq!(
            integrity(&conn),
            "ok",
            "killed {delay_ms} ms after the last page"
        );
        assert_no_partial_snapshot(&conn);
    }

    let last = setup.run(&["snapshot"]).await;
    assert_eq!(last.status.code(), Some(0), "{}", text(&last.stderr));
    let conn = setup.sql();
    assert_eq!(integrity(&conn), "ok");
    assert_no_partial_snapshot(&conn);
    let all = runs(&conn);
    assert!(
        all.iter()
            .all(|(_, status, _)| status == "complete" || status == "failed"),
        "no run is left running: {all:?}"
    );
    assert_eq!(all.last().unwrap().1, "complete");
    let complete: i64 = conn
        .query_row(
            "SELECT count(*) FROM snapshots WHERE status = 'complete' AND accounts = 3000",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(complete >= 2, "the first and the last snapshots are whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_on_exits_1_for_open_findings_of_the_named_kinds_only() {
    let setup = Setup::new(450, "").await;
    let clear = setup
        .run(&[
            "run",
            "--as-of",
            "2026-11-30",
            "--fail-on",
            "privileged,shadow",
        ])
        .await;
    assert_eq!(clear.status.code(), Some(0), "{}", text(&clear.stderr));

    let leavers = setup
        .run(&[
            "run",
            "--as-of",
            "2026-11-30",
            "--fail-on",
            "shadow,terminated_active",
        ])
        .await;
    assert_eq!(leavers.status.code(), Some(1), "{}", text(&leavers.stderr));
    let stdout = text(&leavers.stdout);
    assert!(
        stdout.contains("fail-on: terminated_active: 5 open"),
        "{stdout}"
    );
    assert!(!stdout.contains("fail-on: shadow"), "{stdout}");

    // A kind that could not be evaluated is not an all clear.
    let unchecked = setup
        .run(&["run", "--as-of", "2026-11-30", "--fail-on", "idle_seat"])
        .await;
    assert_eq!(unchecked.status.code(), Some(1));
    assert!(
        text(&unchecked.stdout).contains("idle_seat: not evaluated"),
        "{}",
        text(&unchecked.stdout)
    );

    // A reported run is never reconciled again, so take a fresh snapshot first.
    let snapshot = setup.run(&["snapshot"]).await;
    assert_eq!(
        snapshot.status.code(),
        Some(0),
        "{}",
        text(&snapshot.stderr)
    );
    let reconciled = setup
        .run(&["reconcile", "--fail-on", "terminated_active"])
        .await;
    assert_eq!(
        reconciled.status.code(),
        Some(1),
        "{}",
        text(&reconciled.stderr)
    );

    let typo = setup.run(&["run", "--fail-on", "leavers"]).await;
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        text(&typo.stderr).contains("terminated_active"),
        "lists the kinds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_outranks_fail_on() {
    // Nothing listens on port 9 of loopback: delivery fails, exit 4 wins over exit 1.
    let setup = Setup::new(
        450,
        "smtp_host = \"127.0.0.1\"\nsmtp_port = 9\ntls = \"none\"\ntimeout_secs = 2\n",
    )
    .await;
    let out = setup
        .run(&[
            "run",
            "--as-of",
            "2026-11-30",
            "--fail-on",
            "terminated_active",
        ])
        .await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_logs_one_json_summary_line_and_writes_its_metrics() {
    let setup = Setup::new(450, "\n[metrics]\ntextfile = \"metrics/hubreview.prom\"\n").await;
    let out = setup
        .run(&["--log-format", "json", "run", "--as-of", "2026-11-30"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let lines: Vec<Value> = text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summaries: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "run finished")
        .collect();
    assert_eq!(summaries.len(), 1, "{lines:?}");
    let fields = &summaries[0]["fields"];
    assert_eq!(fields["status"], "complete");
    assert_eq!(fields["exit_code"], 0);
    assert_eq!(fields["accounts"], 450);
    assert!(fields["duration_secs"].as_f64().is_some(), "{fields}");
    assert!(
        fields["findings"]
            .as_str()
            .unwrap()
            .contains("terminated_active=5"),
        "{fields}"
    );
    assert!(
        fields["report"].as_str().unwrap().ends_with("report.html"),
        "{fields}"
    );

    let metrics = std::fs::read_to_string(setup.dir().join("metrics/hubreview.prom")).unwrap();
    assert!(
        metrics.contains("hubreview_findings{kind=\"terminated_active\"} 5\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubreview_snapshot_accounts 450\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubreview_last_run_exit_code 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubreview_last_success_timestamp_seconds "),
        "{metrics}"
    );
    assert!(
        !metrics.contains("hubreview_findings{kind=\"idle_seat\"}"),
        "not evaluated is no sample: {metrics}"
    );

    // An incomplete run replaces the counts with nothing, and keeps the last success.
    setup.server.set_faults(Faults {
        pages: vec![PageFault::always(201, PageAction::Status(500))],
        ..Faults::default()
    });
    let out = setup.run(&["run", "--as-of", "2026-11-30"]).await;
    assert_eq!(out.status.code(), Some(3));
    let metrics = std::fs::read_to_string(setup.dir().join("metrics/hubreview.prom")).unwrap();
    assert!(
        metrics.contains("hubreview_last_run_exit_code 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubreview_last_run_complete 0\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("hubreview_findings{"), "{metrics}");
    assert!(
        metrics.contains("hubreview_last_success_timestamp_seconds "),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_even_at_trace_level() {
    let setup = Setup::new(450, "").await;
    let out = hubreview(
        setup.dir(),
        &setup.args(&["-vv", "run", "--as-of", "2026-11-30"]),
        &[
            ("HUBREVIEW_SCIM_TOKEN", TOKEN),
            ("HUBREVIEW_SMTP_PASSWORD", "smtp-password-never-real"),
            ("HUBREVIEW_HUB_TOKEN", "hub-token-never-real"),
            ("HUBREVIEW_LOG", "trace"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let log = text(&out.stderr);
    assert!(
        log.contains("run finished"),
        "the trace log was written: {log}"
    );
    for secret in [TOKEN, "smtp-password-never-real", "hub-token-never-real"] {
        assert!(!log.contains(secret), "`{secret}` leaked into the log");
        assert!(
            !text(&out.stdout).contains(secret),
            "`{secret}` leaked into stdout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_snapshots_and_report_directories_and_keeps_the_history() {
    let setup = Setup::new(450, "").await;
    // Append the retention keys to the [store] section the config already has.
    let config = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("[store]\n", "[store]\nkeep_runs = 2\n");
    std::fs::write(&setup.config, config).unwrap();

    for _ in 0..3 {
        let out = setup.run(&["run", "--as-of", "2026-11-30"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let out = setup.run(&["run", "--as-of", "2026-11-30"]).await;
    assert!(
        text(&out.stdout).contains("retention: pruned runs 2"),
        "{}",
        text(&out.stdout)
    );

    // Runs 1 and 2 are pruned; 3 and 4 keep their reports.
    let dirs = report_dirs(&setup.dir().join("reports"));
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let conn = setup.sql();
    let kept: Vec<(i64, Option<String>, Option<String>)> = conn
        .prepare("SELECT id, pruned_at, manifest_sha256 FROM runs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        kept.iter()
            .map(|(id, pruned, _)| (*id, pruned.is_some()))
            .collect::<Vec<_>>(),
        [(1, true), (2, true), (3, false), (4, false)]
    );
    assert!(
        kept.iter()
            .all(|(_, _, sha)| sha.as_deref().is_some_and(|s| s.len() == 64)),
        "every run keeps its manifest hash: {kept:?}"
    );
    for dir in &dirs {
        let summary = read_json(&dir.join("summary.json"));
        assert!(
            summary["run_id"] == 3 || summary["run_id"] == 4,
            "{summary}"
        );
    }
    let accounts: i64 = conn
        .query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(accounts, 900, "two snapshots of 450 accounts remain");
    let history: i64 = conn
        .query_row(
            "SELECT count(*) FROM finding_history WHERE first_run = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(history > 0, "the finding history of pruned runs is kept");

    let report = setup.run(&["report", "--run", "1"]).await;
    assert_eq!(report.status.code(), Some(2));
    assert!(
        text(&report.stderr).contains("pruned"),
        "{}",
        text(&report.stderr)
    );
    let diff = setup.run(&["diff", "--from", "1", "--to", "4"]).await;
    assert_eq!(diff.status.code(), Some(2));
    assert!(
        text(&diff.stderr).contains("pruned"),
        "{}",
        text(&diff.stderr)
    );
    // Regression: `send` on a pruned run said only "cannot read manifest.json".
    let history = text(&setup.run(&["history"]).await.stdout);
    assert!(
        history.contains("(report removed by retention)"),
        "a pruned run does not point at its deleted report: {history}"
    );
    let send = setup.run(&["send", "--run", "1", "--dry-run"]).await;
    assert_eq!(send.status.code(), Some(2));
    assert!(
        text(&send.stderr).contains("pruned by retention"),
        "{}",
        text(&send.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_shows_every_change_between_two_stored_snapshots() {
    let setup = Setup::new(450, "").await;
    assert_eq!(setup.run(&["snapshot"]).await.status.code(), Some(0));

    let mut users = setup.server.users();
    let gone = users.remove(10);
    users[20]["urn:ietf:params:scim:schemas:extension:docker:2.0:User"]["dockerRole"] =
        "owner".into();
    users.push(user(
        "00000000-0000-4000-8000-999999999999",
        "newcomer@testorg.example",
        true,
        "member",
    ));
    setup.server.set_users(users);
    assert_eq!(setup.run(&["snapshot"]).await.status.code(), Some(0));

    let out = setup.run(&["diff", "--from", "1", "--to", "2"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("3 changes"), "{table}");
    assert!(table.contains("newcomer@testorg.example"), "{table}");
    assert!(
        table.contains(gone["userName"].as_str().unwrap()),
        "{table}"
    );
    assert!(
        table.contains("role escalated from member to owner"),
        "{table}"
    );
    assert!(
        table.contains("total: added 1, removed 1, role 1"),
        "{table}"
    );

    let missing = setup.run(&["diff", "--from", "1", "--to", "7"]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("no run 7"),
        "{}",
        text(&missing.stderr)
    );
}
