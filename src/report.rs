//! The report step: renders one run into `report.html`, `findings.csv`, one CSV per
//! finding kind, `findings.json`, `summary.json` and `manifest.json`, in a directory of
//! its own, readable by its owner only.
//!
//! Every value that came from SCIM, Hub or the IdP is data: autoescaped in HTML (the
//! templates are named `*.html`, nothing is marked safe, links only for `https:` and
//! `mailto:`), neutralized against formulas in CSV. The charts are inline SVG placed by
//! the template from numbers computed here; the page runs no script but its own.
//!
//! `manifest.json` is the evidence: the SHA-256 of every file and input, the snapshot's
//! content hash, the effective configuration (secrets never were in it) and its hash, and
//! the previous report's manifest hash, so that the reports of a store form a chain.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;
use sha2::{Digest, Sha256};
use tera::{Context, Tera};
use thiserror::Error;

use crate::config::Config;
use crate::exceptions::Acceptance;
use crate::reconcile::{Finding, Kind, Outcome, Resolved, SeatSummary, Severity};
use crate::store::TrendPoint;

/// Everything a report shows about one run.
#[derive(Debug, Clone, Serialize)]
pub struct ReportInput {
    pub organization: String,
    pub run_id: i64,
    /// `complete` or `incomplete`.
    pub status: String,
    /// Why the run is incomplete.
    pub reason: Option<String>,
    pub as_of: NaiveDate,
    pub generated_at: DateTime<Utc>,
    pub snapshot: Option<SnapshotInfo>,
    pub idp: Option<InputFile>,
    pub activity: Option<InputFile>,
    /// The exceptions file (`review.exceptions`) the run applied, if any.
    pub exceptions: Option<InputFile>,
    /// The Docker Hub members and invites read with the snapshot, if `[hub]` was set.
    pub hub: Option<HubInfo>,
    /// `None` when the run did not reconcile.
    pub outcome: Option<Outcome>,
    /// Guards this run was let through (`scim`, `idp`), from `--accept-drop`.
    pub accepted_drops: Vec<String>,
    pub version: String,
    /// Open findings per kind over the last reconciled runs up to this one, oldest first.
    pub trend: Vec<TrendPoint>,
    /// The review date on which each finding was first seen, by finding key.
    pub first_seen: BTreeMap<String, NaiveDate>,
    /// The effective configuration and its hash; `None` when the caller has none.
    pub config: Option<ConfigEvidence>,
    /// The newest earlier report's manifest, which this run's manifest links to.
    pub previous_manifest: Option<ManifestLink>,
}

/// The configuration a run used, as evidence: secrets are not part of [`Config`], and
/// credentials written into a URL are replaced by `REDACTED`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigEvidence {
    /// Lowercase hex SHA-256 of `effective` serialized as compact JSON, keys sorted.
    pub sha256: String,
    pub effective: serde_json::Value,
}

impl ConfigEvidence {
    pub fn new(config: &Config) -> ConfigEvidence {
        let mut config = config.clone();
        config.scim.url = redact_url(&config.scim.url);
        let effective = serde_json::to_value(&config).unwrap_or(serde_json::Value::Null);
        ConfigEvidence {
            sha256: config_sha256(&effective),
            effective,
        }
    }
}

/// The SHA-256 of a configuration as [`ConfigEvidence`] records it.
pub fn config_sha256(effective: &serde_json::Value) -> String {
    sha256_hex(&serde_json::to_vec(effective).unwrap_or_default())
}

/// `url` with any user name and password replaced by `REDACTED`.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("REDACTED");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// A link to an earlier report's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestLink {
    pub run_id: i64,
    /// Lowercase hex SHA-256 of that run's `manifest.json`.
    pub sha256: String,
}

/// How [`write_with()`] renders a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Rows shown per section of `report.html`; the CSVs and JSON hold every row.
    pub html_rows: usize,
    /// Start every CSV with a UTF-8 byte order mark, for Excel.
    pub csv_bom: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            html_rows: 500,
            csv_bom: false,
        }
    }
}

/// The snapshot a run reconciled.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub id: i64,
    pub taken_at: DateTime<Utc>,
    /// `complete` or `incomplete`.
    pub status: String,
    pub accounts: u64,
    pub active_accounts: u64,
    pub total_results: Option<u64>,
    /// SHA-256 of the snapshot's content, as [`crate::store::Store::snapshot_sha256`]
    /// computes it.
    pub sha256: Option<String>,
}

/// What the run read from the Docker Hub API with its snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct HubInfo {
    /// The API's origin (`hub.url`).
    pub url: String,
    pub org: String,
    pub members: HubListing,
    pub invites: HubListing,
}

/// One Hub listing: whether it was read completely, and how much of it.
#[derive(Debug, Clone, Serialize)]
pub struct HubListing {
    /// `complete` or `incomplete`.
    pub status: String,
    /// Why it is incomplete.
    pub reason: Option<String>,
    /// Items received.
    pub received: u64,
    /// The `count` the server announced, if it did.
    pub count: Option<u64>,
}

impl HubListing {
    fn label(&self) -> String {
        match &self.reason {
            None => format!("{} ({})", self.received, self.status),
            Some(reason) => format!("{} received, {}: {reason}", self.received, self.status),
        }
    }
}

/// An input file, identified by name and content hash.
#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: String,
    pub sha256: String,
    pub rows: u64,
}

/// The version of the `summary.json`, `findings.json` and `manifest.json` layouts.
pub const SCHEMA_VERSION: u32 = 1;

/// The columns of `findings.csv` and of every `<kind>.csv`, named like the keys of
/// `findings.json` and the column headers of `report.html`, with what each holds.
/// `decision` and `justification` are left empty for the reviewers to fill in.
pub const COLUMNS: [(&str, &str); 20] = [
    ("kind", "the finding kind"),
    (
        "severity",
        "critical, high, medium, low or info; sorts most severe first",
    ),
    (
        "key",
        "the finding's stable key: the kind plus the SCIM id, Hub username or email",
    ),
    ("account_id", "the SCIM id of the Docker account"),
    (
        "docker_id",
        "the Docker ID (SCIM displayName, or the Hub username)",
    ),
    ("email", "the Docker account's email (SCIM userName)"),
    ("name", "the account's name"),
    ("role", "the Docker role: member, editor or owner"),
    ("team", "the Docker team"),
    (
        "person_email",
        "the IdP email of the person the account matched",
    ),
    (
        "person_status",
        "that person's status, as written in the IdP export",
    ),
    (
        "match_basis",
        "which key matched the account to the person, or what was tried",
    ),
    ("reason", "why this is a finding"),
    ("evidence", "the fields and dates behind the finding"),
    (
        "first_seen",
        "the review date of the first run that had this finding",
    ),
    (
        "days_open",
        "whole days from first_seen to this review date",
    ),
    ("decision", "left empty: the reviewer's decision"),
    ("justification", "left empty: the reviewer's reason"),
    (
        "status",
        "open, accepted (an exception in force) or open (exception expired)",
    ),
    (
        "exception",
        "the exception: accepted or expired, by whom, until when, why, and its file row",
    ),
];

/// The header of `findings.csv` and every `<kind>.csv`.
pub const CSV_COLUMNS: [&str; 20] = {
    let mut names = [""; 20];
    let mut i = 0;
    while i < COLUMNS.len() {
        names[i] = COLUMNS[i].0;
        i += 1;
    }
    names
};

/// How many reconciled runs the trend chart shows, this one included.
pub const TREND_RUNS: usize = 12;

const REPORT_TEMPLATE: &str = include_str!("../templates/report.html");
const REPORT_STYLE: &str = include_str!("../templates/report.css");
const REPORT_SCRIPT: &str = include_str!("../templates/report.js");

/// What [`write()`] put on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub dir: PathBuf,
    pub html: PathBuf,
    /// Every file written, in the order written; `manifest.json` comes last.
    pub files: Vec<WrittenFile>,
}

impl Written {
    /// The file written under `name`, if there is one.
    pub fn file(&self, name: &str) -> Option<&WrittenFile> {
        self.files.iter().find(|file| file.name == name)
    }
}

/// One file of a report directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The file name inside the report directory.
    pub name: String,
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub bytes: u64,
}

/// Why a report could not be written. The cause is part of the message, with its whole
/// chain (tera keeps the useful part in `source()`).
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("cannot create `{}`: {cause}", path.display())]
    CreateDir { path: PathBuf, cause: String },
    #[error("cannot render `{}`: {cause}", path.display())]
    Render { path: PathBuf, cause: String },
    #[error("cannot write `{}`: {cause}", path.display())]
    Write { path: PathBuf, cause: String },
    #[error("report `{}` cannot be used: {cause}", path.display())]
    Changed { path: PathBuf, cause: String },
}

impl ReportInput {
    /// The reconciliation outcome, only when the run completed. A run whose status is
    /// not `complete` shows no outcome, whatever it carries: it never reads as an
    /// all-clear.
    pub fn outcome(&self) -> Option<&Outcome> {
        if self.status == "complete" {
            self.outcome.as_ref()
        } else {
            None
        }
    }

    /// Whether the run completed and reconciled.
    pub fn is_complete(&self) -> bool {
        self.outcome().is_some()
    }

    /// `complete` or `incomplete`, as the report and `summary.json` say it.
    pub fn effective_status(&self) -> &'static str {
        if self.is_complete() {
            "complete"
        } else {
            "incomplete"
        }
    }

    /// Why the run is incomplete; `None` for a complete run.
    pub fn failure_reason(&self) -> Option<String> {
        if self.is_complete() {
            return None;
        }
        let reason = self.reason.as_deref().map(str::trim).unwrap_or_default();
        Some(if !reason.is_empty() {
            reason.to_string()
        } else if self.status == "complete" {
            "the run recorded no reconciliation outcome".to_string()
        } else {
            "the run did not record why".to_string()
        })
    }

    /// Open findings of `kind`, or `None` when the kind was not evaluated (or the run is
    /// incomplete). A kind missing from the counts counts as not evaluated: zero would
    /// claim it was checked.
    pub fn count(&self, kind: Kind) -> Option<usize> {
        let outcome = self.outcome()?;
        if outcome.not_evaluated.contains_key(&kind) {
            return None;
        }
        outcome.counts.get(&kind).copied().flatten()
    }

    /// Why `kind` was not evaluated; `None` when it was.
    pub fn not_evaluated_reason(&self, kind: Kind) -> Option<String> {
        if self.count(kind).is_some() {
            return None;
        }
        match self.outcome() {
            None => Some(format!(
                "the run did not complete: {}",
                self.failure_reason().unwrap_or_default()
            )),
            Some(outcome) => Some(
                outcome
                    .not_evaluated
                    .get(&kind)
                    .cloned()
                    .unwrap_or_else(|| "no reason was recorded".to_string()),
            ),
        }
    }

    /// What was not checked of `kind`, when it was evaluated only in part.
    pub fn partial_reason(&self, kind: Kind) -> Option<String> {
        self.outcome()?.partial.get(&kind).cloned()
    }

    /// The count of `kind` as a reader sees it: a number, "not evaluated", or a number
    /// "(checked in part)", which is never a clearance.
    pub fn count_text(&self, kind: Kind) -> String {
        self.outcome().map_or_else(
            || count_label(None),
            |o| o.count_text(kind, &count_label(None)),
        )
    }

    /// Findings of `kind` accepted by an exception in force (shown, not counted).
    pub fn accepted(&self, kind: Kind) -> usize {
        self.outcome().map_or(0, |o| {
            o.findings
                .iter()
                .filter(|f| f.kind == kind && f.is_accepted())
                .count()
        })
    }

    /// Findings this run found gone since an earlier one: how many were resolved, and how
    /// many closed while the person kept access (see [`closed_without_deprovisioning`]).
    pub fn resolved_counts(&self) -> (usize, usize) {
        let resolved = self.outcome().map_or(&[][..], |o| &o.resolved[..]);
        let closed = resolved
            .iter()
            .filter(|r| closed_without_deprovisioning(r))
            .count();
        (resolved.len() - closed, closed)
    }

    /// Open findings over every evaluated kind; `None` when the run is incomplete.
    pub fn open_total(&self) -> Option<usize> {
        self.outcome()?;
        Some(
            Kind::ALL
                .into_iter()
                .filter_map(|kind| self.count(kind))
                .sum(),
        )
    }
}

