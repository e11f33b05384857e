//! The activity step: reads Docker Hub's members export (`members`) or its Insights
//! variant (`insights`), which adds last sign-in and last Docker Desktop use.
//!
//! An empty activity cell means "never"; a missing activity column means "unknown".

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// One activity value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seen {
    /// The export has no such column.
    Unknown,
    /// The column is there and the cell is empty.
    Never,
    At(DateTime<Utc>),
}

/// Where a member, or its activity, was read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberSource {
    /// The members export file (`activity.file`).
    #[default]
    Export,
    /// `GET /v2/orgs/{org}/members`.
    HubApi,
}

impl MemberSource {
    pub fn label(self) -> &'static str {
        match self {
            MemberSource::Export => "activity export",
            MemberSource::HubApi => "Hub members API",
        }
    }

    /// The names of the sign-in, Desktop use and join fields in this source.
    fn fields(self) -> [&'static str; 3] {
        match self {
            MemberSource::Export => ["Last Logged-In Date", "Last Seen Date", "Date Joined"],
            MemberSource::HubApi => ["last_logged_in_at", "last_seen_at", "date_joined"],
        }
    }
}

/// One member of the organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The row of the export, or the position in the members API's listing (from 1).
    pub row: usize,
    pub name: Option<String>,
    /// The Docker ID.
    pub username: Option<String>,
    pub email: Option<String>,
    /// `member`, `invitee`, ...
    pub kind: Option<String>,
    pub permission: Option<String>,
    pub teams: Option<String>,
    pub date_joined: Option<DateTime<Utc>>,
    pub last_logged_in: Seen,
    pub last_seen: Seen,
    /// `Docker Desktop Version` / `last_desktop_version`.
    #[serde(default)]
    pub desktop_version: Option<String>,
    /// Where the member was read.
    #[serde(default)]
    pub source: MemberSource,
    /// Where the activity fields were read: the API, or the export when the API had none.
    #[serde(default)]
    pub activity_source: MemberSource,
}

impl Member {
    /// The latest activity with the field that gave it, `Never` when every activity field
    /// is empty, `Unknown` when there is none.
    pub fn last_activity(&self) -> (Seen, &'static str) {
        let [logged_in, seen, _] = self.activity_source.fields();
        let fields = [(self.last_logged_in, logged_in), (self.last_seen, seen)];
        let latest = fields
            .iter()
            .filter_map(|(s, f)| match s {
                Seen::At(t) => Some((*t, *f)),
                _ => None,
            })
            .max_by_key(|(t, _)| *t);
        match latest {
            Some((t, f)) => (Seen::At(t), f),
            None if fields.iter().any(|(s, _)| *s == Seen::Never) => (Seen::Never, "activity"),
            None => (Seen::Unknown, "activity"),
        }
    }

    /// The name of the join date field in the member's source.
    pub fn joined_field(&self) -> &'static str {
        self.source.fields()[2]
    }

    /// Whether the member is a guest (`Type` = guest, or the API's `is_guest`).
    pub fn is_guest(&self) -> bool {
        self.kind
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case("guest"))
    }
}

#[derive(Debug, Clone)]
pub struct MemberExport {
    pub path: PathBuf,
    pub format: String,
    pub sha256: String,
    pub members: Vec<Member>,
}

#[derive(Debug, Error)]
pub enum ActivityError {
    #[error("cannot read activity export `{path}`: {cause}")]
    Io {
        path: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("activity export `{path}`, row {row}: {what}")]
    Row {
        path: String,
        row: usize,
        what: String,
    },
    #[error("column `{column}` not found in activity export `{path}` (found: {found}); {hint}")]
    MissingColumn {
        path: String,
        column: &'static str,
        found: String,
        hint: &'static str,
    },
    #[error("activity export `{path}`: {what}")]
    Parse { path: String, what: String },
}

pub fn read(path: &Path, format: &str) -> Result<MemberExport, ActivityError> {
    let bytes = std::fs::read(path).map_err(|cause| ActivityError::Io {
        path: path.display().to_string(),
        cause,
    })?;
    read_bytes(path, &bytes, format)
}

