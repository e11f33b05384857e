//! The exceptions file (`review.exceptions`): findings that reviewers accepted, such as
//! service accounts and break-glass admins, each with an owner, a reason and an expiry
//! date.
//!
//! The file is TOML (`[[exception]]` tables) or CSV (a header row naming the same fields),
//! told apart by its extension. An exception names a finding by its stable key, or by its
//! kind and the account (SCIM id, Docker ID or email). An accepted finding stays in the
//! report, marked accepted, and is not counted; an exception past its expiry date stops
//! applying, and the finding says so.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::reconcile::{Finding, Kind, normalize};

/// One accepted finding, as the file states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    /// Where it was written: `entry 3` (TOML) or `row 4` (CSV).
    pub source: String,
    /// The finding's stable key, when the exception names one.
    pub key: Option<String>,
    /// The kind, when the exception names a kind and an account.
    pub kind: Option<Kind>,
    /// The account as written: a SCIM id, a Docker ID or an email.
    pub account: Option<String>,
    pub owner: String,
    pub reason: String,
    /// The last day the exception applies.
    pub expires: NaiveDate,
}

/// What an exception says about the finding it matched, kept with the finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    pub owner: String,
    pub reason: String,
    pub expires: NaiveDate,
    /// Past its expiry date on the review date: the exception no longer applies.
    pub expired: bool,
    /// The exceptions file and the entry or row that matched.
    pub source: String,
}

/// A read exceptions file.
#[derive(Debug, Clone)]
pub struct ExceptionFile {
    pub path: PathBuf,
    pub sha256: String,
    pub exceptions: Vec<Exception>,
}

#[derive(Debug, Error)]
pub enum ExceptionsError {
    #[error("cannot read exceptions file `{path}`: {cause}; check `review.exceptions`")]
    Io {
        path: String,
        #[source]
        cause: std::io::Error,
    },
    #[error(
        "exceptions file `{path}` has no known format: name it `*.toml` or `*.csv` \
         (`review.exceptions`)"
    )]
    UnknownFormat { path: String },
    #[error("exceptions file `{path}` is not valid TOML: {what}")]
    Toml { path: String, what: String },
    #[error("exceptions file `{path}` is not valid CSV: {what}")]
    Csv { path: String, what: String },
    #[error("exceptions file `{path}`:\n  - {}", .problems.join("\n  - "))]
    Invalid { path: String, problems: Vec<String> },
}

/// The fields an exception can have; CSV headers and TOML keys alike.
const FIELDS: [&str; 6] = ["key", "kind", "account", "owner", "reason", "expires"];

/// Reads and validates the exceptions file, reporting every bad entry at once.
pub fn read(path: &Path) -> Result<ExceptionFile, ExceptionsError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|cause| ExceptionsError::Io {
        path: shown.clone(),
        cause,
    })?;
    let sha256 = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let text = String::from_utf8(bytes).map_err(|e| ExceptionsError::Csv {
        path: shown.clone(),
        what: format!(
            "not UTF-8 at byte offset {}; save it as UTF-8",
            e.utf8_error().valid_up_to()
        ),
    })?;
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let raw = match extension.as_deref() {
        Some("toml") => raw_from_toml(&shown, &text)?,
        Some("csv") => raw_from_csv(&shown, &text)?,
        _ => return Err(ExceptionsError::UnknownFormat { path: shown }),
    };
    let exceptions = validate(&shown, raw)?;
    Ok(ExceptionFile {
        path: path.to_path_buf(),
        sha256,
        exceptions,
    })
}

/// An entry before validation: where it is, and its fields as text.
struct RawEntry {
    source: String,
    fields: Vec<(String, String)>,
    problems: Vec<String>,
}