/// Writes the report of one run into `dir` with the default [`Options`] but for
/// `html_rows`; see [`write_with()`].
pub fn write(dir: &Path, input: &ReportInput, html_rows: usize) -> Result<Written, ReportError> {
    let options = Options {
        html_rows,
        ..Options::default()
    };
    write_with(dir, input, &options)
}

/// Writes the report of one run into `dir`: `report.html`; for complete runs only (an
/// incomplete run has no rows that could pass for an empty review) `findings.csv`, one
/// `<kind>.csv` per evaluated kind and `findings.json`; then `summary.json` and, last,
/// `manifest.json` with the hash of every other file.
///
/// `dir` and missing parents are created with mode 0700, each file with mode 0600 through
/// a temporary file and a rename, so a reader never sees half a file.
pub fn write_with(
    dir: &Path,
    input: &ReportInput,
    options: &Options,
) -> Result<Written, ReportError> {
    create_private_dir(dir).map_err(|e| ReportError::CreateDir {
        path: dir.to_path_buf(),
        cause: error_chain(&e),
    })?;
    let mut files = Vec::new();

    let html = render_html(input, options.html_rows).map_err(|cause| ReportError::Render {
        path: dir.join("report.html"),
        cause,
    })?;
    files.push(write_file(dir, "report.html", html.as_bytes())?);

    if let Some(outcome) = input.outcome() {
        let findings = ordered_findings(outcome);
        let rows: Vec<CsvRow> = findings.iter().map(|f| CsvRow::new(input, f)).collect();
        let all = csv_bytes(&rows, options.csv_bom)
            .map_err(|cause| csv_error(dir, "findings.csv", cause))?;
        files.push(write_file(dir, "findings.csv", &all)?);

        for kind in Kind::ALL {
            if input.count(kind).is_none() {
                continue;
            }
            let name = format!("{}.csv", kind.as_str());
            let rows: Vec<CsvRow> = rows
                .iter()
                .filter(|row| row.finding.kind == kind)
                .cloned()
                .collect();
            let bytes =
                csv_bytes(&rows, options.csv_bom).map_err(|cause| csv_error(dir, &name, cause))?;
            files.push(write_file(dir, &name, &bytes)?);
        }

        let json = json_bytes(&FindingsJson::new(input, &findings), dir, "findings.json")?;
        files.push(write_file(dir, "findings.json", &json)?);
    }

    let summary = json_bytes(&Summary::new(input), dir, "summary.json")?;
    files.push(write_file(dir, "summary.json", &summary)?);

    let manifest = json_bytes(&Manifest::new(input, &files), dir, "manifest.json")?;
    files.push(write_file(dir, "manifest.json", &manifest)?);

    Ok(Written {
        dir: dir.to_path_buf(),
        html: dir.join("report.html"),
        files,
    })
}

/// Renders `report.html`. The error is the whole tera chain.
pub fn render_html(input: &ReportInput, html_rows: usize) -> Result<String, String> {
    let mut tera = Tera::default();
    tera.add_raw_templates([
        ("report.html", REPORT_TEMPLATE),
        ("report.css", REPORT_STYLE),
        ("report.js", REPORT_SCRIPT),
    ])
    .map_err(|e| error_chain(&e))?;
    let context =
        Context::from_serialize(HtmlView::new(input, html_rows)).map_err(|e| error_chain(&e))?;
    tera.render("report.html", &context)
        .map_err(|e| error_chain(&e))
}

/// The findings in report order: by section (`Kind::ALL`), then most severe first, then
/// as reconcile listed them.
/// Reads back a report directory written by [`write()`], checking every file against
/// `manifest.json`, so that what is sent is exactly what was written.
pub fn load(dir: &Path) -> Result<Written, ReportError> {
    let changed = |cause: String| ReportError::Changed {
        path: dir.to_path_buf(),
        cause,
    };
    let manifest_path = dir.join("manifest.json");
    let manifest_bytes =
        fs::read(&manifest_path).map_err(|e| changed(format!("cannot read manifest.json: {e}")))?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| changed(format!("manifest.json is not JSON: {e}")))?;
    let listed = manifest["files"]
        .as_array()
        .ok_or_else(|| changed("manifest.json lists no files".into()))?;

    let mut files = Vec::with_capacity(listed.len() + 1);
    for entry in listed {
        let name = entry["name"]
            .as_str()
            .filter(|n| !n.contains('/') && !n.contains('\\') && !n.starts_with('.'))
            .ok_or_else(|| changed(format!("manifest.json has a bad file entry: {entry}")))?;
        let path = dir.join(name);
        let bytes = fs::read(&path).map_err(|e| changed(format!("cannot read {name}: {e}")))?;
        let sha256 = sha256_hex(&bytes);
        if Some(sha256.as_str()) != entry["sha256"].as_str() {
            return Err(changed(format!(
                "{name} changed since it was written (its SHA-256 differs from manifest.json)"
            )));
        }
        files.push(WrittenFile {
            name: name.to_owned(),
            path,
            sha256,
            bytes: bytes.len() as u64,
        });
    }
    files.push(WrittenFile {
        name: "manifest.json".into(),
        path: manifest_path,
        sha256: sha256_hex(&manifest_bytes),
        bytes: manifest_bytes.len() as u64,
    });
    Ok(Written {
        dir: dir.to_path_buf(),
        html: dir.join("report.html"),
        files,
    })
}

fn ordered_findings(outcome: &Outcome) -> Vec<&Finding> {
    let mut findings: Vec<&Finding> = outcome.findings.iter().collect();
    findings.sort_by_key(|f| (section_index(f.kind), f.severity));
    findings
}

fn section_index(kind: Kind) -> usize {
    Kind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(Kind::ALL.len())
}

fn severity_rank(severity: Severity) -> u8 {
    match severity {
        Severity::Critical => 0,
        Severity::High => 1,
        Severity::Medium => 2,
        Severity::Low => 3,
        Severity::Info => 4,
    }
}

/// `k=v; k=v` in key order, the form of the `evidence` CSV column.
pub fn evidence_text(evidence: &BTreeMap<String, String>) -> String {
    evidence
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Makes a cell inert in spreadsheets: a cell starting with `=`, `+`, `-`, `@`, a tab or
/// a carriage return would be read as a formula, so it gets a leading `'`. A plain
/// number (`-12`, `+3.5`) stays as it is: it computes nothing, and a quote would turn it
/// into text.
pub fn neutralize_formula(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') if !is_plain_number(cell) => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

/// An optional sign, digits, and optionally a point and more digits; nothing else.
fn is_plain_number(cell: &str) -> bool {
    let unsigned = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction)
}

/// One finding with what the store knows of its age: a row of the CSVs and of
/// `findings.json`.
#[derive(Clone)]
struct CsvRow<'a> {
    finding: &'a Finding,
    first_seen: Option<NaiveDate>,
    days_open: Option<i64>,
}

impl<'a> CsvRow<'a> {
    fn new(input: &ReportInput, finding: &'a Finding) -> Self {
        let first_seen = finding
            .first_seen
            .or_else(|| input.first_seen.get(&finding.key).copied());
        CsvRow {
            finding,
            first_seen,
            days_open: first_seen.and_then(|first| days_between(first, input.as_of)),
        }
    }
}

/// Whole days from `first` to `as_of`; `None` when `first` lies after it (a run
/// reconciled again with an earlier review date), rather than a negative age.
fn days_between(first: NaiveDate, as_of: NaiveDate) -> Option<i64> {
    let days = (as_of - first).num_days();
    (days >= 0).then_some(days)
}

/// UTF-8 byte order mark, which makes Excel read a CSV as UTF-8.
const BOM: &[u8] = b"\xEF\xBB\xBF";

fn csv_bytes(rows: &[CsvRow], bom: bool) -> Result<Vec<u8>, String> {
    let start = if bom { BOM.to_vec() } else { Vec::new() };
    let mut writer = csv::Writer::from_writer(start);
    writer
        .write_record(CSV_COLUMNS)
        .map_err(|e| error_chain(&e))?;
    for row in rows {
        let finding = row.finding;
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let record: [String; 20] = [
            finding.kind.as_str().to_string(),
            finding.severity.as_str().to_string(),
            finding.key.clone(),
            text(&finding.account_id),
            text(&finding.docker_id),
            text(&finding.email),
            text(&finding.name),
            text(&finding.role),
            text(&finding.team),
            text(&finding.person_email),
            text(&finding.person_status),
            finding.match_basis.clone(),
            finding.reason.clone(),
            evidence_text(&finding.evidence),
            row.first_seen.map(|d| d.to_string()).unwrap_or_default(),
            row.days_open.map(|d| d.to_string()).unwrap_or_default(),
            String::new(),
            String::new(),
            status_text(finding).to_string(),
            finding
                .exception
                .as_ref()
                .map(exception_text)
                .unwrap_or_default(),
        ];
        writer
            .write_record(record.iter().map(|cell| neutralize_formula(cell)))
            .map_err(|e| error_chain(&e))?;
    }
    writer.into_inner().map_err(|e| error_chain(e.error()))
}

/// A finding's state as the CSV and the report say it.
pub fn status_text(finding: &Finding) -> &'static str {
    match &finding.exception {
        Some(e) if e.expired => "open (exception expired)",
        Some(_) => "accepted",
        None => "open",
    }
}

/// An exception in one line: who accepted the finding, why, until when, and where.
pub fn exception_text(e: &Acceptance) -> String {
    format!(
        "{} by {} until {}: {} ({})",
        if e.expired { "expired" } else { "accepted" },
        e.owner,
        e.expires,
        e.reason,
        e.source
    )
}

fn csv_error(dir: &Path, name: &str, cause: String) -> ReportError {
    ReportError::Write {
        path: dir.join(name),
        cause,
    }
}

fn json_bytes<T: Serialize>(value: &T, dir: &Path, name: &str) -> Result<Vec<u8>, ReportError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| ReportError::Write {
        path: dir.join(name),
        cause: error_chain(&e),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<WrittenFile, ReportError> {
    let path = dir.join(name);
    write_private(&path, bytes).map_err(|e| ReportError::Write {
        path: path.clone(),
        cause: error_chain(&e),
    })?;
    Ok(WrittenFile {
        name: name.to_string(),
        path,
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
    })
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An error and every cause below it, joined with `: `.
pub(crate) fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// Creates `dir` and its missing parents with mode 0700. A directory that already
/// exists keeps its mode: tightening a directory the operator chose (`.`, say) is not
/// this tool's call, and every file in it is 0600 anyway.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` with mode 0600, atomically: a temporary file in the same
/// directory, flushed, then renamed over `path`.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let temp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));

    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;

    // The rename is durable once the directory is; some filesystems refuse to sync a
    // directory, which loses nothing that was not already at risk.
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(())
}

fn rfc3339(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn display_time(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn money(value: f64) -> String {
    format!("{value:.2}")
}

/// A map serialized in `Kind::ALL` order, keyed by the kind's name.
struct ByKind<V>(Vec<(Kind, V)>);

impl<V: Serialize> Serialize for ByKind<V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (kind, value) in &self.0 {
            map.serialize_entry(kind.as_str(), value)?;
        }
        map.end()
    }
}

/// `summary.json`: the run's counts for machines. Field names are read by later checks:
/// keep them.
#[derive(Serialize)]
struct Summary<'a> {
    schema_version: u32,
    status: &'static str,
    reason: Option<String>,
    organization: &'a str,
    run_id: i64,
    as_of: String,
    generated_at: String,
    snapshot: Option<SnapshotJson<'a>>,
    idp: Option<InputJson<'a>>,
    activity: Option<InputJson<'a>>,
    /// The Docker Hub API read, `null` when `[hub]` was not set.
    hub: Option<&'a HubInfo>,
    /// Every kind, `null` when not evaluated.
    findings: ByKind<Option<usize>>,
    /// Exactly the kinds that are `null` in `findings`, with the reason.
    not_evaluated: ByKind<String>,
    /// Kinds checked only in part, with what was not checked: their count in `findings`
    /// is what was found, not a clearance.
    partial: ByKind<String>,
    seats: Option<&'a SeatSummary>,
    /// Findings accepted by an exception in force, per evaluated kind; not in `findings`.
    accepted: ByKind<usize>,
    /// Findings whose exception has expired; they count as open.
    expired_exceptions: usize,
    /// Findings open in an earlier run that this run found resolved: the account was
    /// removed, deactivated or fixed.
    resolved: usize,
    /// Leavers' findings closed while access stayed: the IdP record changed (the person
    /// is gone from the export, or active again) and the Docker account is still active,
    /// or the account left SCIM but the person is still a member of the organization. No
    /// access was removed, so they are not counted as resolved.
    closed_by_idp_change: usize,
    accepted_drops: &'a [String],
    version: &'a str,
}