pub fn read_bytes(path: &Path, bytes: &[u8], format: &str) -> Result<MemberExport, ActivityError> {
    let shown = path.display().to_string();
    let sha256 = format!("{:x}", Sha256::digest(bytes));
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| ActivityError::Parse {
        path: shown.clone(),
        what: format!("not valid UTF-8 at byte offset {}", e.valid_up_to()),
    })?;
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ActivityError::Parse {
            path: shown.clone(),
            what: format!("the header line is unreadable: {e}"),
        })?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let find = |name: &str| {
        let key = squash(name);
        headers.iter().position(|h| squash(h) == key)
    };
    let found = || {
        headers
            .iter()
            .map(|h| format!("`{h}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };

    let email = find("Email");
    let username = find("Username");
    if email.is_none() && username.is_none() {
        return Err(ActivityError::MissingColumn {
            path: shown,
            column: "Email",
            found: found(),
            hint: "use Docker Hub's members export (Organization > Members > Export)",
        });
    }
    let logged_in = find("Last Logged-In Date");
    let seen = find("Last Seen Date");
    if format == "insights" && logged_in.is_none() && seen.is_none() {
        return Err(ActivityError::MissingColumn {
            path: shown,
            column: "Last Logged-In Date",
            found: found(),
            hint: "set `activity.format = \"members\"` for an export without activity",
        });
    }
    let name = find("Name");
    let kind = find("Type");
    let permission = find("Permission");
    let teams = find("Teams");
    let joined = find("Date Joined");
    let desktop = find("Docker Desktop Version");

    let mut members = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 2;
        let record = record.map_err(|e| ActivityError::Row {
            path: shown.clone(),
            row,
            what: e.to_string(),
        })?;
        let cell = |c: Option<usize>| {
            c.and_then(|c| record.get(c))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let date = |c: Option<usize>,
                    column: &str|
         -> Result<Option<DateTime<Utc>>, ActivityError> {
            match cell(c) {
                None => Ok(None),
                Some(text) => parse_hub_time(&text)
                    .map(Some)
                    .ok_or_else(|| ActivityError::Row {
                        path: shown.clone(),
                        row,
                        what: format!("`{column}` = `{text}` is not a date"),
                    }),
            }
        };
        let seen_at = |c: Option<usize>, column: &str| -> Result<Seen, ActivityError> {
            if c.is_none() {
                return Ok(Seen::Unknown);
            }
            Ok(date(c, column)?.map_or(Seen::Never, Seen::At))
        };
        members.push(Member {
            row,
            name: cell(name),
            username: cell(username),
            email: cell(email),
            kind: cell(kind),
            permission: cell(permission),
            teams: cell(teams),
            date_joined: date(joined, "Date Joined")?,
            last_logged_in: seen_at(logged_in, "Last Logged-In Date")?,
            last_seen: seen_at(seen, "Last Seen Date")?,
            desktop_version: cell(desktop),
            source: MemberSource::Export,
            activity_source: MemberSource::Export,
        });
    }
    Ok(MemberExport {
        path: path.to_path_buf(),
        format: format.to_owned(),
        sha256,
        members,
    })
}

fn squash(header: &str) -> String {
    header
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Docker Hub's export times: `2020-01-01 15:00:51.193355 +0000 UTC` (with or without
/// the fraction), RFC 3339, or a bare date.
pub fn parse_hub_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    let trimmed = text.strip_suffix(" UTC").unwrap_or(text);
    for format in ["%Y-%m-%d %H:%M:%S%.f %z", "%Y-%m-%d %H:%M:%S %z"] {
        if let Ok(t) = DateTime::parse_from_str(trimmed, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_dates_parse_with_and_without_fraction_and_offset() {
        let cases = [
            (
                "2020-01-01 15:00:51.193355 +0000 UTC",
                "2020-01-01T15:00:51.193355+00:00",
            ),
            ("2020-01-01 15:00:51 +0000 UTC", "2020-01-01T15:00:51+00:00"),
            ("2020-01-01 17:00:51 +0200", "2020-01-01T15:00:51+00:00"),
            ("2020-01-01T15:00:51Z", "2020-01-01T15:00:51+00:00"),
            ("2020-01-01 15:00:51", "2020-01-01T15:00:51+00:00"),
            ("2020-01-01", "2020-01-01T00:00:00+00:00"),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_hub_time(text).map(|t| t.to_rfc3339()).as_deref(),
                Some(want),
                "{text}"
            );
        }
        assert_eq!(parse_hub_time("yesterday"), None);
    }

    #[test]
    fn empty_cells_mean_never_and_missing_columns_mean_unknown() {
        let text = "Username,Email,Date Joined,Last Logged-In Date,Last Seen Date\n\
                    a,a@x.example,2024-01-01 00:00:00 +0000 UTC,,\n";
        let export = read_bytes(Path::new("a.csv"), text.as_bytes(), "insights").unwrap();
        assert_eq!(export.members[0].last_activity().0, Seen::Never);

        let text = "Name,Username,Email,Type,Permission,Teams,Date Joined\nA,a,a@x.example,member,member,,2024-01-01\n";
        let export = read_bytes(Path::new("m.csv"), text.as_bytes(), "members").unwrap();
        assert_eq!(export.members[0].last_activity().0, Seen::Unknown);
    }

    #[test]
    fn the_latest_activity_field_wins() {
        let text = "Email,Last Logged-In Date,Last Seen Date\n\
                    a@x.example,2026-01-01 00:00:00 +0000 UTC,2026-03-01 00:00:00 +0000 UTC\n";
        let export = read_bytes(Path::new("a.csv"), text.as_bytes(), "insights").unwrap();
        let (seen, field) = export.members[0].last_activity();
        assert_eq!(field, "Last Seen Date");
        assert_eq!(seen, Seen::At(parse_hub_time("2026-03-01").unwrap()));
    }

    #[test]
    fn a_bad_date_names_its_row_and_column() {
        let text = "Email,Last Logged-In Date\na@x.example,2026-01-01\nb@x.example,soon\n";
        let err = read_bytes(Path::new("a.csv"), text.as_bytes(), "insights")
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 3"), "{err}");
        assert!(err.contains("`Last Logged-In Date` = `soon`"), "{err}");
    }

    #[test]
    fn an_insights_export_without_activity_columns_is_refused() {
        let err = read_bytes(Path::new("m.csv"), b"Email\na@x.example\n", "insights")
            .unwrap_err()
            .to_string();
        assert!(err.contains("activity.format"), "{err}");
    }
}
