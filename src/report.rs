//! The report step: renders one run into `report.html`, `findings.csv`, one CSV per
//! finding kind, `summary.json` and `manifest.json`, in a directory of its own.
//!
//! Every value that came from SCIM, Hub or the IdP is data: autoescaped in HTML (the
//! templates are named `*.html`), neutralized against formulas in CSV.

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

use crate::exceptions::Acceptance;
use crate::reconcile::{Finding, Kind, Outcome, Resolved, SeatSummary, Severity};

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
    /// `None` when the run did not reconcile.
    pub outcome: Option<Outcome>,
    /// Guards this run was let through (`scim`, `idp`), from `--accept-drop`.
    pub accepted_drops: Vec<String>,
    pub version: String,
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
}

/// An input file, identified by name and content hash.
#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: String,
    pub sha256: String,
    pub rows: u64,
}

/// The version of the `summary.json` and `manifest.json` layouts.
pub const SCHEMA_VERSION: u32 = 1;

/// The columns of `findings.csv` and of every `<kind>.csv`, named like the JSON keys.
/// `decision` and `justification` are left empty for the reviewers to fill in.
/// `status`, `first_seen`, `days_open` and `exception` come after them: the finding's
/// state (`open`, `accepted`, `open (exception expired)`) and history.
pub const CSV_COLUMNS: [&str; 20] = [
    "kind",
    "severity",
    "key",
    "account_id",
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
    "decision",
    "justification",
    "status",
    "first_seen",
    "days_open",
    "exception",
];

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

    /// Findings of `kind` accepted by an exception in force (shown, not counted).
    pub fn accepted(&self, kind: Kind) -> usize {
        self.outcome().map_or(0, |o| {
            o.findings
                .iter()
                .filter(|f| f.kind == kind && f.is_accepted())
                .count()
        })
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

/// Writes the report of one run into `dir`: `report.html`, `findings.csv` and one
/// `<kind>.csv` per evaluated kind (complete runs only: an incomplete run has no rows
/// that could pass for an empty review), `summary.json` and `manifest.json`.
///
/// `dir` and missing parents are created with mode 0700, each file with mode 0600 through
/// a temporary file and a rename, so a reader never sees half a file.
pub fn write(dir: &Path, input: &ReportInput, html_rows: usize) -> Result<Written, ReportError> {
    create_private_dir(dir).map_err(|e| ReportError::CreateDir {
        path: dir.to_path_buf(),
        cause: error_chain(&e),
    })?;
    let mut files = Vec::new();

    let html = render_html(input, html_rows).map_err(|cause| ReportError::Render {
        path: dir.join("report.html"),
        cause,
    })?;
    files.push(write_file(dir, "report.html", html.as_bytes())?);

    if let Some(outcome) = input.outcome() {
        let findings = ordered_findings(outcome);
        let all = csv_bytes(&findings).map_err(|cause| csv_error(dir, "findings.csv", cause))?;
        files.push(write_file(dir, "findings.csv", &all)?);

        for kind in Kind::ALL {
            if input.count(kind).is_none() {
                continue;
            }
            let name = format!("{}.csv", kind.as_str());
            let rows: Vec<&Finding> = findings
                .iter()
                .copied()
                .filter(|f| f.kind == kind)
                .collect();
            let bytes = csv_bytes(&rows).map_err(|cause| csv_error(dir, &name, cause))?;
            files.push(write_file(dir, &name, &bytes)?);
        }
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
pub(crate) fn render_html(input: &ReportInput, html_rows: usize) -> Result<String, String> {
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
/// a carriage return would be read as a formula, so it gets a leading `'`.
pub fn neutralize_formula(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

fn csv_bytes(findings: &[&Finding]) -> Result<Vec<u8>, String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(CSV_COLUMNS)
        .map_err(|e| error_chain(&e))?;
    for finding in findings {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let record = [
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
            String::new(),
            String::new(),
            status_text(finding).to_string(),
            finding
                .first_seen
                .map(|d| d.to_string())
                .unwrap_or_default(),
            finding.days_open.map(|d| d.to_string()).unwrap_or_default(),
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
    /// Every kind, `null` when not evaluated.
    findings: ByKind<Option<usize>>,
    /// Exactly the kinds that are `null` in `findings`, with the reason.
    not_evaluated: ByKind<String>,
    seats: Option<&'a SeatSummary>,
    /// Findings accepted by an exception in force, per evaluated kind; not in `findings`.
    accepted: ByKind<usize>,
    /// Findings whose exception has expired; they count as open.
    expired_exceptions: usize,
    /// Findings open in an earlier run that this run found resolved.
    resolved: usize,
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
            idp: input.idp.as_ref().map(InputJson::new),
            activity: input.activity.as_ref().map(InputJson::new),
            findings: ByKind(Kind::ALL.map(|kind| (kind, input.count(kind))).to_vec()),
            not_evaluated: ByKind(
                Kind::ALL
                    .into_iter()
                    .filter_map(|kind| input.not_evaluated_reason(kind).map(|r| (kind, r)))
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
            resolved: input.outcome().map_or(0, |o| o.resolved.len()),
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

/// `manifest.json`: the evidence of what produced the report and what it holds.
#[derive(Serialize)]
struct Manifest<'a> {
    schema_version: u32,
    tool: &'static str,
    version: &'a str,
    run_id: i64,
    files: Vec<ManifestFile<'a>>,
    inputs: Vec<ManifestInput<'a>>,
    snapshot_id: Option<i64>,
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
        }
    }
}

/// What `report.html` is rendered from: every value already in the form shown, so the
/// template only places text (which tera escapes).
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
    idp: Option<InputView>,
    activity: Option<InputView>,
    accepted_drops: Vec<DropView>,
    cards: Vec<CardView>,
    seats: Option<SeatsView>,
    sections: Vec<SectionView>,
    /// Findings whose exception expired: they count as open again.
    expired: Vec<ExpiredView>,
    resolved: Vec<ResolvedView>,
    style_hash: String,
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
struct CardView {
    kind: &'static str,
    title: &'static str,
    count_label: String,
    /// A CSS class from a fixed set: `open`, `clear` or `not-evaluated`.
    state: &'static str,
}

#[derive(Serialize)]
struct SeatsView {
    purchased: String,
    in_use: u64,
    reclaimable_total: u64,
    reclaimable: Vec<ReclaimView>,
    seat_price: Option<String>,
    monthly_saving: Option<String>,
    yearly_saving: Option<String>,
}

#[derive(Serialize)]
struct ReclaimView {
    reason: String,
    seats: u64,
}

#[derive(Serialize)]
struct SectionView {
    kind: &'static str,
    title: &'static str,
    action: &'static str,
    evaluated: bool,
    count_label: String,
    not_evaluated: Option<String>,
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
    email: String,
    docker_id: String,
    name: String,
    role: String,
    team: String,
    person_email: String,
    person_status: String,
    match_basis: String,
    reason: String,
    evidence: Vec<EvidenceView>,
    /// `open`, `accepted` or `open (exception expired)`, with history and the exception.
    status: String,
}

#[derive(Serialize)]
struct EvidenceView {
    key: String,
    value: String,
}

impl HtmlView {
    fn new(input: &ReportInput, html_rows: usize) -> Self {
        let complete = input.is_complete();
        let findings = input.outcome().map(ordered_findings).unwrap_or_default();

        let cards = Kind::ALL
            .into_iter()
            .map(|kind| {
                let count = input.count(kind);
                CardView {
                    kind: kind.as_str(),
                    title: kind.title(),
                    count_label: count_label(count),
                    state: match count {
                        None => "not-evaluated",
                        Some(0) => "clear",
                        Some(_) => "open",
                    },
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
                    count_label: count_label(count),
                    not_evaluated: input.not_evaluated_reason(kind),
                    csv: format!("{}.csv", kind.as_str()),
                    accepted: rows.iter().filter(|f| f.is_accepted()).count(),
                    total: rows.len(),
                    shown,
                    more: rows.len() - shown,
                    rows: rows.iter().take(shown).map(|f| RowView::new(f)).collect(),
                }
            })
            .collect();

        HtmlView {
            organization: input.organization.clone(),
            as_of: input.as_of.format("%Y-%m-%d").to_string(),
            run_id: input.run_id,
            generated_at: display_time(&input.generated_at),
            version: input.version.clone(),
            complete,
            status_label: if complete {
                "complete".to_string()
            } else {
                "incomplete: nothing was reconciled".to_string()
            },
            reason: input.failure_reason().unwrap_or_default(),
            snapshot: input.snapshot.as_ref().map(|snapshot| SnapshotView {
                id: snapshot.id,
                taken_at: display_time(&snapshot.taken_at),
                status: snapshot.status.clone(),
                accounts: snapshot.accounts,
                active_accounts: snapshot.active_accounts,
                total_results_label: snapshot.total_results.map(|n| n.to_string()),
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
            cards,
            seats: input
                .outcome()
                .map(|outcome| SeatsView::new(&outcome.seats)),
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
            reclaimable_total: seats.reclaimable_total,
            reclaimable: reclaimable_view(&seats.reclaimable),
            seat_price: seats.seat_price.map(money),
            monthly_saving: seats.monthly_saving.map(money),
            yearly_saving: seats.yearly_saving.map(money),
        }
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
                "{days} days from the {from}; account {}",
                r.account_now.as_deref().unwrap_or("gone")
            ),
            _ => match r.account_now.as_deref() {
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
    fn new(finding: &Finding) -> Self {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        RowView {
            severity: finding.severity.as_str(),
            severity_rank: severity_rank(finding.severity),
            email: text(&finding.email),
            docker_id: text(&finding.docker_id),
            name: text(&finding.name),
            role: text(&finding.role),
            team: text(&finding.team),
            person_email: text(&finding.person_email),
            person_status: text(&finding.person_status),
            match_basis: finding.match_basis.clone(),
            reason: finding.reason.clone(),
            evidence: finding
                .evidence
                .iter()
                .map(|(key, value)| EvidenceView {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            status: {
                let mut text = status_text(finding).to_string();
                if let (Some(days), Some(since)) = (finding.days_open, finding.first_seen) {
                    text.push_str(&format!(", {days} days (since {since})"));
                }
                if let Some(e) = &finding.exception {
                    text.push_str(&format!("; {}", exception_text(e)));
                }
                text
            },
        }
    }
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
            }),
            idp: Some(InputFile {
                path: PathBuf::from("exports/okta-users.csv"),
                format: "okta".to_string(),
                sha256: "ab".repeat(32),
                rows: 120,
            }),
            activity: None,
            exceptions: None,
            outcome: Some(Outcome {
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
        input.organization = "<i>acme</i>".to_string();

        let html = render_html(&input, 500).unwrap();

        assert!(!html.contains("<script>alert(1)</script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"));
        assert!(!html.contains("<img"));
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!html.contains("<b>k</b>") && !html.contains("<i>acme</i>"));
        assert!(html.contains("&lt;&#x2F;td&gt;&lt;td&gt;"));
        // `javascript:` is plain text here; it could only act inside a link or a source,
        // and the report has none.
        assert!(html.contains("<td>javascript:alert(1)</td>"));
        for tag in tags(&html) {
            for attribute in ["href=", "src=", "action=", " on"] {
                assert!(!tag.contains(attribute), "{attribute} in the tag <{tag}>");
            }
        }
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
        // Tera escapes the `/` of base64 in the attribute; the browser reads it back.
        let attribute = |hash: String| hash.replace('/', "&#x2F;");
        assert!(html.contains(&format!("style-src '{}'", attribute(csp_hash(style)))));
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
            ("+1", "'+1"),
            ("-2", "'-2"),
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
        assert_eq!((&rows[0][14], &rows[0][15]), ("", ""));

        // One CSV per evaluated kind, header only when it has no rows; none for idle_seat.
        let drift = fs::read_to_string(out.join("drift.csv")).unwrap();
        assert_eq!(drift.trim_end(), CSV_COLUMNS.join(","));
        assert!(!out.join("idle_seat.csv").exists());
        let leavers = csv::Reader::from_path(out.join("terminated_active.csv")).unwrap();
        assert_eq!(leavers.into_records().count(), 2);
        assert!(written.file("idle_seat.csv").is_none());
        assert!(written.file("terminated_active.csv").is_some());
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
        assert_eq!(written.files.len(), 12);
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
    fn html_report_matches_its_snapshot() {
        insta::assert_snapshot!(render_html(&complete_input(), 500).unwrap());
    }

    #[test]
    fn incomplete_html_report_matches_its_snapshot() {
        insta::assert_snapshot!(render_html(&incomplete_input(), 500).unwrap());
    }
}