impl<'a> Summary<'a> {
    fn new(input: &'a ReportInput) -> Self {
        Summary {
            schema_version: SCHEMA_VERSION,
            status: input.effective_status(),
            reason: input.failure_reason().or_else(|| input.reason.clone()),
            organization: &input.organization,
            run_id: input.run_id,
            as_of: input.as_of.format("%Y-%m-%d").to_string(),
            generated_at: rfc3339(&input.generated_at),
            snapshot: input.snapshot.as_ref().map(SnapshotJson::new),
            hub: input.hub.as_ref(),
            idp: input.idp.as_ref().map(InputJson::new),
            activity: input.activity.as_ref().map(InputJson::new),
            findings: ByKind(Kind::ALL.map(|kind| (kind, input.count(kind))).to_vec()),
            not_evaluated: ByKind(
                Kind::ALL
                    .into_iter()
                    .filter_map(|kind| input.not_evaluated_reason(kind).map(|r| (kind, r)))
                    .collect(),
            ),
            partial: ByKind(
                Kind::ALL
                    .into_iter()
                    .filter_map(|kind| input.partial_reason(kind).map(|r| (kind, r)))
                    .collect(),
            ),
            seats: input.outcome().map(|outcome| &outcome.seats),
            accepted: ByKind(
                Kind::ALL
                    .into_iter()
                    .filter(|kind| input.count(*kind).is_some())
                    .map(|kind| (kind, input.accepted(kind)))
                    .collect(),
            ),
            expired_exceptions: input.outcome().map_or(0, |o| {
                o.findings
                    .iter()
                    .filter(|f| f.exception.as_ref().is_some_and(|e| e.expired))
                    .count()
            }),
            resolved: input.resolved_counts().0,
            closed_by_idp_change: input.resolved_counts().1,
            accepted_drops: &input.accepted_drops,
            version: &input.version,
        }
    }
}

#[derive(Serialize)]
struct SnapshotJson<'a> {
    id: i64,
    taken_at: String,
    status: &'a str,
    accounts: u64,
    active_accounts: u64,
    total_results: Option<u64>,
    sha256: Option<&'a str>,
}

impl<'a> SnapshotJson<'a> {
    fn new(snapshot: &'a SnapshotInfo) -> Self {
        SnapshotJson {
            id: snapshot.id,
            taken_at: rfc3339(&snapshot.taken_at),
            status: &snapshot.status,
            accounts: snapshot.accounts,
            active_accounts: snapshot.active_accounts,
            total_results: snapshot.total_results,
            sha256: snapshot.sha256.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct InputJson<'a> {
    path: String,
    name: String,
    format: &'a str,
    sha256: &'a str,
    rows: u64,
}

impl<'a> InputJson<'a> {
    fn new(file: &'a InputFile) -> Self {
        InputJson {
            path: file.path.display().to_string(),
            name: file_name(&file.path),
            format: &file.format,
            sha256: &file.sha256,
            rows: file.rows,
        }
    }
}

/// `findings.json`: every finding of a complete run, with the keys of the CSV columns.
#[derive(Serialize)]
struct FindingsJson<'a> {
    schema_version: u32,
    run_id: i64,
    as_of: String,
    status: &'static str,
    findings: Vec<FindingJson<'a>>,
}

#[derive(Serialize)]
struct FindingJson<'a> {
    kind: &'static str,
    severity: &'static str,
    key: &'a str,
    account_id: Option<&'a str>,
    docker_id: Option<&'a str>,
    email: Option<&'a str>,
    name: Option<&'a str>,
    role: Option<&'a str>,
    team: Option<&'a str>,
    person_email: Option<&'a str>,
    person_status: Option<&'a str>,
    match_basis: &'a str,
    reason: &'a str,
    evidence: &'a BTreeMap<String, String>,
    first_seen: Option<String>,
    days_open: Option<i64>,
    /// `open`, `accepted` or `open (exception expired)`, as in the CSV.
    status: &'static str,
    /// The exception that names the finding, in force or expired; `null` when none.
    exception: Option<&'a Acceptance>,
}

impl<'a> FindingsJson<'a> {
    fn new(input: &ReportInput, findings: &[&'a Finding]) -> Self {
        FindingsJson {
            schema_version: SCHEMA_VERSION,
            run_id: input.run_id,
            as_of: input.as_of.format("%Y-%m-%d").to_string(),
            status: input.effective_status(),
            findings: findings
                .iter()
                .map(|finding| {
                    let row = CsvRow::new(input, finding);
                    let f = row.finding;
                    FindingJson {
                        kind: f.kind.as_str(),
                        severity: f.severity.as_str(),
                        key: &f.key,
                        account_id: f.account_id.as_deref(),
                        docker_id: f.docker_id.as_deref(),
                        email: f.email.as_deref(),
                        name: f.name.as_deref(),
                        role: f.role.as_deref(),
                        team: f.team.as_deref(),
                        person_email: f.person_email.as_deref(),
                        person_status: f.person_status.as_deref(),
                        match_basis: &f.match_basis,
                        reason: &f.reason,
                        evidence: &f.evidence,
                        first_seen: row.first_seen.map(|d| d.to_string()),
                        days_open: row.days_open,
                        status: status_text(f),
                        exception: f.exception.as_ref(),
                    }
                })
                .collect(),
        }
    }
}

/// `manifest.json`: the evidence of what produced the report and what it holds. Read
/// back by `hubreview verify`: keep the field names.
#[derive(Serialize)]
struct Manifest<'a> {
    schema_version: u32,
    tool: &'static str,
    version: &'a str,
    run_id: i64,
    status: &'static str,
    as_of: String,
    generated_at: String,
    /// Every other file of the directory, in the order written.
    files: Vec<ManifestFile<'a>>,
    inputs: Vec<ManifestInput<'a>>,
    snapshot_id: Option<i64>,
    snapshot_sha256: Option<&'a str>,
    /// What was read from the Docker Hub API with the snapshot.
    hub: Option<&'a HubInfo>,
    config: Option<&'a ConfigEvidence>,
    previous_manifest: Option<&'a ManifestLink>,
}

#[derive(Serialize)]
struct ManifestFile<'a> {
    name: &'a str,
    sha256: &'a str,
    bytes: u64,
}

#[derive(Serialize)]
struct ManifestInput<'a> {
    role: &'static str,
    path: String,
    sha256: &'a str,
    rows: u64,
}

impl<'a> Manifest<'a> {
    fn new(input: &'a ReportInput, files: &'a [WrittenFile]) -> Self {
        let inputs = [
            ("idp", &input.idp),
            ("activity", &input.activity),
            ("exceptions", &input.exceptions),
        ]
        .into_iter()
        .filter_map(|(role, file)| {
            file.as_ref().map(|file| ManifestInput {
                role,
                path: file.path.display().to_string(),
                sha256: &file.sha256,
                rows: file.rows,
            })
        })
        .collect();
        Manifest {
            schema_version: SCHEMA_VERSION,
            tool: "hubreview",
            version: &input.version,
            run_id: input.run_id,
            status: input.effective_status(),
            as_of: input.as_of.format("%Y-%m-%d").to_string(),
            generated_at: rfc3339(&input.generated_at),
            files: files
                .iter()
                .map(|file| ManifestFile {
                    name: &file.name,
                    sha256: &file.sha256,
                    bytes: file.bytes,
                })
                .collect(),
            inputs,
            snapshot_id: input.snapshot.as_ref().map(|snapshot| snapshot.id),
            snapshot_sha256: input
                .snapshot
                .as_ref()
                .and_then(|snapshot| snapshot.sha256.as_deref()),
            hub: input.hub.as_ref(),
            config: input.config.as_ref(),
            previous_manifest: input.previous_manifest.as_ref(),
        }
    }
}

/// What `report.html` is rendered from: every value already in the form shown, so the
/// template only places text (which tera escapes) and numbers.
#[derive(Serialize)]
struct HtmlView {
    organization: String,
    as_of: String,
    run_id: i64,
    generated_at: String,
    version: String,
    complete: bool,
    status_label: String,
    reason: String,
    snapshot: Option<SnapshotView>,
    /// `<org> at <url>: members ..., invites ...`, when the Hub API was read.
    hub: Option<String>,
    idp: Option<InputView>,
    activity: Option<InputView>,
    accepted_drops: Vec<DropView>,
    open_total_label: String,
    severity_totals: Vec<SeverityCount>,
    cards: Vec<CardView>,
    seats: Option<SeatsView>,
    trend: TrendView,
    columns: Vec<ColumnView>,
    table_columns: Vec<&'static str>,
    sections: Vec<SectionView>,
    /// Findings whose exception expired: they count as open again.
    expired: Vec<ExpiredView>,
    resolved: Vec<ResolvedView>,
    /// How many of `resolved` are resolved, and how many closed while the person kept
    /// access (a leaver whose IdP record changed, or who left SCIM but is still a member).
    resolved_count: usize,
    closed_count: usize,
    config_sha256: Option<String>,
    previous_manifest: Option<ManifestLink>,
    /// The printed page header, as the inside of a CSS string.
    page_title_css: String,
    style_hash: String,
    page_style_hash: String,
    script_hash: String,
}

#[derive(Serialize)]
struct ExpiredView {
    kind: &'static str,
    who: String,
    exception: String,
}

#[derive(Serialize)]
struct ResolvedView {
    kind: &'static str,
    who: String,
    first_seen: String,
    resolved_on: String,
    days_open: String,
    deprovision: String,
}

#[derive(Serialize)]
struct SnapshotView {
    id: i64,
    taken_at: String,
    status: String,
    accounts: u64,
    active_accounts: u64,
    total_results_label: Option<String>,
    sha256: Option<String>,
}

#[derive(Serialize)]
struct InputView {
    name: String,
    format: String,
    sha256: String,
    rows: u64,
}

#[derive(Serialize)]
struct DropView {
    name: String,
    label: String,
}

#[derive(Serialize)]
struct SeverityCount {
    severity: &'static str,
    count: usize,
}

#[derive(Serialize)]
struct CardView {
    kind: &'static str,
    title: &'static str,
    count_label: String,
    /// A CSS class from a fixed set: `open`, `clear` or `not-evaluated`.
    state: &'static str,
    /// The open findings of this kind by severity, most severe first, without zeros.
    severities: Vec<SeverityCount>,
}

#[derive(Serialize)]
struct SeatsView {
    purchased: String,
    in_use: u64,
    unused: Option<u64>,
    over: Option<u64>,
    reclaimable_total: u64,
    reclaimable: Vec<ReclaimView>,
    seat_price: Option<String>,
    monthly_saving: Option<String>,
    yearly_saving: Option<String>,
    chart: SeatChart,
    /// What "in use" was counted from, when not from the organization's members.
    in_use_note: Option<String>,
}

