//! How long a daily run takes and how much memory it needs, by organization size: the
//! numbers behind the resource requests of `deploy/kubernetes/cronjob.yaml` and the
//! `MemoryMax` of `deploy/systemd/hubreview.service`.
//!
//! Each size gets a fresh store and a local SCIM server on 127.0.0.1 serving that many
//! users, and an IdP export of the same people (1% leavers, 1% unknown to the IdP). The
//! built binary runs twice: the first run (no baseline) and the daily run (a baseline to
//! diff, one snapshot more in the store). Peak memory is the child's maximum resident set
//! size from `wait4`. Run with `cargo bench --bench run`; prints a Markdown table.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hubreview::demo::{self, ServerOptions};
use serde_json::{Value, json};

const TOKEN: &str = "bench-scim-token-never-real";
const SIZES: [usize; 3] = [1_000, 10_000, 50_000];

fn users(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": format!("00000000-0000-4000-8000-{i:012}"),
                "userName": format!("user{i:06}@bench.example"),
                "displayName": format!("user{i:06}"),
                "name": {"givenName": "Bench", "familyName": format!("User {i}")},
                "active": true,
                "emails": [{"value": format!("user{i:06}@bench.example"), "primary": true}],
                "meta": {"created": "2024-01-01T00:00:00Z"},
                "urn:ietf:params:scim:schemas:extension:docker:2.0:User": {
                    "dockerRole": if i % 50 == 0 { "owner" } else { "member" },
                    "dockerTeam": format!("team{}", i % 40),
                }
            })
        })
        .collect()
}

fn write_inputs(dir: &Path, n: usize, scim_url: &str) -> std::path::PathBuf {
    let mut okta = String::from("Username,First Name,Last Name,Primary Email,Status\n");
    // Every hundredth person left; every hundredth account (offset by one) is unknown.
    for i in (0..n).filter(|i| i % 100 != 1) {
        let status = if i % 100 == 0 {
            "DEPROVISIONED"
        } else {
            "ACTIVE"
        };
        okta.push_str(&format!(
            "user{i:06}@bench.example,Bench,User,user{i:06}@bench.example,{status}\n"
        ));
    }
    std::fs::write(dir.join("okta.csv"), okta).unwrap();
    let config = dir.join("hubreview.toml");
    std::fs::write(
        &config,
        format!(
            "[scim]\nurl = \"{scim_url}\"\n[idp]\nfile = \"okta.csv\"\nformat = \"okta\"\n\
             [store]\npath = \"hubreview.db\"\n[report]\ndir = \"reports\"\n\
             [mail]\nto = \"reviewers@bench.example\"\noutbox = \"outbox\"\n"
        ),
    )
    .unwrap();
    config
}

/// Runs the binary once; returns the wall time and the peak resident set in bytes.
#[expect(
    clippy::zombie_processes,
    reason = "wait4 reaps the child, to read its resource usage"
)]
fn run_once(dir: &Path, config: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_hubreview"))
        .current_dir(dir)
        .args([
            "--config",
            config.to_str().unwrap(),
            "-q",
            "run",
            "--as-of",
            "2026-11-30",
        ])
        .env_clear()
        .env("HUBREVIEW_SCIM_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the hubreview binary starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `usage` is a plain C struct that wait4 fills; the pid is our own child,
    // which is reaped here instead of by `Child::wait`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(reaped, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the run failed with status {status}"
    );
    // Linux reports ru_maxrss in KiB.
    (elapsed, usage.ru_maxrss as u64 * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| users | first run (s) | daily run (s) | peak RSS (MiB) | store after two runs (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for n in SIZES {
        let options = ServerOptions {
            token: TOKEN.into(),
            ..ServerOptions::default()
        };
        let server = runtime.block_on(demo::start(users(n), options)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let config = write_inputs(tmp.path(), n, &server.base_url());
        let (first, first_rss) = run_once(tmp.path(), &config);
        let (daily, daily_rss) = run_once(tmp.path(), &config);
        let store = std::fs::metadata(tmp.path().join("hubreview.db"))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "| {n} | {:.2} | {:.2} | {} | {} |",
            first.as_secs_f64(),
            daily.as_secs_f64(),
            mib(first_rss.max(daily_rss)),
            mib(store)
        );
        drop(server);
    }
}
