//! The IdP step: reads the identity provider's or HR system's user export into people.
//!
//! The file is checked first (encoding, then every record with the `csv` crate, so an
//! error can name its row), then read by polars with every column as a string, so an id
//! such as `00042` keeps its zeros. Columns are found by name, case-insensitively.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::config::IdpConfig;

/// One person of the export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// The record's row in the file, counting the header as row 1.
    pub row: usize,
    pub email: Option<String>,
    pub employee_id: Option<String>,
    /// Further emails that identify the same person: login, secondary email, aliases.
    pub aliases: Vec<String>,
    pub name: Option<String>,
    pub department: Option<String>,
    /// The status as written in the export.
    pub status: Option<String>,
    /// The status means the person left (suspended, deprovisioned, inactive...).
    pub status_terminated: bool,
    pub termination_date: Option<NaiveDate>,
}

impl Person {
    /// Whether the person is a leaver on the review date: a terminated status, or a
    /// termination date on or before it.
    pub fn is_terminated(&self, as_of: NaiveDate) -> bool {
        self.status_terminated || self.termination_date.is_some_and(|d| d <= as_of)
    }
}

/// A read export.
#[derive(Debug, Clone)]
pub struct Export {
    pub path: PathBuf,
    pub format: Format,
    pub sha256: String,
    pub rows: usize,
    pub people: Vec<Person>,
}

/// The presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Okta,
    Generic,
}

impl Format {
    pub const NAMES: &'static str = "okta, generic";

    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "okta" => Some(Format::Okta),
            "generic" => Some(Format::Generic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Okta => "okta",
            Format::Generic => "generic",
        }
    }
}

#[derive(Debug, Error)]
pub enum IdpError {
    #[error("cannot read IdP export `{path}`: {cause}")]
    Io {
        path: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("IdP export `{path}` is empty: it has no people; check that the export finished")]
    Empty { path: String },
    #[error("IdP export `{path}` is not valid UTF-8 at byte offset {offset}; export it as UTF-8")]
    Encoding { path: String, offset: usize },
    #[error("IdP export `{path}`, row {row}: {what}")]
    Row {
        path: String,
        row: usize,
        what: String,
    },
    #[error(
        "column `{column}` not found in {format} export `{path}` (found: {found}); set `{key}`"
    )]
    MissingColumn {
        path: String,
        format: &'static str,
        column: String,
        found: String,
        key: &'static str,
    },
    #[error("IdP export `{path}`: {what}")]
    Parse { path: String, what: String },
}

/// Status words every format understands, lowercased.
const ACTIVE_WORDS: &[&str] = &[
    "active",
    "enabled",
    "true",
    "staged",
    "provisioned",
    "recovery",
    "locked_out",
    "password_expired",
];
const TERMINATED_WORDS: &[&str] = &[
    "terminated",
    "suspended",
    "disabled",
    "inactive",
    "false",
    "deprovisioned",
];

/// Reads the export named by `cfg.file`.
pub fn read(cfg: &IdpConfig) -> Result<Export, IdpError> {
    let path = cfg.file.clone().unwrap_or_default();
    let format = Format::parse(&cfg.format).unwrap_or(Format::Generic);
    let bytes = std::fs::read(&path).map_err(|cause| IdpError::Io {
        path: path.display().to_string(),
        cause,
    })?;
    read_bytes(&path, &bytes, format, cfg)
}

/// Reads an export already in memory; `path` only names it in errors and evidence.
pub fn read_bytes(
    path: &Path,
    bytes: &[u8],
    format: Format,
    cfg: &IdpConfig,
) -> Result<Export, IdpError> {
    let shown = path.display().to_string();
    let sha256 = format!("{:x}", Sha256::digest(bytes));
    let text = decode(&shown, bytes)?;
    let table = read_table(&shown, text)?;
    let people = match format {
        Format::Okta => okta(&shown, &table)?,
        Format::Generic => generic(&shown, &table, cfg)?,
    };
    if people.is_empty() {
        return Err(IdpError::Empty { path: shown });
    }
    Ok(Export {
        path: path.to_path_buf(),
        format,
        sha256,
        rows: people.len(),
        people,
    })
}

/// Strips a UTF-8 BOM and refuses anything that is not UTF-8.
fn decode<'a>(path: &str, bytes: &'a [u8]) -> Result<&'a str, IdpError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| IdpError::Encoding {
        path: path.into(),
        offset: e.valid_up_to(),
    })
}