fn raw_from_toml(path: &str, text: &str) -> Result<Vec<RawEntry>, ExceptionsError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ExceptionsError::Toml {
        path: path.into(),
        what: e.message().to_owned(),
    })?;
    let mut problems = Vec::new();
    for key in table.keys().filter(|k| *k != "exception") {
        problems.push(format!(
            "unknown top-level key `{key}`: write each exception as an `[[exception]]` table"
        ));
    }
    let entries = match table.get("exception") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items.clone(),
        Some(_) => {
            problems.push("`exception` must be a list of `[[exception]]` tables".into());
            Vec::new()
        }
    };
    if !problems.is_empty() {
        return Err(ExceptionsError::Invalid {
            path: path.into(),
            problems,
        });
    }
    Ok(entries
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let source = format!("entry {}", i + 1);
            let mut entry = RawEntry {
                source: source.clone(),
                fields: Vec::new(),
                problems: Vec::new(),
            };
            let Some(item) = item.as_table() else {
                entry
                    .problems
                    .push(format!("{source}: must be an `[[exception]]` table"));
                return entry;
            };
            for (name, value) in item {
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Datetime(d) => d.to_string(),
                    other => {
                        entry.problems.push(format!(
                            "{source}: `{name}` must be text, found {}",
                            other.type_str()
                        ));
                        continue;
                    }
                };
                entry.fields.push((name.clone(), text));
            }
            entry
        })
        .collect())
}

fn raw_from_csv(path: &str, text: &str) -> Result<Vec<RawEntry>, ExceptionsError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ExceptionsError::Csv {
            path: path.into(),
            what: e.to_string(),
        })?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let unknown: Vec<&String> = headers
        .iter()
        .filter(|h| !FIELDS.contains(&h.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(ExceptionsError::Invalid {
            path: path.into(),
            problems: vec![format!(
                "row 1: unknown column(s) {}; the columns are {}",
                unknown
                    .iter()
                    .map(|h| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                FIELDS.join(", ")
            )],
        });
    }
    let mut entries = Vec::new();
    for (i, record) in reader.records().enumerate() {
        // The header is row 1.
        let row = i + 2;
        let record = record.map_err(|e| ExceptionsError::Csv {
            path: path.into(),
            what: format!("row {row}: {e}"),
        })?;
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        entries.push(RawEntry {
            source: format!("row {row}"),
            fields: headers
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_owned))
                .collect(),
            problems: Vec::new(),
        });
    }
    Ok(entries)
}

fn validate(path: &str, raw: Vec<RawEntry>) -> Result<Vec<Exception>, ExceptionsError> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for mut entry in raw {
        let source = entry.source.clone();
        let get = |name: &str| -> Option<String> {
            entry
                .fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let key = get("key");
        let kind_text = get("kind");
        let account = get("account");
        let owner = get("owner");
        let reason = get("reason");
        let expires_text = get("expires");
        for (name, _) in &entry.fields {
            if !FIELDS.contains(&name.as_str()) {
                entry.problems.push(format!(
                    "{source}: unknown field `{name}`; the fields are {}",
                    FIELDS.join(", ")
                ));
            }
        }

        let kind = match &kind_text {
            Some(text) => match Kind::parse(&text.to_ascii_lowercase()) {
                Some(k) => Some(k),
                None => {
                    entry.problems.push(format!(
                        "{source}: `kind` = `{text}` is not a finding kind; use one of {}",
                        Kind::ALL.map(Kind::as_str).join(", ")
                    ));
                    None
                }
            },
            None => None,
        };
        match (&key, &kind_text, &account) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            (Some(_), _, _) => entry.problems.push(format!(
                "{source}: give either `key`, or `kind` and `account`, not both"
            )),
            (None, _, _) => entry.problems.push(format!(
                "{source}: names no finding; set `key` (as in findings.csv), or `kind` and \
                 `account` (a SCIM id, Docker ID or email)"
            )),
        }
        if let Some(key) = &key {
            let prefix = key.split(':').next().unwrap_or_default();
            if Kind::parse(prefix).is_none() {
                entry.problems.push(format!(
                    "{source}: `key` = `{key}` does not start with a finding kind; copy the \
                     key column of findings.csv"
                ));
            }
        }
        if owner.is_none() {
            entry.problems.push(format!(
                "{source}: `owner` is missing; name who answers for the exception"
            ));
        }
        if reason.is_none() {
            entry.problems.push(format!(
                "{source}: `reason` is missing; say why the finding is accepted"
            ));
        }
        let expires = match &expires_text {
            None => {
                entry.problems.push(format!(
                    "{source}: `expires` is missing; every exception needs an end date \
                     (YYYY-MM-DD)"
                ));
                None
            }
            Some(text) => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                Ok(d) => Some(d),
                Err(_) => {
                    entry.problems.push(format!(
                        "{source}: `expires` = `{text}` is not a date; write YYYY-MM-DD"
                    ));
                    None
                }
            },
        };
        if !entry.problems.is_empty() {
            problems.append(&mut entry.problems);
            continue;
        }
        if let (Some(owner), Some(reason), Some(expires)) = (owner, reason, expires) {
            out.push(Exception {
                source,
                key,
                kind,
                account,
                owner,
                reason,
                expires,
            });
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ExceptionsError::Invalid {
            path: path.into(),
            problems,
        })
    }
}

