//! Benchmark: reconciles synthetic organizations (100,000 and 1,000,000 SCIM accounts
//! against about as many IdP people, with the previous snapshot and a members export)
//! and prints a table of wall time and peak memory.
//!
//! Each size runs in a process of its own (this binary, started again with
//! `HUBREVIEW_BENCH_SIZE`), so the peak resident memory of one size is not carried into
//! the next. Run it with `cargo bench --bench reconcile`; `HUBREVIEW_BENCH_SIZES` (comma
//! separated) picks other sizes. Targets on the 2-core reference machine: 1,000,000 x
//! 1,000,000 in under 3 s and under 3 GB.

mod synthetic;

use std::process::Command;
use std::time::Instant;

use hubreview::config::ReviewConfig;
use hubreview::reconcile::{Inputs, Kind, reconcile};

const DEFAULT_SIZES: &str = "100000,1000000";

fn main() {
    match std::env::var("HUBREVIEW_BENCH_SIZE") {
        Ok(size) => measure(&size),
        Err(_) => table(),
    }
}

/// One size, in this process: prints one `result` line for the parent to read.
fn measure(size: &str) {
    let accounts: usize = size.parse().unwrap_or_else(|_| {
        eprintln!("HUBREVIEW_BENCH_SIZE = `{size}`: expected a whole number of accounts");
        std::process::exit(2);
    });
    let started = Instant::now();
    let org = synthetic::organization(accounts);
    let generated = started.elapsed();
    let rss_inputs = memory_kib("VmRSS");

    let review = ReviewConfig {
        seat_price: Some(24.0),
        ..ReviewConfig::default()
    };
    let started = Instant::now();
    let outcome = reconcile(&Inputs {
        accounts: &org.accounts,
        previous: Some(&org.previous),
        previous_snapshot: Some("the previous synthetic snapshot".into()),
        people: &org.people,
        members: Some(&org.members),
        invites: None,
        unavailable: Vec::new(),
        review: &review,
        exceptions: None,
        as_of: synthetic::as_of(),
    })
    .unwrap_or_else(|e| {
        eprintln!("reconciliation failed: {e}");
        std::process::exit(1);
    });
    let reconciled = started.elapsed();
    let peak = memory_kib("VmHWM");

    let count = |kind| outcome.counts[&kind].unwrap_or(0);
    println!(
        "result {} {} {} {:.3} {:.3} {} {} {} {} {} {}",
        org.accounts.len(),
        org.people.len(),
        org.members.len(),
        generated.as_secs_f64(),
        reconciled.as_secs_f64(),
        rss_inputs.unwrap_or(0),
        peak.unwrap_or(0),
        outcome.findings.len(),
        count(Kind::TerminatedActive),
        count(Kind::Shadow),
        count(Kind::DataQuality),
    );
}

/// Runs every size in a child process and prints the table.
fn table() {
    let sizes = std::env::var("HUBREVIEW_BENCH_SIZES").unwrap_or_else(|_| DEFAULT_SIZES.into());
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cannot find the benchmark's own executable: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "| accounts | people | members | generate (s) | reconcile (s) | RSS with inputs (MiB) | peak RSS (MiB) | findings | terminated_active | shadow | data_quality |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let output = Command::new(&exe)
            .env("HUBREVIEW_BENCH_SIZE", size)
            .output();
        let output = match output {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                eprintln!(
                    "size {size} failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                );
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("cannot start the benchmark for size {size}: {e}");
                std::process::exit(1);
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("result ")) else {
            eprintln!("size {size} printed no result:\n{stdout}");
            std::process::exit(1);
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        let mib = |kib: &str| kib.parse::<u64>().map_or(0, |k| k / 1024);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f[0],
            f[1],
            f[2],
            f[3],
            f[4],
            mib(f[5]),
            mib(f[6]),
            f[7],
            f[8],
            f[9],
            f[10]
        );
    }
}

/// A `/proc/self/status` field in KiB (`VmRSS` now, `VmHWM` the peak); `None` off Linux.
fn memory_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