#[derive(Serialize)]
struct ReclaimView {
    reason: String,
    seats: u64,
}

/// The seat breakdown as one stacked bar: reclaimable seats by reason, the other seats
/// in use, and purchased seats nobody holds.
#[derive(Serialize)]
struct SeatChart {
    segments: Vec<SeatSegment>,
    /// Where the purchased seats end, when fewer seats were bought than are in use.
    purchased_x: Option<String>,
    scale: u64,
    description: String,
}

#[derive(Serialize)]
struct SeatSegment {
    x: String,
    width: String,
    /// A CSS class from a fixed set: `series-<n>`, `seat-other`, `seat-kept`, `seat-unused`.
    class: String,
    label: String,
    seats: u64,
}

/// Open findings per kind over the last reconciled runs, as an SVG line chart and a
/// table.
#[derive(Serialize)]
struct TrendView {
    runs: usize,
    x_labels: Vec<AxisLabel>,
    y_ticks: Vec<AxisLabel>,
    series: Vec<SeriesView>,
    /// Kinds evaluated in these runs with no open finding in any: not drawn, so that
    /// their lines do not hide each other along the zero line.
    zero_kinds: Vec<&'static str>,
    /// Whether any run shown checked a kind only in part (its counts carry a `*`).
    marked: bool,
    kinds: Vec<&'static str>,
    rows: Vec<TrendRow>,
    description: String,
}

#[derive(Serialize)]
struct AxisLabel {
    x: String,
    y: String,
    label: String,
}

#[derive(Serialize)]
struct SeriesView {
    kind: &'static str,
    /// `series-<n>`, the kind's place in `Kind::ALL`: a fixed set of CSS classes.
    class: String,
    /// `points` attributes of the polylines; a run that did not evaluate the kind
    /// breaks the line.
    lines: Vec<String>,
    dots: Vec<Dot>,
    latest: String,
}

#[derive(Serialize)]
struct Dot {
    x: String,
    y: String,
    title: String,
}

#[derive(Serialize)]
struct TrendRow {
    run_id: i64,
    as_of: String,
    cells: Vec<String>,
}

#[derive(Serialize)]
struct ColumnView {
    name: &'static str,
    meaning: &'static str,
}

#[derive(Serialize)]
struct SectionView {
    kind: &'static str,
    title: &'static str,
    action: &'static str,
    evaluated: bool,
    count_label: String,
    not_evaluated: Option<String>,
    /// What was not checked, when the kind was evaluated only in part.
    partial: Option<String>,
    csv: String,
    /// Rows accepted by an exception: listed, not counted.
    accepted: usize,
    total: usize,
    shown: usize,
    more: usize,
    rows: Vec<RowView>,
}

#[derive(Serialize)]
struct RowView {
    severity: &'static str,
    severity_rank: u8,
    docker_id: String,
    email: String,
    email_href: Option<String>,
    name: String,
    role: String,
    team: String,
    person_email: String,
    person_email_href: Option<String>,
    person_status: String,
    match_basis: String,
    reason: String,
    evidence: Vec<EvidenceItem>,
    first_seen: String,
    days_open: String,
    /// `days_open` for sorting; -1 when unknown.
    days_sort: i64,
    /// `open`, `accepted` or `open (exception expired)`, with the exception.
    status: String,
}

#[derive(Serialize)]
struct EvidenceItem {
    key: String,
    value: String,
    href: Option<String>,
}

/// The columns of each findings table in `report.html`, in CSV order: those that are the
/// same on every row of a section (`kind`), identifiers the CSV carries for machines
/// (`key`, `account_id`, `first_seen`, shown on hover) and the reviewers' columns are left
/// out.
const TABLE_COLUMNS: [&str; 13] = [
    "severity",
    "docker_id",
    "email",
    "name",
    "role",
    "team",
    "person_email",
    "person_status",
    "match_basis",
    "reason",
    "evidence",
    "days_open",
    "status",
];

const SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Info,
];

impl HtmlView {
    fn new(input: &ReportInput, html_rows: usize) -> Self {
        let complete = input.is_complete();
        let findings = input.outcome().map(ordered_findings).unwrap_or_default();

        // Open findings by kind and severity, from the rows of evaluated kinds.
        let mut by_severity: BTreeMap<(usize, u8), usize> = BTreeMap::new();
        for finding in &findings {
            if input.count(finding.kind).is_some() {
                *by_severity
                    .entry((section_index(finding.kind), severity_rank(finding.severity)))
                    .or_default() += 1;
            }
        }
        let severities_of = |section: Option<usize>| -> Vec<SeverityCount> {
            SEVERITIES
                .into_iter()
                .filter_map(|severity| {
                    let rank = severity_rank(severity);
                    let count: usize = by_severity
                        .iter()
                        .filter(|((s, r), _)| *r == rank && section.is_none_or(|k| k == *s))
                        .map(|(_, n)| n)
                        .sum();
                    (count > 0).then_some(SeverityCount {
                        severity: severity.as_str(),
                        count,
                    })
                })
                .collect()
        };

        let cards = Kind::ALL
            .into_iter()
            .map(|kind| {
                let count = input.count(kind);
                CardView {
                    kind: kind.as_str(),
                    title: kind.title(),
                    count_label: input.count_text(kind),
                    state: match count {
                        None => "not-evaluated",
                        // Nothing found in part of the sources is not a clear.
                        Some(0) if input.partial_reason(kind).is_some() => "not-evaluated",
                        Some(0) => "clear",
                        Some(_) => "open",
                    },
                    severities: severities_of(Some(section_index(kind))),
                }
            })
            .collect();

        let sections = Kind::ALL
            .into_iter()
            .map(|kind| {
                let count = input.count(kind);
                let rows: Vec<&Finding> = match count {
                    Some(_) => findings
                        .iter()
                        .copied()
                        .filter(|f| f.kind == kind)
                        .collect(),
                    None => Vec::new(),
                };
                let shown = rows.len().min(html_rows);
                SectionView {
                    kind: kind.as_str(),
                    title: kind.title(),
                    action: kind.action(),
                    evaluated: count.is_some(),
                    count_label: input.count_text(kind),
                    not_evaluated: input.not_evaluated_reason(kind),
                    partial: input.partial_reason(kind),
                    csv: format!("{}.csv", kind.as_str()),
                    accepted: rows.iter().filter(|f| f.is_accepted()).count(),
                    total: rows.len(),
                    shown,
                    more: rows.len() - shown,
                    rows: rows
                        .iter()
                        .take(shown)
                        .map(|f| RowView::new(input, f))
                        .collect(),
                }
            })
            .collect();

        let status_label = if complete {
            "complete".to_string()
        } else {
            "incomplete: nothing was reconciled".to_string()
        };
        let as_of = input.as_of.format("%Y-%m-%d").to_string();
        let page_title_css = css_string_body(&format!(
            "Docker Hub access review: {}, {as_of}, run {}, {status_label}",
            input.organization, input.run_id
        ));

        HtmlView {
            organization: input.organization.clone(),
            as_of,
            run_id: input.run_id,
            generated_at: display_time(&input.generated_at),
            version: input.version.clone(),
            complete,
            status_label,
            reason: input.failure_reason().unwrap_or_default(),
            hub: input.hub.as_ref().map(|hub| {
                format!(
                    "{} at {}: members {}; invites {}",
                    hub.org,
                    hub.url,
                    hub.members.label(),
                    hub.invites.label()
                )
            }),
            snapshot: input.snapshot.as_ref().map(|snapshot| SnapshotView {
                id: snapshot.id,
                taken_at: display_time(&snapshot.taken_at),
                status: snapshot.status.clone(),
                accounts: snapshot.accounts,
                active_accounts: snapshot.active_accounts,
                total_results_label: snapshot.total_results.map(|n| n.to_string()),
                sha256: snapshot.sha256.clone(),
            }),
            idp: input.idp.as_ref().map(InputView::new),
            activity: input.activity.as_ref().map(InputView::new),
            accepted_drops: input
                .accepted_drops
                .iter()
                .map(|name| DropView {
                    name: name.clone(),
                    label: drop_label(name),
                })
                .collect(),
            open_total_label: count_label(input.open_total()),
            severity_totals: severities_of(None),
            cards,
            seats: input
                .outcome()
                .map(|outcome| SeatsView::new(&outcome.seats)),
            trend: TrendView::new(input),
            columns: COLUMNS
                .iter()
                .map(|(name, meaning)| ColumnView { name, meaning })
                .collect(),
            table_columns: TABLE_COLUMNS.to_vec(),
            sections,
            expired: findings
                .iter()
                .filter_map(|f| {
                    let e = f.exception.as_ref().filter(|e| e.expired)?;
                    Some(ExpiredView {
                        kind: f.kind.as_str(),
                        who: who(f),
                        exception: exception_text(e),
                    })
                })
                .collect(),
            resolved: input
                .outcome()
                .map(|o| o.resolved.iter().map(ResolvedView::new).collect())
                .unwrap_or_default(),
            resolved_count: input.resolved_counts().0,
            closed_count: input.resolved_counts().1,
            config_sha256: input.config.as_ref().map(|c| c.sha256.clone()),
            previous_manifest: input.previous_manifest.clone(),
            page_style_hash: csp_hash(&page_style(&page_title_css)),
            page_title_css,
            style_hash: csp_hash(REPORT_STYLE),
            script_hash: csp_hash(REPORT_SCRIPT),
        }
    }
}

impl InputView {
    fn new(file: &InputFile) -> Self {
        InputView {
            name: file_name(&file.path),
            format: file.format.clone(),
            sha256: file.sha256.clone(),
            rows: file.rows,
        }
    }
}

impl SeatsView {
    fn new(seats: &SeatSummary) -> Self {
        SeatsView {
            purchased: seats
                .purchased
                .map(|n| n.to_string())
                .unwrap_or_else(|| "not configured".to_string()),
            in_use: seats.in_use,
            in_use_note: seats.in_use_note.clone(),
            unused: seats
                .purchased
                .map(|purchased| purchased.saturating_sub(seats.in_use)),
            over: seats
                .purchased
                .map(|purchased| seats.in_use.saturating_sub(purchased))
                .filter(|over| *over > 0),
            reclaimable_total: seats.reclaimable_total,
            reclaimable: reclaimable_view(&seats.reclaimable),
            seat_price: seats.seat_price.map(money),
            monthly_saving: seats.monthly_saving.map(money),
            yearly_saving: seats.yearly_saving.map(money),
            chart: SeatChart::new(seats),
        }
    }
}

/// The width of the SVG charts' coordinate system; the browser scales it to the page.
const CHART_WIDTH: f64 = 640.0;

/// A chart coordinate, to one decimal.
fn coordinate(value: f64) -> String {
    format!("{value:.1}")
}

impl SeatChart {
    const LEFT: f64 = 4.0;
    const RIGHT: f64 = CHART_WIDTH - 4.0;