/// The export as strings: a header and one row of optional values per record.
struct Table {
    headers: Vec<String>,
    columns: Vec<Vec<Option<String>>>,
    rows: usize,
}

impl Table {
    /// The index of the first header that one of `names` matches, compared by
    /// [`header_key`].
    fn find(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|name| {
            let wanted = header_key(name);
            self.headers.iter().position(|h| header_key(h) == wanted)
        })
    }

    fn value(&self, column: Option<usize>, row: usize) -> Option<&str> {
        column.and_then(|c| self.columns[c][row].as_deref())
    }

    fn found(&self) -> String {
        self.headers
            .iter()
            .map(|h| format!("`{h}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A header reduced to what identifies it: lowercase letters and digits, without a
/// ` [Required]`-style suffix or a `profile.` prefix.
fn header_key(header: &str) -> String {
    let header = header.trim();
    let header = match header.find(" [") {
        Some(i) if header.ends_with(']') => &header[..i],
        _ => header,
    };
    let lower = header.to_lowercase();
    let lower = lower.strip_prefix("profile.").unwrap_or(&lower);
    lower.chars().filter(|c| c.is_alphanumeric()).collect()
}

fn read_table(path: &str, text: &str) -> Result<Table, IdpError> {
    // The csv crate names the row of a malformed record; polars would not.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| IdpError::Parse {
            path: path.into(),
            what: format!("the header line is unreadable: {e}"),
        })?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(IdpError::Empty { path: path.into() });
    }
    let mut records = 0usize;
    for (i, record) in reader.records().enumerate() {
        record.map_err(|e| IdpError::Row {
            path: path.into(),
            row: i + 2,
            what: match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!("has {len} fields where the header has {expected_len}"),
                _ => e.to_string(),
            },
        })?;
        records += 1;
    }
    if records == 0 {
        return Err(IdpError::Empty { path: path.into() });
    }

    let frame = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .map_parse_options(|o| o.with_missing_is_null(true))
        .into_reader_with_file_handle(Cursor::new(text.as_bytes()))
        .finish()
        .map_err(|e| IdpError::Parse {
            path: path.into(),
            what: e.to_string(),
        })?;
    if frame.height() != records {
        return Err(IdpError::Parse {
            path: path.into(),
            what: format!(
                "read {} records where the file holds {records}; check its quoting",
                frame.height()
            ),
        });
    }
    let mut columns = Vec::with_capacity(frame.width());
    for column in frame.columns() {
        let values = column.str().map_err(|e| IdpError::Parse {
            path: path.into(),
            what: e.to_string(),
        })?;
        columns.push(
            values
                .iter()
                .map(|v| {
                    v.map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                })
                .collect(),
        );
    }
    Ok(Table {
        headers,
        columns,
        rows: records,
    })
}

fn okta(path: &str, table: &Table) -> Result<Vec<Person>, IdpError> {
    let email = table.find(&["Primary Email", "email"]);
    let login = table.find(&["Username", "login"]);
    let second = table.find(&["Secondary Email", "secondEmail"]);
    let employee = table.find(&["Employee Number", "employeeNumber", "Employee ID"]);
    let first = table.find(&["First Name", "firstName"]);
    let last = table.find(&["Last Name", "lastName"]);
    let display = table.find(&["Display Name", "displayName"]);
    let department = table.find(&["Department"]);
    let status = table.find(&["Status"]);

    if email.is_none() && login.is_none() {
        return Err(missing(path, "okta", "Primary Email", table, "idp.format"));
    }
    let Some(status) = status else {
        return Err(missing(path, "okta", "Status", table, "idp.format"));
    };

    let mut people = Vec::with_capacity(table.rows);
    for row in 0..table.rows {
        let raw_status = table.value(Some(status), row);
        let status_terminated = status_word(raw_status, ACTIVE_WORDS, TERMINATED_WORDS)
            .map_err(|value| unknown_status(path, row, &value))?;
        let name = match (table.value(first, row), table.value(last, row)) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(n), None) | (None, Some(n)) => Some(n.to_owned()),
            (None, None) => table.value(display, row).map(str::to_owned),
        };
        let primary = table.value(email, row).map(str::to_owned);
        let aliases = [table.value(login, row), table.value(second, row)]
            .into_iter()
            .flatten()
            .filter(|a| Some(*a) != primary.as_deref())
            .map(str::to_owned)
            .collect();
        people.push(Person {
            row: row + 2,
            email: primary.or_else(|| table.value(login, row).map(str::to_owned)),
            employee_id: table.value(employee, row).map(str::to_owned),
            aliases,
            name,
            department: table.value(department, row).map(str::to_owned),
            status: raw_status.map(str::to_owned),
            status_terminated,
            termination_date: None,
        });
    }
    Ok(people)
}