impl Exception {
    /// Whether this exception names `finding`: by its key, or by its kind and one of its
    /// account's identifiers (SCIM id, Docker ID, email), compared as match keys are.
    pub fn matches(&self, finding: &Finding) -> bool {
        if let Some(key) = &self.key {
            return *key == finding.key;
        }
        if self.kind != Some(finding.kind) {
            return false;
        }
        let Some(wanted) = self.account.as_deref().and_then(normalize) else {
            return false;
        };
        [&finding.account_id, &finding.docker_id, &finding.email]
            .into_iter()
            .filter_map(|v| v.as_deref().and_then(normalize))
            .any(|v| v == wanted)
    }

    /// Whether the exception still applies on `as_of` (its expiry day included).
    pub fn applies_on(&self, as_of: NaiveDate) -> bool {
        as_of <= self.expires
    }
}

/// Marks every finding an exception names. Among several exceptions for one finding, one
/// that still applies wins over an expired one, then the later expiry.
pub fn apply(findings: &mut [Finding], file: &ExceptionFile, as_of: NaiveDate) {
    if file.exceptions.is_empty() {
        return;
    }
    let name = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.path.display().to_string());
    for finding in findings.iter_mut() {
        let best = file
            .exceptions
            .iter()
            .filter(|e| e.matches(finding))
            .max_by_key(|e| (e.applies_on(as_of), e.expires));
        if let Some(e) = best {
            finding.exception = Some(Acceptance {
                owner: e.owner.clone(),
                reason: e.reason.clone(),
                expires: e.expires,
                expired: !e.applies_on(as_of),
                source: format!("{name} {}", e.source),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::Severity;
    use std::collections::BTreeMap;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn finding(kind: Kind, id: &str, email: &str) -> Finding {
        Finding {
            kind,
            severity: Severity::High,
            key: format!("{kind}:{id}"),
            account_id: Some(id.into()),
            docker_id: Some(format!("docker{id}")),
            email: Some(email.into()),
            name: None,
            role: None,
            team: None,
            person_email: None,
            person_status: None,
            match_basis: String::new(),
            reason: String::new(),
            evidence: BTreeMap::new(),
            exception: None,
            first_seen: None,
            days_open: None,
        }
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn a_toml_file_names_findings_by_key_or_by_kind_and_account() {
        let (_d, path) = write(
            "exceptions.toml",
            r#"
[[exception]]
key = "shadow:svc-1"
owner = "platform@acme.example"
reason = "CI service account"
expires = 2027-03-31

[[exception]]
kind = "privileged"
account = "Break.Glass@Acme.example"
owner = "security@acme.example"
reason = "break-glass admin, sealed"
expires = "2026-12-31"
"#,
        );
        let file = read(&path).unwrap();
        assert_eq!(file.exceptions.len(), 2);
        assert_eq!(file.exceptions[0].expires, day("2027-03-31"));
        assert_eq!(file.sha256.len(), 64);

        let mut findings = vec![
            finding(Kind::Shadow, "svc-1", "ci@acme.example"),
            finding(Kind::Privileged, "bg", "break.glass@acme.example"),
            finding(Kind::Shadow, "bg", "break.glass@acme.example"),
        ];
        apply(&mut findings, &file, day("2026-11-30"));
        assert!(findings[0].is_accepted());
        assert!(findings[1].is_accepted());
        assert_eq!(
            findings[1].exception.as_ref().unwrap().source,
            "exceptions.toml entry 2"
        );
        assert!(
            findings[2].exception.is_none(),
            "the kind must match as well as the account"
        );
    }

    #[test]
    fn a_csv_file_is_read_by_its_header() {
        let (_d, path) = write(
            "exceptions.csv",
            "kind,account,owner,reason,expires\n\
             shadow,dockerci,platform@acme.example,\"CI bot, owned by platform\",2027-01-31\n",
        );
        let file = read(&path).unwrap();
        let mut findings = vec![finding(Kind::Shadow, "ci", "ci@acme.example")];
        apply(&mut findings, &file, day("2026-11-30"));
        let acceptance = findings[0].exception.as_ref().unwrap();
        assert_eq!(acceptance.reason, "CI bot, owned by platform");
        assert_eq!(acceptance.source, "exceptions.csv row 2");
        assert!(!acceptance.expired);
    }

    #[test]
    fn an_exception_applies_through_its_expiry_day_and_not_after() {
        let (_d, path) = write(
            "x.csv",
            "key,owner,reason,expires\nshadow:a,o,r,2026-11-30\n",
        );
        let file = read(&path).unwrap();
        for (as_of, accepted) in [("2026-11-30", true), ("2026-12-01", false)] {
            let mut findings = vec![finding(Kind::Shadow, "a", "a@x.example")];
            apply(&mut findings, &file, day(as_of));
            let acceptance = findings[0].exception.as_ref().unwrap();
            assert_eq!(findings[0].is_accepted(), accepted, "{as_of}");
            assert_eq!(acceptance.expired, !accepted, "{as_of}");
        }
    }

    #[test]
    fn an_exception_still_in_force_wins_over_an_expired_one_for_the_same_finding() {
        let (_d, path) = write(
            "x.csv",
            "key,owner,reason,expires\nshadow:a,old,r,2025-01-01\nshadow:a,new,r,2027-01-01\n",
        );
        let file = read(&path).unwrap();
        let mut findings = vec![finding(Kind::Shadow, "a", "a@x.example")];
        apply(&mut findings, &file, day("2026-11-30"));
        assert_eq!(findings[0].exception.as_ref().unwrap().owner, "new");
        assert!(findings[0].is_accepted());
    }

    #[test]
    fn every_bad_entry_is_reported_with_its_row_field_and_a_hint() {
        let (_d, path) = write(
            "x.csv",
            "key,kind,account,owner,reason,expires\n\
             ,shadow,a,,r,2027-01-01\n\
             shadow:a,,,o,,31/12/2026\n\
             ,shadw,a,o,r,2027-01-01\n\
             nokind:a,,,o,r,2027-01-01\n\
             ,,,o,r,2027-01-01\n",
        );
        let err = read(&path).unwrap_err().to_string();
        for needle in [
            "row 2: `owner` is missing",
            "row 3: `reason` is missing",
            "row 3: `expires` = `31/12/2026` is not a date; write YYYY-MM-DD",
            "row 4: `kind` = `shadw` is not a finding kind",
            "row 5: `key` = `nokind:a` does not start with a finding kind",
            "row 6: names no finding",
        ] {
            assert!(err.contains(needle), "`{needle}` missing from: {err}");
        }
        assert!(err.contains("x.csv"), "{err}");
    }

    #[test]
    fn an_unknown_column_or_field_or_extension_is_refused_with_what_is_known() {
        let (_d, path) = write("x.csv", "key,owner,why,expires\n");
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("unknown column(s) `why`"), "{err}");
        assert!(
            err.contains("key, kind, account, owner, reason, expires"),
            "{err}"
        );

        let (_d, path) = write(
            "x.toml",
            "[[exception]]\nkey = \"shadow:a\"\nowner = \"o\"\nreason = \"r\"\n\
             expires = 2027-01-01\nticket = 7\n",
        );
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("entry 1: `ticket` must be text"), "{err}");

        let (_d, path) = write("x.yaml", "");
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("`*.toml` or `*.csv`"), "{err}");
    }

    #[test]
    fn key_together_with_kind_and_account_is_ambiguous() {
        let (_d, path) = write(
            "x.csv",
            "key,kind,account,owner,reason,expires\nshadow:a,shadow,a,o,r,2027-01-01\n",
        );
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("row 2: give either `key`"), "{err}");
    }

    #[test]
    fn a_missing_file_names_the_path_and_the_config_key() {
        let err = read(Path::new("/nonexistent/exceptions.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/exceptions.toml"), "{err}");
        assert!(err.contains("review.exceptions"), "{err}");
    }
}
