//! Benchmark: reconciles synthetic organizations (100,000 and 1,000,000 SCIM accounts
//! against about as many IdP people, with the previous snapshot and a members export)
//! and prints a table of wall time and peak memory.
//!
//! Each run of each size is a process of its own (this binary, started again with
//! `HUBREVIEW_BENCH_SIZE`), so the peak resident memory of one run is not carried into
//! the next. Each size runs `HUBREVIEW_BENCH_RUNS` times (3 unless set); the table gives
//! the median and the slowest time, the highest peak, and the CPU time of the median run
//! (user, and system: the kernel giving the process fresh memory, which on a virtual
//! machine costs more the first time memory is touched). Run it with
//! `cargo bench --bench reconcile`; `HUBREVIEW_BENCH_SIZES` (comma separated) picks other
//! sizes. Targets on the 2-core reference machine: 1,000,000 x 1,000,000 in under 3 s and
//! under 3 GB.

mod synthetic;

use std::process::Command;
use std::time::Instant;

use hubreview::config::ReviewConfig;
use hubreview::reconcile::{Inputs, Kind, reconcile};

const DEFAULT_SIZES: &str = "100000,1000000";
const DEFAULT_RUNS: usize = 3;

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
    let cpu_before = cpu_seconds();
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
    let cpu_after = cpu_seconds();
    let peak = memory_kib("VmHWM");

    let count = |kind| outcome.counts[&kind].unwrap_or(0);
    println!(
        "result {} {} {} {:.3} {:.3} {} {} {} {} {} {} {:.3} {:.3}",
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
        cpu_after.0 - cpu_before.0,
        cpu_after.1 - cpu_before.1,
    );
}

/// Runs every size in child processes and prints the table.
fn table() {
    let sizes = std::env::var("HUBREVIEW_BENCH_SIZES").unwrap_or_else(|_| DEFAULT_SIZES.into());
    let runs = match std::env::var("HUBREVIEW_BENCH_RUNS") {
        Ok(n) => match n.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!(
                    "HUBREVIEW_BENCH_RUNS = `{n}`: expected a whole number of runs, 1 or more"
                );
                std::process::exit(2);
            }
        },
        Err(_) => DEFAULT_RUNS,
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cannot find the benchmark's own executable: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "| accounts | people | members | runs | generate (s) | reconcile, median (s) | slowest (s) | user CPU (s) | system CPU (s) | RSS with inputs (MiB) | peak RSS (MiB) | findings | terminated_active | shadow | data_quality |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut results: Vec<Vec<String>> = (0..runs).map(|_| run_once(&exe, size)).collect();
        let seconds = |r: &Vec<String>| r[4].parse::<f64>().unwrap_or(f64::MAX);
        results.sort_by(|x, y| seconds(x).total_cmp(&seconds(y)));
        let slowest = seconds(&results[results.len() - 1]);
        let peak = results
            .iter()
            .filter_map(|r| r[6].parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let f = &results[results.len() / 2];
        let mib = |kib: &str| kib.parse::<u64>().map_or(0, |k| k / 1024);
        println!(
            "| {} | {} | {} | {runs} | {} | {} | {slowest:.3} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f[0],
            f[1],
            f[2],
            f[3],
            f[4],
            f[11],
            f[12],
            mib(&f[5]),
            peak / 1024,
            f[7],
            f[8],
            f[9],
            f[10]
        );
    }
}

/// One run of one size in a child process: the fields of its `result` line.
fn run_once(exe: &std::path::Path, size: &str) -> Vec<String> {
    let output = match Command::new(exe).env("HUBREVIEW_BENCH_SIZE", size).output() {
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
    let fields: Option<Vec<String>> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("result "))
        .map(|line| line.split_whitespace().map(str::to_owned).collect());
    match fields {
        Some(f) if f.len() == 13 => f,
        _ => {
            eprintln!("size {size} printed no complete result:\n{stdout}");
            std::process::exit(1);
        }
    }
}

/// User and system CPU seconds of this process so far.
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given, which is zeroed and owned here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

/// A `/proc/self/status` field in KiB (`VmRSS` now, `VmHWM` the peak); `None` off Linux.
fn memory_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
