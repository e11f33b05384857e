//! Benchmark of the SCIM snapshot on a large organization: 20,000 users served by the
//! Docker-like fake server on 127.0.0.1, which adds 50 ms of latency to every answer.
//!
//! The first page must arrive before the others can be planned, and
//! `/ServiceProviderConfig` comes before it, so no fetch can beat
//! `(1 + ceil((pages - 1) / concurrency)) * latency + latency`. The table prints each
//! fetch's wall time against that floor, and the peak resident memory of the process
//! during the fetch (the server's copy of the users included). Targets: within 1.3x of
//! the floor at concurrency 4 and 8, under 150 MB.
//!
//! Run with `cargo bench --bench scim_fetch`; `-- USERS LATENCY_MS` changes the size.

use std::time::{Duration, Instant};

use hubreview::config::ScimConfig;
use hubreview::demo::{self, ServerOptions};
use hubreview::scim::{self, Completeness};
use serde_json::{Value, json};

const TOKEN: &str = "bench-token-not-a-secret";

fn user(i: usize) -> Value {
    let email = format!("user{i:05}@bench.example");
    let role = ["member", "editor", "owner"][i % 3];
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:docker:2.0:User"
        ],
        // Not in id order, so that sortBy=id does real work on the server.
        "id": format!("{:08x}-0000-4000-8000-{i:012}", (i as u64).wrapping_mul(2_654_435_761) as u32),
        "userName": email,
        "displayName": format!("user{i:05}"),
        "name": {"givenName": "Bench", "familyName": format!("User {i}")},
        "active": !i.is_multiple_of(50),
        "emails": [{"value": email, "primary": true, "type": "work"}],
        "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z",
                 "lastModified": "2026-11-01T00:00:00Z"},
        "urn:ietf:params:scim:schemas:extension:docker:2.0:User": {
            "dockerRole": role,
            "dockerTeam": format!("team-{}", i % 40),
            "dockerOrg": "bench"
        }
    })
}

/// A line of `/proc/self/status` in kB, such as `VmHWM` (peak resident) or `VmRSS`.
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets the peak resident memory to the current one, so each fetch is measured alone.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let users: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let latency = Duration::from_millis(args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50));
    let page = 200usize;
    let pages = users.div_ceil(page);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let options = ServerOptions {
            token: TOKEN.into(),
            latency,
            ..ServerOptions::default()
        };
        let server = demo::start((0..users).map(user).collect(), options)
            .await
            .expect("the fake server starts on 127.0.0.1");

        println!(
            "| users | pages | concurrency | latency | floor | wall time | ratio | peak RSS | RSS before | the fetch's own |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for concurrency in [1u32, 4, 8] {
            let config = ScimConfig {
                url: server.base_url(),
                page_size: page as u32,
                concurrency,
                ..ScimConfig::default()
            };
            let rounds = 1 + (pages as u64 - 1).div_ceil(u64::from(concurrency));
            let floor = latency * (rounds as u32 + 1);

            reset_peak();
            // The process also holds the fake server and its copy of the users: what the
            // fetch itself adds is the peak less this.
            let before_mb = status_kb("VmRSS").unwrap_or(0) as f64 / 1024.0;
            let started = Instant::now();
            let fetched = scim::fetch_all(&config, TOKEN, false)
                .await
                .expect("a valid configuration");
            let wall = started.elapsed();
            let peak_mb = status_kb("VmHWM").unwrap_or(0) as f64 / 1024.0;
            assert_eq!(
                fetched.completeness,
                Completeness::Complete,
                "{:?}",
                fetched.completeness.reason()
            );
            assert_eq!(fetched.accounts.len(), users);
            drop(fetched);

            println!(
                "| {users} | {pages} | {concurrency} | {} ms | {} ms | {} ms | {:.2}x | {peak_mb:.0} MB | {before_mb:.0} MB | {:.0} MB |",
                latency.as_millis(),
                floor.as_millis(),
                wall.as_millis(),
                wall.as_secs_f64() / floor.as_secs_f64(),
                peak_mb - before_mb,
            );
        }
        server.shutdown().await;
    });
}
