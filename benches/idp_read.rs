//! Benchmark: reading a 1,000,000-row IdP export, end to end (file, decoding, row-accurate
//! check, polars, people). Prints one table row per export, with the wall time and the
//! peak resident memory of a process that did nothing but read it.
//!
//! Run with `cargo bench --bench idp_read`. Targets on a 2-core machine: under 3 s and
//! under 1.5 GB for a 1,000,000-row export.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hubreview::config::IdpConfig;

const ROWS: usize = 1_000_000;

/// One export to read: its file name, format and how it is written.
struct Case {
    name: &'static str,
    format: &'static str,
    write: fn(&Path),
}

const CASES: &[Case] = &[
    Case {
        name: "okta-people.csv",
        format: "okta",
        write: okta_people,
    },
    Case {
        name: "entra-powershell.csv",
        format: "entra",
        write: entra_utf16,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The child: read one export and report on stdout.
    if let Some(at) = args.iter().position(|a| a == "--read") {
        read_one(Path::new(&args[at + 1]), &args[at + 2]);
        return;
    }
    // `cargo bench` passes `--bench`; anything else, such as a filter, is ignored.
    let dir = tempfile::tempdir().expect("a temporary directory");
    println!("| export | format | rows | people | MB | seconds | peak RSS (MB) |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for case in CASES {
        let path = dir.path().join(case.name);
        (case.write)(&path);
        let megabytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
        let out = Command::new(std::env::current_exe().expect("the benchmark's own path"))
            .arg("--read")
            .arg(&path)
            .arg(case.format)
            .output()
            .expect("the benchmark runs itself");
        let report = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            eprintln!("{}: {}", case.name, String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
        let fields: Vec<&str> = report.split_whitespace().collect();
        println!(
            "| {} | {} | {ROWS} | {} | {megabytes:.0} | {} | {} |",
            case.name, case.format, fields[0], fields[1], fields[2]
        );
        let _ = std::fs::remove_file(&path);
    }
}

/// Reads `path` and prints `people seconds peak_rss_mb`.
fn read_one(path: &Path, format: &str) {
    let cfg = IdpConfig {
        file: Some(PathBuf::from(path)),
        format: format.into(),
        ..IdpConfig::default()
    };
    let started = Instant::now();
    let export = match hubreview::idp::read(&cfg) {
        Ok(export) => export,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    println!("{} {seconds:.2} {:.0}", export.people.len(), peak_rss_mb());
}

/// The process's peak resident set (`VmHWM`), in MB; 0 where `/proc` does not tell.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0 / 1e6)
        .unwrap_or(0.0)
}

/// An Okta people export: UTF-8 with a BOM, CRLF, leading-zero ids, every status, a
/// quoted department now and then.
fn okta_people(path: &Path) {
    const STATUSES: [&str; 4] = ["ACTIVE", "ACTIVE", "SUSPENDED", "PROVISIONED"];
    let mut text = String::with_capacity(ROWS * 150);
    text.push('\u{feff}');
    text.push_str(
        "Username,First Name,Last Name,Primary Email,Secondary Email,Employee Number,\
         Department,Status\r\n",
    );
    for i in 0..ROWS {
        let department = if i % 10 == 0 {
            "\"Research, Development\""
        } else {
            "Engineering"
        };
        let _ = write!(
            text,
            "user{i:07}@acme.example,Given{i},Family{i},user{i:07}@acme.example,\
             u{i:07}@personal.example,{i:08},{department},{}\r\n",
            STATUSES[i % STATUSES.len()]
        );
    }
    std::fs::write(path, text).expect("the export is written");
}

/// An Entra export as Windows PowerShell writes it: UTF-16LE with a BOM, a `#TYPE` line,
/// every value quoted, 13 columns, US dates.
fn entra_utf16(path: &Path) {
    let mut text = String::with_capacity(ROWS * 260);
    text.push_str("#TYPE Microsoft.Graph.PowerShell.Models.MicrosoftGraphUser\r\n");
    text.push_str(
        "\"id\",\"userPrincipalName\",\"displayName\",\"givenName\",\"surname\",\"mail\",\
         \"userType\",\"accountEnabled\",\"department\",\"officeLocation\",\"mobilePhone\",\
         \"employeeLeaveDateTime\",\"createdDateTime\"\r\n",
    );
    for i in 0..ROWS {
        let enabled = if i % 7 == 0 { "False" } else { "True" };
        let leave = if i % 50 == 0 {
            "3/8/2026 2:30:00 AM"
        } else {
            ""
        };
        let _ = write!(
            text,
            "\"{i:08x}-0000-4000-8000-000000000000\",\"user{i:07}@acme.example\",\
             \"User {i}\",\"User\",\"{i}\",\"user{i:07}@acme.example\",\"Member\",\
             \"{enabled}\",\"Engineering\",\"HQ\",\"+1 555 0100\",\"{leave}\",\
             \"8/19/2021 1:25:31 PM\"\r\n"
        );
    }
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(path, bytes).expect("the export is written");
}
