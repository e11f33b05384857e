//! How long the report step takes for a large organization: 100,000 findings, rendered
//! with the default `report.html_rows` (500 per section), then the whole directory
//! (HTML, every CSV, `findings.json`, `summary.json`, `manifest.json`).
//!
//! `cargo bench --bench render` prints a table; the target is that `report.html` renders
//! in under 2 s. The process exits 1 when a target is missed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use hubreview::config::Config;
use hubreview::reconcile::{Finding, Kind, Outcome, SeatSummary, Severity};
use hubreview::report::{self, ConfigEvidence, InputFile, Options, ReportInput, SnapshotInfo};
use hubreview::store::TrendPoint;

const FINDINGS: usize = 100_000;

/// The kinds of the generated findings, with their share in percent.
const MIX: [(Kind, Severity, usize); 6] = [
    (Kind::IdleSeat, Severity::Low, 40),
    (Kind::Drift, Severity::Info, 20),
    (Kind::Shadow, Severity::High, 15),
    (Kind::TerminatedActive, Severity::Critical, 10),
    (Kind::Privileged, Severity::Info, 10),
    (Kind::DataQuality, Severity::Medium, 5),
];

fn finding(i: usize, kind: Kind, severity: Severity) -> Finding {
    let email = format!("person.{i:06}@acmerobotics.example");
    Finding {
        kind,
        severity,
        key: format!("{}:{i:08x}-2691-4503-9099-029b6f217169", kind.as_str()),
        account_id: Some(format!("{i:08x}-2691-4503-9099-029b6f217169")),
        docker_id: Some(format!("person{i:06}")),
        email: Some(email.clone()),
        name: Some(format!("Zoë Müller-{i} <O'Brien>")),
        role: Some(
            if i.is_multiple_of(50) {
                "owner"
            } else {
                "member"
            }
            .to_string(),
        ),
        team: Some(["platform", "robotics-sw", "qa", "data"][i % 4].to_string()),
        person_email: Some(email),
        person_status: Some("ACTIVE".to_string()),
        match_basis: "userName = IdP email".to_string(),
        reason: format!("no activity for {} days (more than 90)", 91 + i % 400),
        evidence: BTreeMap::from([
            ("decided_by".to_string(), "Last Logged-In Date".to_string()),
            ("idp_row".to_string(), (i + 2).to_string()),
            (
                "last_activity".to_string(),
                "2025-10-18T11:57:33+00:00".to_string(),
            ),
            ("member_row".to_string(), (i + 2).to_string()),
        ]),
        exception: None,
        first_seen: None,
        days_open: None,
    }
}

fn input() -> ReportInput {
    let mut findings = Vec::with_capacity(FINDINGS);
    for (kind, severity, percent) in MIX {
        let start = findings.len();
        let n = FINDINGS * percent / 100;
        findings.extend((start..start + n).map(|i| finding(i, kind, severity)));
    }
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let first_seen: BTreeMap<String, NaiveDate> = findings
        .iter()
        .step_by(2)
        .map(|f| (f.key.clone(), as_of - chrono::Days::new(7)))
        .collect();
    let counts = Kind::ALL
        .into_iter()
        .map(|kind| {
            let n = findings.iter().filter(|f| f.kind == kind).count();
            (kind, (kind != Kind::PendingInvite).then_some(n))
        })
        .collect();
    let trend = (0..12)
        .map(|week| TrendPoint {
            run_id: week + 1,
            partial: Vec::new(),
            as_of: Some(as_of - chrono::Days::new(7 * (11 - week as u64))),
            counts: Kind::ALL
                .into_iter()
                .map(|kind| (kind, Some(week as usize * 100 + kind as usize * 7)))
                .collect(),
            resolved: week as usize,
        })
        .collect();
    ReportInput {
        organization: "Acme Robotics".to_string(),
        run_id: 12,
        status: "complete".to_string(),
        reason: None,
        as_of,
        generated_at: Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 12).unwrap(),
        snapshot: Some(SnapshotInfo {
            id: 12,
            taken_at: Utc.with_ymd_and_hms(2026, 11, 30, 5, 59, 1).unwrap(),
            status: "complete".to_string(),
            accounts: 120_000,
            active_accounts: 118_000,
            total_results: Some(120_000),
            sha256: Some("5a".repeat(32)),
        }),
        idp: Some(InputFile {
            path: "exports/okta.csv".into(),
            format: "okta".to_string(),
            sha256: "ab".repeat(32),
            rows: 121_000,
        }),
        activity: None,
        exceptions: None,
        hub: None,
        outcome: Some(Outcome {
            partial: Default::default(),
            findings,
            counts,
            seats: SeatSummary {
                in_use_note: None,
                purchased: Some(125_000),
                in_use: 118_000,
                reclaimable: BTreeMap::from([("idle_seat".to_string(), 40_000)]),
                reclaimable_total: 40_000,
                seat_price: Some(24.0),
                monthly_saving: Some(960_000.0),
                yearly_saving: Some(11_520_000.0),
            },
            not_evaluated: BTreeMap::from([(Kind::PendingInvite, "no invite data".to_string())]),
            resolved: Vec::new(),
        }),
        accepted_drops: Vec::new(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        trend,
        first_seen,
        config: Some(ConfigEvidence::new(&Config::default())),
        previous_manifest: None,
    }
}

/// Peak resident memory of this process so far, from `/proc/self/status` (Linux).
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .map(|line| line.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| "n/a".to_string())
}

struct Row {
    case: &'static str,
    html_rows: usize,
    runs: Vec<Duration>,
    output: String,
    target: Option<Duration>,
    memory: String,
}

fn measure(runs: usize, mut step: impl FnMut() -> usize) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let start = Instant::now();
        size = step();
        times.push(start.elapsed());
    }
    times.sort();
    (times, size)
}

fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn main() {
    let input = input();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut rows = Vec::new();

    for (case, html_rows, runs, target) in [
        ("render report.html", 500, 7, Some(Duration::from_secs(2))),
        ("render report.html, every row", FINDINGS, 3, None),
    ] {
        let (times, bytes) = measure(runs, || {
            report::render_html(&input, html_rows)
                .expect("the report renders")
                .len()
        });
        rows.push(Row {
            case,
            html_rows,
            runs: times,
            output: format!("{:.1} MB html", bytes as f64 / 1e6),
            target,
            memory: peak_memory(),
        });
    }

    let options = Options {
        html_rows: 500,
        csv_bom: false,
    };
    let (times, files) = measure(5, || {
        report::write_with(&dir.path().join("run"), &input, &options)
            .expect("the report is written")
            .files
            .len()
    });
    rows.push(Row {
        case: "write the whole report directory",
        html_rows: 500,
        runs: times,
        output: format!("{files} files"),
        target: None,
        memory: peak_memory(),
    });

    println!("report step, {FINDINGS} findings");
    println!();
    println!("| case | html_rows | runs | min | median | max | output | peak memory | target |");
    println!("|---|---:|---:|---:|---:|---:|---|---:|---|");
    let mut missed = false;
    for row in &rows {
        let median = row.runs[row.runs.len() / 2];
        let verdict = match row.target {
            Some(target) if median <= target => format!("< {} s: met", target.as_secs()),
            Some(target) => {
                missed = true;
                format!("< {} s: MISSED", target.as_secs())
            }
            None => "-".to_string(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.case,
            row.html_rows,
            row.runs.len(),
            seconds(row.runs[0]),
            seconds(median),
            seconds(*row.runs.last().unwrap()),
            row.output,
            row.memory,
            verdict
        );
    }
    if missed {
        std::process::exit(1);
    }
}