    fn new(seats: &SeatSummary) -> Self {
        let mut parts: Vec<(String, String, u64)> = Vec::new();
        let mut reasons: Vec<(&String, &u64)> =
            seats.reclaimable.iter().filter(|(_, n)| **n > 0).collect();
        reasons
            .sort_by_key(|(reason, _)| Kind::parse(reason).map_or(Kind::ALL.len(), section_index));
        for (reason, seats) in reasons {
            let (class, label) = match Kind::parse(reason) {
                Some(kind) => (
                    format!("series-{}", section_index(kind)),
                    format!("reclaimable: {}", kind.title()),
                ),
                None => ("seat-other".to_string(), format!("reclaimable: {reason}")),
            };
            parts.push((class, label, *seats));
        }
        let kept = seats.in_use.saturating_sub(seats.reclaimable_total);
        parts.push((
            "seat-kept".to_string(),
            "in use, nothing to reclaim".to_string(),
            kept,
        ));
        if let Some(purchased) = seats.purchased {
            let unused = purchased.saturating_sub(seats.in_use.max(seats.reclaimable_total));
            parts.push((
                "seat-unused".to_string(),
                "purchased, not in use".to_string(),
                unused,
            ));
        }

        let scale = parts
            .iter()
            .map(|(_, _, n)| n)
            .sum::<u64>()
            .max(seats.purchased.unwrap_or(0))
            .max(1);
        let per_seat = (Self::RIGHT - Self::LEFT) / scale as f64;
        let mut x = Self::LEFT;
        let mut segments = Vec::new();
        for (class, label, count) in parts {
            if count == 0 {
                continue;
            }
            let width = count as f64 * per_seat;
            segments.push(SeatSegment {
                x: coordinate(x),
                width: coordinate(width),
                class,
                label,
                seats: count,
            });
            x += width;
        }
        let purchased_x = seats
            .purchased
            .filter(|purchased| *purchased < seats.in_use)
            .map(|purchased| coordinate(Self::LEFT + purchased as f64 * per_seat));

        let description = format!(
            "{} seats in use, {} of them reclaimable; {}",
            seats.in_use,
            seats.reclaimable_total,
            match seats.purchased {
                Some(purchased) => format!("{purchased} purchased"),
                None => "seats purchased not configured".to_string(),
            }
        );
        SeatChart {
            segments,
            purchased_x,
            scale,
            description,
        }
    }
}

impl TrendView {
    const LEFT: f64 = 44.0;
    const RIGHT: f64 = CHART_WIDTH - 20.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 180.0;

    fn new(input: &ReportInput) -> Self {
        // An incomplete run has no point of its own: earlier counts are not shown under
        // its name.
        let points: &[TrendPoint] = if input.is_complete() {
            &input.trend
        } else {
            &[]
        };
        let count = |point: &TrendPoint, kind: Kind| point.count(kind);
        let max = points
            .iter()
            .flat_map(|point| Kind::ALL.map(|kind| count(point, kind)))
            .flatten()
            .max()
            .unwrap_or(0);
        let top = nice_ceiling(max);

        let x_of = |i: usize| {
            if points.len() <= 1 {
                (Self::LEFT + Self::RIGHT) / 2.0
            } else {
                Self::LEFT + (Self::RIGHT - Self::LEFT) * i as f64 / (points.len() - 1) as f64
            }
        };
        let y_of = |n: usize| Self::BOTTOM - (Self::BOTTOM - Self::TOP) * n as f64 / top as f64;
        let run_label = |point: &TrendPoint| {
            point
                .as_of
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| format!("run {}", point.run_id))
        };

        // A kind checked only in part in this run is drawn, never listed as clear.
        let zero_kinds: Vec<&'static str> = Kind::ALL
            .into_iter()
            .filter(|kind| input.partial_reason(*kind).is_none())
            .filter(|kind| {
                let counts: Vec<usize> = points.iter().filter_map(|p| count(p, *kind)).collect();
                !counts.is_empty() && counts.iter().all(|n| *n == 0)
            })
            .map(Kind::as_str)
            .collect();
        let series = Kind::ALL
            .into_iter()
            .filter(|kind| !zero_kinds.contains(&kind.as_str()))
            .filter_map(|kind| {
                let mut lines = Vec::new();
                let mut line: Vec<String> = Vec::new();
                let mut dots = Vec::new();
                for (i, point) in points.iter().enumerate() {
                    match count(point, kind) {
                        Some(n) => {
                            let (x, y) = (coordinate(x_of(i)), coordinate(y_of(n)));
                            line.push(format!("{x},{y}"));
                            dots.push(Dot {
                                x,
                                y,
                                title: format!(
                                    "{}: {n} open on {} (run {})",
                                    kind.as_str(),
                                    run_label(point),
                                    point.run_id
                                ),
                            });
                        }
                        None if !line.is_empty() => lines.push(std::mem::take(&mut line).join(" ")),
                        None => {}
                    }
                }
                if !line.is_empty() {
                    lines.push(line.join(" "));
                }
                let latest = points
                    .last()
                    .map(|point| point.cell(kind, &count_label(None)))
                    .unwrap_or_default();
                (!dots.is_empty()).then(|| SeriesView {
                    kind: kind.as_str(),
                    class: format!("series-{}", section_index(kind)),
                    lines,
                    dots,
                    latest,
                })
            })
            .collect();

        // Label at most about eight runs, always the first and the last.
        let step = points.len().div_ceil(8).max(1);
        let x_labels = points
            .iter()
            .enumerate()
            .filter(|(i, _)| i % step == 0 || *i + 1 == points.len())
            .map(|(i, point)| AxisLabel {
                x: coordinate(x_of(i)),
                y: coordinate(Self::BOTTOM + 18.0),
                label: point
                    .as_of
                    .map(|d| d.format("%m-%d").to_string())
                    .unwrap_or_else(|| format!("run {}", point.run_id)),
            })
            .collect();
        let parts = [4, 5, 2]
            .into_iter()
            .find(|p| top.is_multiple_of(*p))
            .unwrap_or(1);
        let y_ticks = (0..=parts)
            .map(|i| top * i / parts)
            .map(|n| AxisLabel {
                x: coordinate(Self::LEFT - 6.0),
                y: coordinate(y_of(n)),
                label: n.to_string(),
            })
            .collect();

        let rows = points
            .iter()
            .map(|point| TrendRow {
                run_id: point.run_id,
                as_of: run_label(point),
                cells: Kind::ALL
                    .map(|kind| point.cell(kind, &count_label(None)))
                    .to_vec(),
            })
            .collect();
        let description = match (points.first(), points.last()) {
            (Some(first), Some(last)) if points.len() > 1 => format!(
                "open findings per kind in the {} reconciled runs from {} to {}",
                points.len(),
                run_label(first),
                run_label(last)
            ),
            (Some(only), _) => format!(
                "open findings per kind in the only reconciled run so far, {}",
                run_label(only)
            ),
            _ => "no reconciled run yet".to_string(),
        };
        TrendView {
            runs: points.len(),
            x_labels,
            y_ticks,
            series,
            zero_kinds,
            marked: points.iter().any(|p| !p.partial.is_empty()),
            kinds: Kind::ALL.map(Kind::as_str).to_vec(),
            rows,
            description,
        }
    }
}

/// The top of a chart's scale: the smallest of 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 25, 30,
/// 40, 50, 60, 80, 100, 150, ... that is at least `n`.
fn nice_ceiling(n: usize) -> usize {
    let mut base = 1;
    loop {
        for tenths in [10, 15, 20, 25, 30, 40, 50, 60, 80] {
            let candidate = base * tenths / 10;
            if base * tenths % 10 == 0 && candidate >= n.max(1) {
                return candidate;
            }
        }
        base *= 10;
    }
}

/// Reclaimable seats by reason, without the empty ones. Reasons are kind names where
/// reconcile uses them: shown by title, in section order.
fn reclaimable_view(reclaimable: &BTreeMap<String, u64>) -> Vec<ReclaimView> {
    let mut parts: Vec<(usize, ReclaimView)> = reclaimable
        .iter()
        .filter(|(_, seats)| **seats > 0)
        .map(|(reason, seats)| {
            let kind = Kind::parse(reason);
            let view = ReclaimView {
                reason: kind.map_or_else(|| reason.clone(), |k| k.title().to_string()),
                seats: *seats,
            };
            (kind.map_or(Kind::ALL.len(), section_index), view)
        })
        .collect();
    parts.sort_by_key(|(order, _)| *order);
    parts.into_iter().map(|(_, view)| view).collect()
}

/// A leaver's finding that closed although the person kept access.
fn closed_without_deprovisioning(r: &Resolved) -> bool {
    matches!(
        r.account_now.as_deref(),
        Some("active") | Some(crate::reconcile::STILL_A_MEMBER)
    )
}

/// The account or person a finding is about, as a reviewer recognizes it.
fn who(f: &Finding) -> String {
    [&f.email, &f.docker_id, &f.account_id, &f.person_email]
        .into_iter()
        .flatten()
        .next()
        .cloned()
        .unwrap_or_else(|| f.key.clone())
}

impl ResolvedView {
    fn new(r: &Resolved) -> Self {
        let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        let deprovision = match (&r.days_to_deprovision, &r.deprovision_counted_from) {
            (Some(days), Some(from)) => format!(
                "{days} {} from the {from}; account {}",
                if *days == 1 { "day" } else { "days" },
                r.account_now.as_deref().unwrap_or("gone")
            ),
            _ => match r.account_now.as_deref() {
                Some(crate::reconcile::STILL_A_MEMBER) => "not deprovisioned: out of SCIM, but \
                    still a member of the organization (see not_provisioned)"
                    .to_string(),
                Some(now) => format!("account still {now}: the IdP record changed"),
                None => String::new(),
            },
        };
        ResolvedView {
            kind: r.kind.as_str(),
            who: r.finding.as_ref().map_or_else(|| r.key.clone(), who),
            first_seen: date(r.first_seen),
            resolved_on: date(r.resolved_on),
            days_open: r.days_open.map(|d| d.to_string()).unwrap_or_default(),
            deprovision,
        }
    }
}

impl RowView {
    fn new(input: &ReportInput, finding: &Finding) -> Self {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let row = CsvRow::new(input, finding);
        RowView {
            severity: finding.severity.as_str(),
            severity_rank: severity_rank(finding.severity),
            docker_id: text(&finding.docker_id),
            email: text(&finding.email),
            email_href: finding.email.as_deref().and_then(mailto_href),
            name: text(&finding.name),
            role: text(&finding.role),
            team: text(&finding.team),
            person_email: text(&finding.person_email),
            person_email_href: finding.person_email.as_deref().and_then(mailto_href),
            person_status: text(&finding.person_status),
            match_basis: finding.match_basis.clone(),
            reason: finding.reason.clone(),
            evidence: finding
                .evidence
                .iter()
                .map(|(key, value)| EvidenceItem {
                    key: key.clone(),
                    value: value.clone(),
                    href: safe_href(value),
                })
                .collect(),
            first_seen: row.first_seen.map(|d| d.to_string()).unwrap_or_default(),
            days_open: row.days_open.map(|d| d.to_string()).unwrap_or_default(),
            days_sort: row.days_open.unwrap_or(-1),
            status: match &finding.exception {
                Some(e) => format!("{}; {}", status_text(finding), exception_text(e)),
                None => status_text(finding).to_string(),
            },
        }
    }
}

/// The link target for a value, only for an absolute `https:` URL or a `mailto:` address;
/// every other value (`javascript:`, `data:`, `http:`, anything relative) is shown as
/// text and never becomes a link.
pub fn safe_href(value: &str) -> Option<String> {
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let lower = value.get(..8).map(str::to_ascii_lowercase);
    if lower.as_deref() == Some("https://") {
        let url = url::Url::parse(value).ok()?;
        return (url.scheme() == "https" && url.host().is_some()).then(|| url.to_string());
    }
    if value.get(..7).map(str::to_ascii_lowercase).as_deref() == Some("mailto:") {
        return mailto_href(&value[7..]);
    }
    None
}

/// `mailto:<address>` for a plain email address: one `@`, and nothing that could add
/// headers, a second recipient or another scheme (`?`, `&`, `,`, `:`, `/`, `%`, ...).
pub fn mailto_href(address: &str) -> Option<String> {
    let (local, domain) = address.split_once('@')?;
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || ".+-_'".contains(c));
    let domain_ok = domain.contains('.')
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || ".-".contains(c));
    (local_ok && domain_ok).then(|| format!("mailto:{address}"))
}

/// The second inline style block: the printed page header, whose text comes from the
/// run. It is pinned by its own hash like the others.
fn page_style(title_css: &str) -> String {
    format!("@page {{ @top-left {{ content: \"{title_css}\"; }} }}")
}