fn generic(path: &str, table: &Table, cfg: &IdpConfig) -> Result<Vec<Person>, IdpError> {
    let columns = &cfg.columns;
    let wanted = columns.email.as_deref().unwrap_or("email");
    let Some(email) = table.find(&[wanted]) else {
        return Err(missing(path, "generic", wanted, table, "idp.columns.email"));
    };
    let optional = |name: &Option<String>, key: &'static str| -> Result<Option<usize>, IdpError> {
        match name {
            None => Ok(None),
            Some(n) => table
                .find(&[n])
                .map(Some)
                .ok_or_else(|| missing(path, "generic", n, table, key)),
        }
    };
    let status = optional(&columns.status, "idp.columns.status")?;
    let employee = optional(&columns.employee_id, "idp.columns.employee_id")?;
    let aliases = optional(&columns.aliases, "idp.columns.aliases")?;
    let termination = optional(&columns.termination_date, "idp.columns.termination_date")?;
    let name = optional(&columns.name, "idp.columns.name")?;
    let department = optional(&columns.department, "idp.columns.department")?;

    let mut people = Vec::with_capacity(table.rows);
    for row in 0..table.rows {
        let raw_status = table.value(status, row);
        let status_terminated = match status {
            None => false,
            Some(_) => status_word(raw_status, ACTIVE_WORDS, TERMINATED_WORDS)
                .map_err(|value| unknown_status(path, row, &value))?,
        };
        let termination_date = match table.value(termination, row) {
            None => None,
            Some(text) => Some(parse_date(text).ok_or_else(|| IdpError::Row {
                path: path.into(),
                row: row + 2,
                what: format!("termination date `{text}` is not a date (expected YYYY-MM-DD)"),
            })?),
        };
        people.push(Person {
            row: row + 2,
            email: table.value(Some(email), row).map(str::to_owned),
            employee_id: table.value(employee, row).map(str::to_owned),
            aliases: table
                .value(aliases, row)
                .map(|list| {
                    list.split([';', ','])
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            name: table.value(name, row).map(str::to_owned),
            department: table.value(department, row).map(str::to_owned),
            status: raw_status.map(str::to_owned),
            status_terminated,
            termination_date,
        });
    }
    Ok(people)
}

/// `Ok(true)` for a terminated word, `Ok(false)` for an active one or no value, and the
/// value itself when it is neither.
fn status_word(value: Option<&str>, active: &[&str], terminated: &[&str]) -> Result<bool, String> {
    let Some(value) = value else {
        return Ok(false);
    };
    let word = value.trim().to_lowercase().replace([' ', '-'], "_");
    if terminated.contains(&word.as_str()) {
        Ok(true)
    } else if active.contains(&word.as_str()) {
        Ok(false)
    } else {
        Err(value.to_owned())
    }
}

fn unknown_status(path: &str, row: usize, value: &str) -> IdpError {
    IdpError::Row {
        path: path.into(),
        row: row + 2,
        what: format!(
            "status `{value}` is neither an active nor a terminated value (active: {}; \
             terminated: {})",
            ACTIVE_WORDS.join(", "),
            TERMINATED_WORDS.join(", ")
        ),
    }
}

fn missing(
    path: &str,
    format: &'static str,
    column: &str,
    table: &Table,
    key: &'static str,
) -> IdpError {
    IdpError::MissingColumn {
        path: path.into(),
        format,
        column: column.into(),
        found: table.found(),
        key,
    }
}

/// `YYYY-MM-DD`, optionally followed by a time, which is ignored.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let day = text.trim().get(..10)?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Columns;

    fn okta_cfg() -> IdpConfig {
        IdpConfig::default()
    }

    fn read_okta(text: &str) -> Result<Export, IdpError> {
        read_bytes(
            Path::new("okta.csv"),
            text.as_bytes(),
            Format::Okta,
            &okta_cfg(),
        )
    }

    #[test]
    fn okta_statuses_map_to_active_or_terminated() {
        let cases = [
            ("ACTIVE", false),
            ("STAGED", false),
            ("PROVISIONED", false),
            ("RECOVERY", false),
            ("LOCKED_OUT", false),
            ("PASSWORD_EXPIRED", false),
            ("SUSPENDED", true),
            ("DEPROVISIONED", true),
        ];
        for (status, terminated) in cases {
            let text = format!("Username,Primary Email,Status\na@x.example,a@x.example,{status}\n");
            let export = read_okta(&text).unwrap();
            assert_eq!(export.people[0].status_terminated, terminated, "{status}");
        }
    }

    #[test]
    fn an_unknown_status_names_the_value_and_the_row() {
        let text = "Primary Email,Status\na@x.example,ACTIVE\nb@x.example,ON_LEAVE\n";
        let err = read_okta(text).unwrap_err().to_string();
        assert!(err.contains("row 3"), "{err}");
        assert!(err.contains("`ON_LEAVE`"), "{err}");
    }

    #[test]
    fn ids_keep_their_leading_zeros_even_when_a_later_row_is_not_numeric() {
        let mut text = String::from("Primary Email,Employee Number,Status\n");
        for i in 0..200 {
            text.push_str(&format!("p{i}@x.example,{i:05},ACTIVE\n"));
        }
        text.push_str("last@x.example,X-1,ACTIVE\n");
        let export = read_okta(&text).unwrap();
        assert_eq!(export.people[42].employee_id.as_deref(), Some("00042"));
        assert_eq!(export.people[200].employee_id.as_deref(), Some("X-1"));
    }

    #[test]
    fn a_bom_is_stripped_and_headers_match_case_insensitively() {
        let text = "\u{feff}primary email,STATUS\n a@x.example ,active\n";
        let export = read_okta(text).unwrap();
        assert_eq!(export.people[0].email.as_deref(), Some("a@x.example"));
    }

    #[test]
    fn a_missing_column_lists_what_was_found_and_the_key_to_set() {
        let err = read_okta("Mail,State\na@x.example,ACTIVE\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("column `Primary Email` not found"), "{err}");
        assert!(err.contains("`Mail`, `State`"), "{err}");
        assert!(err.contains("set `idp.format`"), "{err}");
    }

    #[test]
    fn an_empty_export_is_refused() {
        let err = read_okta("Primary Email,Status\n").unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
    }

    #[test]
    fn invalid_utf8_names_the_byte_offset() {
        let bytes = b"Primary Email,Status\nb\xE9@x.example,ACTIVE\n";
        let err = read_bytes(Path::new("f.csv"), bytes, Format::Okta, &okta_cfg())
            .unwrap_err()
            .to_string();
        assert!(err.contains("byte offset 22"), "{err}");
    }

    #[test]
    fn a_ragged_row_is_named() {
        let err = read_okta("Primary Email,Status\na@x.example,ACTIVE,extra\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 2"), "{err}");
        assert!(err.contains("3 fields where the header has 2"), "{err}");
    }

    #[test]
    fn quoted_newlines_stay_inside_their_field() {
        let text = "Primary Email,Department,Status\r\na@x.example,\"Research\r\nand Dev\",ACTIVE\r\nb@x.example,Ops,SUSPENDED\r\n";
        let export = read_okta(text).unwrap();
        assert_eq!(export.people.len(), 2);
        assert!(export.people[1].status_terminated);
        assert_eq!(export.people[1].row, 3);
    }

    #[test]
    fn generic_needs_only_an_email_column_and_reads_termination_dates() {
        let cfg = IdpConfig {
            file: None,
            format: "generic".into(),
            columns: Columns {
                email: Some("Work Email".into()),
                termination_date: Some("Left On".into()),
                aliases: Some("Aliases".into()),
                ..Columns::default()
            },
        };
        let text = "Work Email,Left On,Aliases\na@x.example,,a2@x.example; a3@x.example\nb@x.example,2026-11-01,\n";
        let export =
            read_bytes(Path::new("hr.csv"), text.as_bytes(), Format::Generic, &cfg).unwrap();
        let as_of = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert!(!export.people[0].is_terminated(as_of));
        assert_eq!(export.people[0].aliases, ["a2@x.example", "a3@x.example"]);
        assert!(export.people[1].is_terminated(as_of));
        assert!(!export.people[1].is_terminated(NaiveDate::from_ymd_opt(2026, 10, 31).unwrap()));
    }

    #[test]
    fn generic_names_the_config_key_for_a_missing_email_column() {
        let cfg = IdpConfig {
            format: "generic".into(),
            ..IdpConfig::default()
        };
        let err = read_bytes(Path::new("hr.csv"), b"Mail\na@x\n", Format::Generic, &cfg)
            .unwrap_err()
            .to_string();
        assert!(err.contains("set `idp.columns.email`"), "{err}");
    }
}