/// `text` as the inside of a double-quoted CSS string: every character but ASCII
/// letters, digits and spaces becomes a CSS escape (`\3c ` for `<`), so nothing in it can
/// end the string, the rule or the `<style>` element, and HTML escaping leaves it as is.
fn css_string_body(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == ' ' {
            out.push(c);
        } else {
            out.push_str(&format!("\\{:x} ", c as u32));
        }
    }
    out
}

/// A count as a reviewer reads it: the number, or `not evaluated` (never 0).
pub fn count_label(count: Option<usize>) -> String {
    count.map_or_else(|| "not evaluated".to_string(), |n| n.to_string())
}

/// What an `--accept-drop` name let through, for reviewers.
pub(crate) fn drop_label(name: &str) -> String {
    match name {
        "scim" => "The SCIM snapshot shrank against the last complete one".to_string(),
        "idp" => "The IdP export shrank against the last one".to_string(),
        other => format!("The `{other}` guard"),
    }
}

/// The Content-Security-Policy source for an inline block: `sha256-<base64>`.
fn csp_hash(block: &str) -> String {
    format!("sha256-{}", base64(&Sha256::digest(block.as_bytes())))
}

/// Standard base64 with padding (RFC 4648), for the CSP hashes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use chrono::TimeZone;

    use crate::reconcile::Counts;

    pub(crate) fn finding(kind: Kind, severity: Severity, email: &str, name: &str) -> Finding {
        Finding {
            kind,
            severity,
            key: format!("{}:{email}", kind.as_str()),
            account_id: Some(format!("id-{email}")),
            docker_id: Some(email.split('@').next().unwrap_or_default().to_string()),
            email: Some(email.to_string()),
            name: Some(name.to_string()),
            role: Some("member".to_string()),
            team: Some("platform".to_string()),
            person_email: Some(email.to_string()),
            person_status: Some("TERMINATED".to_string()),
            match_basis: "userName".to_string(),
            reason: "terminated in the IdP on 2026-11-02, SCIM account active".to_string(),
            evidence: BTreeMap::from([
                ("termination_date".to_string(), "2026-11-02".to_string()),
                ("active".to_string(), "true".to_string()),
            ]),
            exception: None,
            first_seen: None,
            days_open: None,
        }
    }

    /// A complete run with a fixed date and every kind but `idle_seat` evaluated.
    pub(crate) fn complete_input() -> ReportInput {
        let mut leaver = finding(
            Kind::TerminatedActive,
            Severity::Critical,
            "dana@acme.example",
            "Dana Smith",
        );
        leaver.role = Some("owner".to_string());
        let second = finding(
            Kind::TerminatedActive,
            Severity::High,
            "lee@acme.example",
            "Lee Park",
        );
        let mut shadow = finding(
            Kind::Shadow,
            Severity::High,
            "ci-bot@acme.example",
            "CI bot",
        );
        shadow.person_email = None;
        shadow.person_status = None;
        shadow.match_basis = "tried externalId, userName, emails, aliases".to_string();
        shadow.reason = "no person in the IdP export matches this account".to_string();
        shadow.evidence = BTreeMap::new();
        let mut owner = finding(Kind::Privileged, Severity::Info, "ops@acme.example", "Ops");
        owner.role = Some("owner".to_string());
        owner.person_status = Some("ACTIVE".to_string());
        owner.reason = "owner of the organization".to_string();

        let findings = vec![shadow, owner, second, leaver];
        let mut counts = Counts::new();
        for kind in Kind::ALL {
            let n = findings.iter().filter(|f| f.kind == kind).count();
            counts.insert(
                kind,
                if kind == Kind::IdleSeat {
                    None
                } else {
                    Some(n)
                },
            );
        }
        let seats = SeatSummary {
            in_use_note: None,
            purchased: Some(150),
            in_use: 130,
            reclaimable: BTreeMap::from([
                ("terminated_active".to_string(), 2),
                ("shadow".to_string(), 1),
                ("idle_seat".to_string(), 0),
            ]),
            reclaimable_total: 3,
            seat_price: Some(21.0),
            monthly_saving: Some(63.0),
            yearly_saving: Some(756.0),
        };

        ReportInput {
            organization: "acmerobotics".to_string(),
            run_id: 42,
            status: "complete".to_string(),
            reason: None,
            as_of: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            generated_at: Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 12).unwrap(),
            snapshot: Some(SnapshotInfo {
                id: 7,
                taken_at: Utc.with_ymd_and_hms(2026, 11, 30, 5, 59, 58).unwrap(),
                status: "complete".to_string(),
                accounts: 131,
                active_accounts: 130,
                total_results: Some(131),
                sha256: Some("5a".repeat(32)),
            }),
            idp: Some(InputFile {
                path: PathBuf::from("exports/okta-users.csv"),
                format: "okta".to_string(),
                sha256: "ab".repeat(32),
                rows: 120,
            }),
            activity: None,
            exceptions: None,
            hub: None,
            outcome: Some(Outcome {
                partial: Default::default(),
                findings,
                counts,
                seats,
                not_evaluated: BTreeMap::from([(
                    Kind::IdleSeat,
                    "no activity export configured (`activity.file`)".to_string(),
                )]),
                resolved: Vec::new(),
            }),
            accepted_drops: Vec::new(),
            version: "0.1.0".to_string(),
            trend: vec![
                trend_point(
                    40,
                    "2026-11-16",
                    &[(Kind::TerminatedActive, 4), (Kind::Shadow, 1)],
                ),
                trend_point(
                    41,
                    "2026-11-23",
                    &[(Kind::TerminatedActive, 3), (Kind::Shadow, 2)],
                ),
                trend_point(
                    42,
                    "2026-11-30",
                    &[(Kind::TerminatedActive, 2), (Kind::Shadow, 1)],
                ),
            ],
            first_seen: BTreeMap::from([
                (
                    "terminated_active:dana@acme.example".to_string(),
                    NaiveDate::from_ymd_opt(2026, 11, 16).unwrap(),
                ),
                (
                    "shadow:ci-bot@acme.example".to_string(),
                    NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
                ),
            ]),
            config: Some(ConfigEvidence::new(&Config::default())),
            previous_manifest: Some(ManifestLink {
                run_id: 41,
                sha256: "c3".repeat(32),
            }),
        }
    }

    /// A trend point where `counts` are the open findings, `privileged` is 1 and every
    /// other kind but `idle_seat` (never evaluated) is 0.
    pub(crate) fn trend_point(run_id: i64, as_of: &str, counts: &[(Kind, usize)]) -> TrendPoint {
        TrendPoint {
            run_id,
            partial: Vec::new(),
            as_of: Some(as_of.parse().unwrap()),
            counts: Kind::ALL
                .into_iter()
                .map(|kind| {
                    let n = counts.iter().find(|(k, _)| *k == kind).map(|(_, n)| *n);
                    let n = match kind {
                        Kind::IdleSeat => None,
                        Kind::Privileged => Some(n.unwrap_or(1)),
                        _ => Some(n.unwrap_or(0)),
                    };
                    (kind, n)
                })
                .collect(),
            resolved: 0,
        }
    }

    /// A run whose snapshot failed: no outcome.
    pub(crate) fn incomplete_input() -> ReportInput {
        let mut input = complete_input();
        input.status = "incomplete".to_string();
        input.reason = Some("SCIM returned 117 of 131 users (totalResults 131)".to_string());
        input.outcome = None;
        input.snapshot.as_mut().unwrap().status = "incomplete".to_string();
        input
    }

    fn read_json(path: &Path) -> serde_json::Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn hostile_values_render_inert_in_the_html_report() {
        let mut input = complete_input();
        let outcome = input.outcome.as_mut().unwrap();
        outcome.findings[0].name = Some("<script>alert(1)</script>".to_string());
        outcome.findings[0].email = Some("\"><img src=x onerror=alert(1)>".to_string());
        outcome.findings[0].docker_id = Some("javascript:alert(1)".to_string());
        outcome.findings[0]
            .evidence
            .insert("<b>k</b>".to_string(), "</td><td>".to_string());
        outcome.findings[0]
            .evidence
            .insert("profile".to_string(), "JavaScript:alert(2)".to_string());
        outcome.findings[0].evidence.insert(
            "source".to_string(),
            "https://scim.example/Users/1".to_string(),
        );
        outcome.findings[1].email = Some("javascript:alert(3)//@x.example".to_string());
        outcome.findings[1].person_email = Some("a@x.example?cc=b@y.example".to_string());
        input.organization = "<i>acme</i>\"; } </style><script>alert(4)</script>".to_string();

        let html = render_html(&input, 500).unwrap();

        assert!(!html.contains("<script>alert(1)</script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"));
        assert!(!html.contains("<img"));
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!html.contains("<b>k</b>") && !html.contains("<i>acme</i>"));
        assert!(html.contains("&lt;&#x2F;td&gt;&lt;td&gt;"));
        // `javascript:` stays text wherever it stands: no link is made of it.
        assert!(html.contains(">javascript:alert(1)</td>"));
        assert!(html.contains("JavaScript:alert(2)</li>"));
        assert!(html.contains(">javascript:alert(3)&#x2F;&#x2F;@x.example</td>"));
        assert!(html.contains(">a@x.example?cc=b@y.example</td>"));
        // Links only for https: and mailto:.
        let mut links = Vec::new();
        for tag in tags(&html) {
            for attribute in ["src=", "action=", " on", "style="] {
                assert!(!tag.contains(attribute), "{attribute} in the tag <{tag}>");
            }
            if let Some((_, href)) = tag.split_once("href=\"") {
                let href = href.split('"').next().unwrap();
                assert!(
                    href.starts_with("mailto:") || href.starts_with("https:"),
                    "link to {href} in <{tag}>"
                );
                links.push(href.to_string());
            }
        }
        assert!(links.contains(&"https:&#x2F;&#x2F;scim.example&#x2F;Users&#x2F;1".to_string()));
        assert!(
            links.contains(&"mailto:lee@acme.example".to_string()),
            "{links:?}"
        );
        // The organization reaches the printed page header only as CSS escapes.
        let page_style = html
            .split("<style>")
            .nth(2)
            .unwrap()
            .split("</style>")
            .next()
            .unwrap();
        assert!(
            page_style.starts_with("@page { @top-left { content: \""),
            "{page_style}"
        );
        assert_eq!(page_style.matches('"').count(), 2, "{page_style}");
        assert!(page_style.contains("\\3c i\\3e acme"), "{page_style}");
        // The only script block is the report's own.
        assert_eq!(html.matches("<script").count(), 1);
    }

    #[test]
    fn html_report_fetches_nothing_and_pins_its_inline_blocks_by_hash() {
        let html = render_html(&complete_input(), 500).unwrap();

        for needle in [
            "http://", "https://", "<link", "@import", "url(", "fetch(", "XMLHttp",
        ] {
            assert!(!html.contains(needle), "{needle} found in the report");
        }
        let style = between(&html, "<style>", "</style>");
        let script = between(&html, "<script>", "</script>");
        assert_eq!(style, REPORT_STYLE);
        assert_eq!(script, REPORT_SCRIPT);
        let page = html
            .split("<style>")
            .nth(2)
            .unwrap()
            .split("</style>")
            .next()
            .unwrap();
        assert_eq!(html.matches("<style>").count(), 2);
        // Tera escapes the `/` of base64 in the attribute; the browser reads it back.
        let attribute = |hash: String| hash.replace('/', "&#x2F;");
        assert!(html.contains(&format!(
            "style-src '{}' '{}'",
            attribute(csp_hash(style)),
            attribute(csp_hash(page))
        )));
        assert!(html.contains(&format!("script-src '{}'", attribute(csp_hash(script)))));
    }

    /// The inside of every tag of `html`. Escaped data holds no `<`, so every tag found
    /// is the template's own, and the inline style and script hold no `<` either.
    fn tags(html: &str) -> Vec<&str> {
        html.split('<')
            .skip(1)
            .map(|rest| rest.split('>').next().unwrap_or_default())
            .collect()
    }

    fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
        let from = text.find(start).unwrap() + start.len();
        let to = from + text[from..].find(end).unwrap();
        &text[from..to]
    }

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn formula_cells_get_a_leading_quote_and_plain_text_stays() {
        let table = [
            ("=SUM(A1)", "'=SUM(A1)"),
            ("+1 555 0100", "'+1 555 0100"),
            ("-1+2", "'-1+2"),
            ("-", "'-"),
            ("--2", "'--2"),
            ("-.5", "'-.5"),
            ("-2.", "'-2."),
            ("=1", "'=1"),
            // Plain numbers compute nothing and stay numbers.
            ("+1", "+1"),
            ("-2", "-2"),
            ("-12.50", "-12.50"),
            ("14", "14"),
            ("2026-11-16", "2026-11-16"),
            ("@x", "'@x"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("plain text", "plain text"),
            ("jean-luc", "jean-luc"),
            ("a=b", "a=b"),
            ("", ""),
        ];
        for (cell, expected) in table {
            assert_eq!(neutralize_formula(cell), expected, "{cell:?}");
        }
    }

    #[test]
    fn csv_files_have_stable_columns_and_neutralized_cells() {
        let mut input = complete_input();
        input.outcome.as_mut().unwrap().findings[0].name = Some("=HYPERLINK(\"x\")".to_string());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");

        let written = write(&out, &input, 500).unwrap();

        let mut reader = csv::Reader::from_path(out.join("findings.csv")).unwrap();
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            CSV_COLUMNS
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 4);
        // Report order: the section order of Kind::ALL, most severe first.
        let order: Vec<&str> = rows.iter().map(|r| &r[5]).collect();
        assert_eq!(
            order,
            [
                "dana@acme.example",
                "lee@acme.example",
                "ci-bot@acme.example",
                "ops@acme.example"
            ]
        );
        let shadow = &rows[2];
        assert_eq!(&shadow[6], "'=HYPERLINK(\"x\")");
        assert_eq!(&rows[0][13], "active=true; termination_date=2026-11-02");
        // First seen two weeks before the review date; no history for lee.
        assert_eq!((&rows[0][14], &rows[0][15]), ("2026-11-16", "14"));
        assert_eq!((&rows[1][14], &rows[1][15]), ("", ""));
        assert_eq!((&rows[0][16], &rows[0][17]), ("", ""));
        assert!(!fs::read(out.join("findings.csv")).unwrap().starts_with(BOM));

        // One CSV per evaluated kind, header only when it has no rows; none for idle_seat.
        let drift = fs::read_to_string(out.join("drift.csv")).unwrap();
        assert_eq!(drift.trim_end(), CSV_COLUMNS.join(","));
        assert!(!out.join("idle_seat.csv").exists());
        let leavers = csv::Reader::from_path(out.join("terminated_active.csv")).unwrap();
        assert_eq!(leavers.into_records().count(), 2);
        assert!(written.file("idle_seat.csv").is_none());
        assert!(written.file("terminated_active.csv").is_some());
    }

    // Regression: a leaver who vanished from the IdP export while the Docker account stayed
    // active was counted under `resolved`, which reads as access removed.
    #[test]
    fn a_leaver_closed_by_an_idp_change_is_not_counted_as_resolved() {
        let mut input = complete_input();
        let resolved = |key: &str, now: &str| crate::reconcile::Resolved {
            key: key.into(),
            kind: Kind::TerminatedActive,
            finding: None,
            first_seen: None,
            last_seen: None,
            resolved_on: None,
            days_open: None,
            days_to_deprovision: None,
            deprovision_counted_from: None,
            account_now: Some(now.into()),
        };
        input.outcome.as_mut().unwrap().resolved = vec![
            resolved("terminated_active:a", "deactivated"),
            resolved("terminated_active:b", "active"),
            resolved("terminated_active:c", "removed"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), &input, 500).unwrap();
        let summary = read_json(&written.file("summary.json").unwrap().path);
        assert_eq!(summary["resolved"], 2);
        assert_eq!(summary["closed_by_idp_change"], 1);
        // The report's heading counts them apart too: access was not removed for one.
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(
            html.contains(
                "Resolved since the previous run <span class=\"count\">(2; 1 closed without \
                 deprovisioning)</span>"
            ),
            "{}",
            html.lines()
                .find(|l| l.contains("heading-resolved"))
                .unwrap_or_default()
        );
    }

    #[test]
    fn summary_json_counts_every_kind_and_a_kind_not_evaluated_is_null_not_zero() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), &complete_input(), 500).unwrap();

        let summary = read_json(&written.file("summary.json").unwrap().path);
        assert_eq!(summary["schema_version"], 1);
        assert_eq!(summary["status"], "complete");
        assert!(summary["reason"].is_null());
        assert_eq!(summary["as_of"], "2026-11-30");
        assert_eq!(summary["generated_at"], "2026-11-30T06:00:12Z");
        assert_eq!(summary["snapshot"]["total_results"], 131);
        assert_eq!(summary["idp"]["sha256"], "ab".repeat(32));
        assert!(summary["activity"].is_null());
        let findings = summary["findings"].as_object().unwrap();
        assert_eq!(findings.len(), 9);
        assert_eq!(findings["terminated_active"], 2);
        assert_eq!(findings["drift"], 0);
        assert!(findings["idle_seat"].is_null());
        assert_eq!(
            summary["not_evaluated"]["idle_seat"],
            "no activity export configured (`activity.file`)"
        );
        assert_eq!(summary["not_evaluated"].as_object().unwrap().len(), 1);
        assert_eq!(summary["seats"]["reclaimable_total"], 3);

        let html = fs::read_to_string(&written.html).unwrap();
        assert!(html.contains("Not evaluated:</strong> no activity export configured"));
        assert!(html.contains(
            "<span class=\"number\">not evaluated</span>\n<span class=\"label\">Idle seats"
        ));
    }

    #[test]
    fn a_kind_missing_from_the_counts_is_not_evaluated() {
        let mut input = complete_input();
        input.outcome.as_mut().unwrap().counts.remove(&Kind::Drift);

        assert_eq!(input.count(Kind::Drift), None);
        assert_eq!(
            input.not_evaluated_reason(Kind::Drift).unwrap(),
            "no reason was recorded"
        );
    }

    #[test]
    fn incomplete_run_reports_every_kind_as_null_and_shows_the_banner() {
        let dir = tempfile::tempdir().unwrap();
        let input = incomplete_input();

        let written = write(dir.path(), &input, 500).unwrap();

        let summary = read_json(&dir.path().join("summary.json"));
        assert_eq!(summary["status"], "incomplete");
        assert_eq!(
            summary["reason"],
            "SCIM returned 117 of 131 users (totalResults 131)"
        );
        let findings = summary["findings"].as_object().unwrap();
        assert_eq!(findings.len(), 9);
        assert!(findings.values().all(serde_json::Value::is_null));
        assert_eq!(summary["not_evaluated"].as_object().unwrap().len(), 9);
        assert!(summary["seats"].is_null());

        let names: Vec<&str> = written.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["report.html", "summary.json", "manifest.json"]);

        let html = fs::read_to_string(&written.html).unwrap();
        assert!(html.contains("class=\"banner incomplete\" role=\"alert\""));
        assert!(html.contains("NOTHING was reconciled"));
        assert!(html.contains("SCIM returned 117 of 131 users (totalResults 131)"));
        assert!(!html.contains("Checked: no findings"));
        assert!(!html.contains("Review sign-off"));
        assert!(html.contains("Not shown: this run reconciled nothing"));
        assert!(!html.contains("<svg class=\"trend-chart\""));
        assert!(!html.contains("<svg class=\"seat-chart\""));
        assert_eq!(
            html.matches("<span class=\"number\">not evaluated</span>")
                .count(),
            9
        );
    }

    #[test]
    fn a_run_marked_incomplete_never_shows_the_outcome_it_carries() {
        let mut input = complete_input();
        input.status = "incomplete".to_string();

        assert_eq!(input.count(Kind::TerminatedActive), None);
        assert_eq!(
            input.failure_reason().unwrap(),
            "the run did not record why"
        );
        let html = render_html(&input, 500).unwrap();
        assert!(!html.contains("dana@acme.example"));
    }

    #[test]
    fn html_rows_caps_each_table_and_says_how_many_more_are_in_the_csv() {
        let html = render_html(&complete_input(), 1).unwrap();

        assert!(html.contains("dana@acme.example"));
        assert!(!html.contains("lee@acme.example"));
        assert!(html.contains(
            "1 more row is\nin <code>terminated_active.csv</code>: this page shows the first 1."
        ));
    }

    #[cfg(unix)]
    #[test]
    fn report_directory_is_0700_and_every_file_0600() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("reports").join("20261130T060012Z");

        let written = write(&out, &complete_input(), 500).unwrap();

        assert_eq!(mode(&out), 0o700);
        assert_eq!(mode(&dir.path().join("reports")), 0o700);
        assert_eq!(written.files.len(), 13);
        for file in &written.files {
            assert_eq!(mode(&file.path), 0o600, "{}", file.name);
        }
        let leftovers: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn manifest_lists_every_other_file_with_its_hash_and_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), &complete_input(), 500).unwrap();

        let manifest = read_json(&dir.path().join("manifest.json"));
        assert_eq!(manifest["tool"], "hubreview");
        assert_eq!(manifest["run_id"], 42);
        assert_eq!(manifest["snapshot_id"], 7);
        let files = manifest["files"].as_array().unwrap();
        assert_eq!(files.len(), written.files.len() - 1);
        for (entry, file) in files.iter().zip(&written.files) {
            let bytes = fs::read(&file.path).unwrap();
            assert_eq!(entry["name"], file.name.as_str());
            assert_eq!(entry["sha256"], sha256_hex(&bytes).as_str());
            assert_eq!(entry["bytes"], bytes.len());
        }
        assert_eq!(manifest["inputs"][0]["role"], "idp");
        assert_eq!(manifest["inputs"][0]["path"], "exports/okta-users.csv");
        assert_eq!(manifest["inputs"][0]["rows"], 120);
        assert_eq!(manifest["inputs"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn write_errors_name_the_path_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("reports");
        fs::write(&blocker, b"not a directory").unwrap();

        let error = write(&blocker.join("run"), &complete_input(), 500).unwrap_err();

        let message = error.to_string();
        assert!(message.starts_with("cannot create `"), "{message}");
        assert!(message.contains("reports/run`: "), "{message}");
    }

    #[test]
    fn render_errors_carry_the_whole_tera_chain() {
        let mut tera = Tera::default();
        tera.add_raw_template("broken.html", "{{ missing.field }}")
            .unwrap();

        let error = tera.render("broken.html", &Context::new()).unwrap_err();

        let chain = error_chain(&error);
        assert!(chain.contains("broken.html"), "{chain}");
        assert!(chain.contains("missing.field"), "{chain}");
    }

    #[test]
    fn findings_json_holds_every_finding_under_the_csv_column_names() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), &complete_input(), 500).unwrap();

        let json = read_json(&written.file("findings.json").unwrap().path);
        assert_eq!(json["schema_version"], SCHEMA_VERSION);
        assert_eq!(json["run_id"], 42);
        assert_eq!(json["status"], "complete");
        let findings = json["findings"].as_array().unwrap();
        assert_eq!(findings.len(), 4);
        // The CSV's columns but the reviewers' two, in the same order.
        let keys: Vec<&str> = findings[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected: Vec<&str> = CSV_COLUMNS
            .into_iter()
            .filter(|c| !matches!(*c, "decision" | "justification"))
            .collect();
        expected.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
        assert_eq!(findings[0]["email"], "dana@acme.example");
        assert_eq!(findings[0]["evidence"]["termination_date"], "2026-11-02");
        assert_eq!(findings[0]["first_seen"], "2026-11-16");
        assert_eq!(findings[0]["days_open"], 14);
        assert!(findings[1]["days_open"].is_null());
        // A shadow account has no person: null, not an empty string.
        assert!(findings[2]["person_email"].is_null());
        // Regression: accepted and open findings could not be told apart by a machine.
        assert_eq!(findings[0]["status"], "open");
        assert!(findings[0]["exception"].is_null());

        let mut input = complete_input();
        let key = input.outcome.as_ref().unwrap().findings[1].key.clone();
        input.outcome.as_mut().unwrap().findings[1].exception = Some(Acceptance {
            owner: "sec@acme.example".into(),
            reason: "break-glass admin".into(),
            expires: NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
            expired: false,
            source: "exceptions.toml entry 1".into(),
        });
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), &input, 500).unwrap();
        let json = read_json(&written.file("findings.json").unwrap().path);
        let accepted = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == key.as_str())
            .unwrap();
        assert_eq!(accepted["status"], "accepted");
        assert_eq!(accepted["exception"]["owner"], "sec@acme.example");
        assert_eq!(accepted["exception"]["expires"], "2027-01-31");
    }

    #[test]
    fn an_incomplete_run_writes_no_findings_json() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), &incomplete_input(), 500).unwrap();

        assert!(written.file("findings.json").is_none());
        assert!(!dir.path().join("findings.json").exists());
    }

    #[test]
    fn csv_bom_starts_every_csv_with_a_byte_order_mark_and_nothing_else_changes() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            csv_bom: true,
            ..Options::default()
        };
        let with = write_with(&dir.path().join("bom"), &complete_input(), &options).unwrap();
        let without = write(&dir.path().join("plain"), &complete_input(), 500).unwrap();

        let csvs: Vec<&WrittenFile> = with
            .files
            .iter()
            .filter(|f| f.name.ends_with(".csv"))
            .collect();
        assert_eq!(csvs.len(), 9);
        for file in csvs {
            let bytes = fs::read(&file.path).unwrap();
            let plain = fs::read(&without.file(&file.name).unwrap().path).unwrap();
            assert!(bytes.starts_with(BOM), "{}", file.name);
            assert_eq!(&bytes[3..], &plain[..], "{}", file.name);
        }
        for name in ["findings.json", "summary.json"] {
            let bytes = fs::read(&with.file(name).unwrap().path).unwrap();
            assert!(bytes.starts_with(b"{"), "{name}");
        }
    }

    #[test]
    fn manifest_records_the_snapshot_hash_the_config_and_the_previous_manifest() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &complete_input(), 500).unwrap();

        let manifest = read_json(&dir.path().join("manifest.json"));
        assert_eq!(manifest["schema_version"], SCHEMA_VERSION);
        assert_eq!(manifest["version"], "0.1.0");
        assert_eq!(manifest["status"], "complete");
        assert_eq!(manifest["as_of"], "2026-11-30");
        assert_eq!(manifest["snapshot_sha256"], "5a".repeat(32));
        assert_eq!(manifest["previous_manifest"]["run_id"], 41);
        assert_eq!(manifest["previous_manifest"]["sha256"], "c3".repeat(32));
        let config = &manifest["config"];
        assert_eq!(config["effective"]["report"]["html_rows"], 500);
        assert_eq!(
            config["sha256"],
            config_sha256(&config["effective"]).as_str(),
            "the hash is of the configuration the manifest shows"
        );
        let names: Vec<&str> = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"findings.json"), "{names:?}");
        assert!(!names.contains(&"manifest.json"));
    }

    #[test]
    fn config_evidence_keeps_credentials_in_a_url_out_and_hashes_what_it_shows() {
        let mut config = Config::default();
        config.scim.url = "https://user:hunter2@scim.example/v2/scim/2.0".to_string();

        let evidence = ConfigEvidence::new(&config);

        let text = evidence.effective.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("user:"), "{text}");
        assert_eq!(
            evidence.effective["scim"]["url"],
            "https://REDACTED@scim.example/v2/scim/2.0"
        );
        assert_eq!(evidence.sha256, config_sha256(&evidence.effective));
        let other = ConfigEvidence::new(&Config {
            review: crate::config::ReviewConfig {
                idle_days: 60,
                ..Default::default()
            },
            ..Config::default()
        });
        assert_ne!(other.sha256, ConfigEvidence::new(&Config::default()).sha256);
    }

    #[test]
    fn every_html_table_column_is_a_csv_column_in_the_same_order() {
        let positions: Vec<usize> = TABLE_COLUMNS
            .iter()
            .map(|c| CSV_COLUMNS.iter().position(|k| k == c).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        assert_eq!(CSV_COLUMNS.len(), COLUMNS.len());

        let html = render_html(&complete_input(), 500).unwrap();
        for column in COLUMNS {
            assert!(html.contains(&format!("<dt><code>{}</code></dt>", column.0)));
        }
        assert!(
            html.contains("<th scope=\"col\" class=\"col-person_email\">person_<wbr>email</th>")
        );
        // The cells of a row come in the order of the headers (the filter relies on it).
        let start = html.find("<td class=\"col-severity\"").unwrap();
        let row = between(&html[start..], "", "</tr>");
        let cells: Vec<&str> = row
            .split("data-column=\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap())
            .collect();
        assert_eq!(cells, TABLE_COLUMNS);
    }

    #[test]
    fn cards_break_open_findings_down_by_severity() {
        let html = render_html(&complete_input(), 500).unwrap();

        assert!(html.contains("<h3>Open findings: 4</h3>"));
        assert!(html.contains(
            "<span class=\"breakdown\"><span class=\"severity severity-critical\">1 critical</span>, \
             <span class=\"severity severity-high\">1 high</span></span>"
        ));
        let severity_line = between(&html, "By severity:", "</p>");
        assert!(severity_line.contains("1 critical"), "{severity_line}");
        assert!(severity_line.contains("2 high"), "{severity_line}");
        assert!(severity_line.contains("1 info"), "{severity_line}");
    }

    #[test]
    fn the_seat_chart_stacks_reclaimable_kept_and_unused_seats_over_the_full_width() {
        let seats = &complete_input().outcome.unwrap().seats;
        let chart = SeatChart::new(seats);

        let labels: Vec<(&str, u64)> = chart
            .segments
            .iter()
            .map(|s| (s.class.as_str(), s.seats))
            .collect();
        assert_eq!(
            labels,
            [
                ("series-0", 2),
                ("series-1", 1),
                ("seat-kept", 127),
                ("seat-unused", 20)
            ]
        );
        assert_eq!(chart.scale, 150);
        let last = chart.segments.last().unwrap();
        let end: f64 = last.x.parse::<f64>().unwrap() + last.width.parse::<f64>().unwrap();
        assert!((end - SeatChart::RIGHT).abs() < 0.2, "{end}");
        assert!(chart.purchased_x.is_none());
    }

    #[test]
    fn the_seat_chart_marks_where_purchased_seats_end_when_more_are_in_use() {
        let mut seats = complete_input().outcome.unwrap().seats;
        seats.purchased = Some(100);

        let chart = SeatChart::new(&seats);
        let view = SeatsView::new(&seats);

        assert_eq!(chart.scale, 130);
        assert!(chart.segments.iter().all(|s| s.class != "seat-unused"));
        let x: f64 = chart.purchased_x.unwrap().parse().unwrap();
        let expected = SeatChart::LEFT + 100.0 * (SeatChart::RIGHT - SeatChart::LEFT) / 130.0;
        assert!((x - expected).abs() < 0.1, "{x}");
        assert_eq!(view.over, Some(30));
        assert_eq!(view.unused, Some(0));
    }

    #[test]
    fn the_trend_breaks_a_line_where_a_run_did_not_evaluate_the_kind() {
        let mut input = complete_input();
        input.trend[1]
            .counts
            .iter_mut()
            .find(|(k, _)| *k == Kind::TerminatedActive)
            .unwrap()
            .1 = None;

        let trend = TrendView::new(&input);

        let leavers = trend
            .series
            .iter()
            .find(|s| s.kind == "terminated_active")
            .unwrap();
        assert_eq!(leavers.lines.len(), 2, "{:?}", leavers.lines);
        assert_eq!(leavers.dots.len(), 2);
        assert_eq!(leavers.latest, "2");
        assert_eq!(trend.rows[1].cells[0], "not evaluated");
        // Kinds at zero in every run are named, not drawn; never-evaluated ones neither.
        assert!(trend.zero_kinds.contains(&"drift"));
        assert!(!trend.zero_kinds.contains(&"idle_seat"));
        let drawn: Vec<&str> = trend.series.iter().map(|s| s.kind).collect();
        assert_eq!(drawn, ["terminated_active", "shadow", "privileged"]);
        // The largest count, 4, tops the scale, with a tick every 1.
        let ticks: Vec<&str> = trend.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(ticks, ["0", "1", "2", "3", "4"]);
    }

    #[test]
    fn a_report_with_no_trend_says_so_instead_of_drawing_an_empty_chart() {
        let mut input = complete_input();
        input.trend.clear();

        let html = render_html(&input, 500).unwrap();

        assert!(html.contains("No reconciled run yet: there is no trend to show."));
        assert!(!html.contains("class=\"trend-chart\""));
    }

    #[test]
    fn chart_scales_end_on_a_round_number() {
        let table = [
            (0, 1),
            (1, 1),
            (4, 4),
            (7, 8),
            (9, 10),
            (11, 15),
            (23, 25),
            (26, 30),
            (81, 100),
            (101, 150),
            (1234, 1500),
        ];
        for (n, top) in table {
            assert_eq!(nice_ceiling(n), top, "{n}");
        }
    }

    #[test]
    fn days_open_is_unknown_rather_than_negative() {
        let day = |d: &str| d.parse::<NaiveDate>().unwrap();
        assert_eq!(days_between(day("2026-11-16"), day("2026-11-30")), Some(14));
        assert_eq!(days_between(day("2026-11-30"), day("2026-11-30")), Some(0));
        assert_eq!(days_between(day("2026-12-01"), day("2026-11-30")), None);
    }

    #[test]
    fn only_https_and_mailto_values_become_links() {
        let table = [
            ("https://scim.example/x", Some("https://scim.example/x")),
            ("HTTPS://scim.example/x", Some("https://scim.example/x")),
            ("mailto:a@b.example", Some("mailto:a@b.example")),
            ("MAILTO:a@b.example", Some("mailto:a@b.example")),
            ("http://scim.example/x", None),
            ("javascript:alert(1)", None),
            ("JavaScript:alert(1)", None),
            (" javascript:alert(1)", None),
            ("java\tscript:alert(1)", None),
            ("data:text/html,<script>", None),
            ("//scim.example/x", None),
            ("https://", None),
            ("https:// x", None),
            ("mailto:a@b.example?cc=c@d.example", None),
            ("mailto:javascript:alert(1)@x.example", None),
            ("dana@acme.example", None),
        ];
        for (value, href) in table {
            assert_eq!(safe_href(value).as_deref(), href, "{value:?}");
        }
        assert_eq!(
            mailto_href("o'brien@acme.example").as_deref(),
            Some("mailto:o'brien@acme.example")
        );
        for address in [
            "a@b",
            "@b.example",
            "a@.example",
            "a b@c.example",
            "a@b.example,c@d.example",
        ] {
            assert_eq!(mailto_href(address), None, "{address}");
        }
    }

    #[test]
    fn css_strings_escape_everything_but_letters_digits_and_spaces() {
        assert_eq!(css_string_body("Acme 42"), "Acme 42");
        assert_eq!(css_string_body("a\"b"), "a\\22 b");
        assert_eq!(css_string_body("</style>"), "\\3c \\2f style\\3e ");
        assert_eq!(css_string_body("Zoë"), "Zo\\eb ");
        assert_eq!(css_string_body("a\\b"), "a\\5c b");
        assert_eq!(css_string_body("\n"), "\\a ");
    }

    #[test]
    fn html_report_matches_its_snapshot() {
        insta::assert_snapshot!(render_html(&complete_input(), 500).unwrap());
    }

    #[test]
    fn incomplete_html_report_matches_its_snapshot() {
        insta::assert_snapshot!(render_html(&incomplete_input(), 500).unwrap());
    }
}
