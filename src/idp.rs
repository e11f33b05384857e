//! The IdP step: reads the identity provider's or HR system's user export into people.
//!
//! Reading goes in stages, each refusing clearly what it cannot read:
//! 1. [`encoding`]: a byte-order mark, else `idp.encoding`, turns the bytes into UTF-8;
//! 2. [`table`]: the `csv` crate checks every record (so an error names its row), then
//!    polars reads the columns a preset uses, every one as a string, so `00042` stays
//!    `00042`;
//! 3. [`presets`]: the format's columns, found by name case-insensitively, become people;
//!    statuses go through the format's table and dates through [`dates`].
//!
//! An Okta users API export (JSON) skips the table and is read by [`presets`] directly.

mod dates;
mod encoding;
mod presets;
mod table;

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::{debug, info};

use crate::config::IdpConfig;

pub use dates::{DateReader, local_to_utc, valid_format as valid_date_format};
pub use encoding::Encoding;
pub use presets::{UnknownStatus, generic_statuses};
pub use table::{header_key, parse_delimiter};

/// One person of the export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// Where the person is in the file: the row as a spreadsheet shows it (the header is
    /// row 1, or row 2 after a PowerShell `#TYPE` line); for a JSON export, the user's
    /// position, counting from 1.
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
    /// The UTC day from which the person is a leaver: the export's termination date or
    /// time, read in `idp.timezone`.
    pub termination_date: Option<NaiveDate>,
    /// The termination date as written in the export, for the evidence.
    #[serde(default)]
    pub termination_text: Option<String>,
    /// A guest of the directory (Entra `#EXT#` or `userType` Guest), kept and marked.
    #[serde(default)]
    pub guest: bool,
    /// The last sign-in the IdP knows of, where the export has it.
    #[serde(default)]
    pub last_sign_in: Option<DateTime<Utc>>,
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
    /// How many people the export holds (repeated rows collapsed, for JumpCloud).
    pub rows: usize,
    pub people: Vec<Person>,
}

/// The presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Okta,
    Entra,
    Google,
    Jumpcloud,
    Bamboohr,
    Generic,
}

impl Format {
    pub const NAMES: &'static str = "okta, entra, google, jumpcloud, bamboohr, generic";

    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "okta" => Some(Format::Okta),
            "entra" => Some(Format::Entra),
            "google" => Some(Format::Google),
            "jumpcloud" => Some(Format::Jumpcloud),
            "bamboohr" => Some(Format::Bamboohr),
            "generic" => Some(Format::Generic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Okta => "okta",
            Format::Entra => "entra",
            Format::Google => "google",
            Format::Jumpcloud => "jumpcloud",
            Format::Bamboohr => "bamboohr",
            Format::Generic => "generic",
        }
    }

    /// The date format of the preset's exports, used unless `idp.date_format` is set.
    pub fn date_format(self) -> &'static str {
        match self {
            Format::Entra => "%m/%d/%Y %I:%M:%S %p",
            Format::Google => "%Y/%m/%d %H:%M:%S",
            Format::Okta | Format::Jumpcloud | Format::Bamboohr | Format::Generic => "%Y-%m-%d",
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
    #[error("IdP export `{path}`, byte offset {offset}: {what}")]
    Encoding {
        path: String,
        offset: usize,
        what: String,
    },
    #[error("IdP export `{path}`, row {row}: {what}")]
    Row {
        path: String,
        row: usize,
        what: String,
    },
    #[error("IdP export `{path}`, user {record}{}: {what}", id_suffix(.id))]
    Record {
        path: String,
        record: usize,
        id: Option<String>,
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
    #[error("`idp.{key}` = `{value}`: {what}")]
    Config {
        key: &'static str,
        value: String,
        what: String,
    },
}

fn id_suffix(id: &Option<String>) -> String {
    id.as_ref()
        .map(|id| format!(" (`{id}`)"))
        .unwrap_or_default()
}

/// Reads the export named by `cfg.file`.
pub fn read(cfg: &IdpConfig) -> Result<Export, IdpError> {
    let path = cfg.file.clone().unwrap_or_default();
    let format = Format::parse(&cfg.format).ok_or_else(|| IdpError::Config {
        key: "format",
        value: cfg.format.clone(),
        what: format!("must be one of {}", Format::NAMES),
    })?;
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
    let settings = presets::Settings::from_config(&shown, format, cfg)?;
    let decoded = encoding::decode(bytes, settings.encoding).map_err(|e| IdpError::Encoding {
        path: shown.clone(),
        offset: e.offset,
        what: e.what,
    })?;
    debug!(path = %shown, encoding = decoded.encoding.as_str(), "decoded the export");
    let text = decoded.text.as_ref();

    let people = if format == Format::Okta && looks_like_json(text) {
        presets::okta_json(&settings, text)?
    } else {
        let table = table::Table::check(&shown, text, settings.delimiter)?;
        presets::read_table(&settings, &table)?
    };
    if people.is_empty() {
        return Err(IdpError::Empty { path: shown });
    }
    settings.report_unknown();
    info!(
        path = %shown,
        format = format.as_str(),
        people = people.len(),
        "read the IdP export"
    );
    Ok(Export {
        path: path.to_path_buf(),
        format,
        sha256,
        rows: people.len(),
        people,
    })
}

/// Whether the text is JSON rather than CSV: it opens with `[` or `{`.
fn looks_like_json(text: &str) -> bool {
    matches!(text.trim_start().chars().next(), Some('[' | '{'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Columns;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn config(format: &str) -> IdpConfig {
        IdpConfig {
            format: format.into(),
            ..IdpConfig::default()
        }
    }

    fn read_text(format: &str, text: &str, cfg: &IdpConfig) -> Result<Export, IdpError> {
        let format = Format::parse(format).unwrap();
        read_bytes(Path::new("export.csv"), text.as_bytes(), format, cfg)
    }

    fn fixture(name: &str, cfg: &IdpConfig) -> Result<Export, IdpError> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/idp")
            .join(name);
        let bytes = std::fs::read(&path).unwrap();
        read_bytes(&path, &bytes, Format::parse(&cfg.format).unwrap(), cfg)
    }

    fn person<'a>(export: &'a Export, email: &str) -> &'a Person {
        export
            .people
            .iter()
            .find(|p| p.email.as_deref() == Some(email))
            .unwrap_or_else(|| panic!("{email} not in {:?}", export.people))
    }

    /// A one-person export of `format` whose status column holds `value`.
    fn status_export(format: &str, value: &str) -> String {
        let header = match format {
            "okta" => "Primary Email,Status",
            "entra" => "userPrincipalName,accountEnabled",
            "google" => "Email Address [Required],Status [READ ONLY]",
            "jumpcloud" => "email,state",
            "bamboohr" => "workEmail,status",
            _ => "email,status",
        };
        format!("{header}\na@x.example,{value}\n")
    }

    #[test]
    fn each_format_maps_its_statuses_by_its_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("okta", "STAGED", false),
            ("okta", "PROVISIONED", false),
            ("okta", "ACTIVE", false),
            ("okta", "RECOVERY", false),
            ("okta", "LOCKED_OUT", false),
            ("okta", "PASSWORD_EXPIRED", false),
            ("okta", "Password expired", false),
            ("okta", "Pending user action", false),
            ("okta", "SUSPENDED", true),
            ("okta", "DEPROVISIONED", true),
            ("okta", "Deactivated", true),
            ("entra", "True", false),
            ("entra", "FALSE", true),
            ("google", "Active", false),
            ("google", "Suspended", true),
            ("google", "Archived", true),
            ("jumpcloud", "STAGED", false),
            ("jumpcloud", "ACTIVATED", false),
            ("jumpcloud", "SUSPENDED", true),
            ("bamboohr", "Active", false),
            ("bamboohr", "Inactive", true),
            ("generic", "active", false),
            ("generic", "Enabled", false),
            ("generic", "TRUE", false),
            ("generic", "terminated", true),
            ("generic", "Suspended", true),
            ("generic", "disabled", true),
            ("generic", "inactive", true),
            ("generic", "false", true),
        ];
        for (format, value, terminated) in cases {
            let mut cfg = config(format);
            cfg.columns.status = Some("status".into());
            let export = read_text(format, &status_export(format, value), &cfg)
                .unwrap_or_else(|e| panic!("{format} {value}: {e}"));
            assert_eq!(
                export.people[0].status_terminated, *terminated,
                "{format} {value}"
            );
        }
    }

    #[test]
    fn a_status_no_table_knows_is_an_error_naming_the_value_and_the_row() {
        let cases: &[(&str, &str)] = &[
            ("okta", "ON_LEAVE"),
            ("entra", "Yes"),
            ("google", "Pending"),
            ("jumpcloud", "ACTIVE"),
            ("bamboohr", "Terminated"),
            ("generic", "Employed"),
        ];
        for (format, value) in cases {
            let mut cfg = config(format);
            cfg.columns.status = Some("status".into());
            let err = read_text(format, &status_export(format, value), &cfg)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("`{value}`")), "{err}");
            assert!(err.contains("row 2"), "{err}");
            assert!(err.contains("idp.unknown_status"), "{err}");
        }
    }

    #[test]
    fn unknown_status_decides_unknown_and_empty_values_when_set() {
        for (meaning, terminated) in [("active", false), ("terminated", true)] {
            let cfg = IdpConfig {
                unknown_status: Some(meaning.into()),
                ..config("okta")
            };
            let text = "Primary Email,Status\na@x.example,ON_LEAVE\nb@x.example,\n";
            let export = read_text("okta", text, &cfg).unwrap();
            assert!(
                export
                    .people
                    .iter()
                    .all(|p| p.status_terminated == terminated),
                "{meaning}"
            );
        }
    }

    #[test]
    fn an_empty_status_is_not_read_as_active() {
        let text = "Primary Email,Status\na@x.example,ACTIVE\nb@x.example,\n";
        let err = read_text("okta", text, &config("okta"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 3"), "{err}");
        assert!(err.contains("column `Status` is empty"), "{err}");
    }

    #[test]
    fn generic_status_lists_replace_the_default_words() {
        let cfg = IdpConfig {
            status_active: Some(vec!["Employed".into(), "On leave".into()]),
            status_terminated: Some(vec!["Left".into()]),
            columns: Columns {
                status: Some("State".into()),
                ..Columns::default()
            },
            ..config("generic")
        };
        let text = "email,State\na@x.example,employed\nb@x.example,ON LEAVE\nc@x.example,Left\n";
        let export = read_text("generic", text, &cfg).unwrap();
        let terminated: Vec<bool> = export.people.iter().map(|p| p.status_terminated).collect();
        assert_eq!(terminated, [false, false, true]);
        let err = read_text("generic", "email,State\na@x.example,active\n", &cfg)
            .unwrap_err()
            .to_string();
        assert!(err.contains("idp.status_active"), "{err}");
    }

    #[test]
    fn a_missing_required_column_names_it_lists_the_found_ones_and_the_key() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("okta", "Mail,State", "Primary Email", "idp.format"),
            ("okta", "Primary Email,State", "Status", "idp.format"),
            ("entra", "mail,userType", "accountEnabled", "idp.format"),
            (
                "entra",
                "displayName,accountEnabled",
                "userPrincipalName",
                "idp.format",
            ),
            (
                "google",
                "Email Address [Required],Org Unit Path [Required]",
                "Status [READ ONLY]",
                "idp.format",
            ),
            ("jumpcloud", "username,state", "email", "idp.format"),
            (
                "bamboohr",
                "workEmail,employmentHistoryStatus",
                "status",
                "idp.format",
            ),
            ("generic", "Mail,status", "email", "idp.columns.email"),
        ];
        for (format, header, column, key) in cases {
            let text = format!("{header}\na,b\n");
            let err = read_text(format, &text, &config(format))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("column `{column}` not found")),
                "{err}"
            );
            let found: Vec<String> = header.split(',').map(|h| format!("`{h}`")).collect();
            assert!(err.contains(&found.join(", ")), "{err}");
            assert!(err.contains(&format!("set `{key}`")), "{err}");
        }
        let cfg = IdpConfig {
            columns: Columns {
                termination_date: Some("Leaving".into()),
                ..Columns::default()
            },
            ..config("generic")
        };
        let err = read_text("generic", "email\na@x.example\n", &cfg)
            .unwrap_err()
            .to_string();
        assert!(err.contains("set `idp.columns.termination_date`"), "{err}");
    }

    #[test]
    fn ids_keep_their_leading_zeros_even_when_row_150_is_the_first_non_numeric() {
        let mut text = String::from("Primary Email,Employee Number,Status\n");
        for i in 0..148 {
            text.push_str(&format!("p{i}@x.example,{i:05},ACTIVE\n"));
        }
        text.push_str("last@x.example,X-1,ACTIVE\n");
        let export = read_text("okta", &text, &config("okta")).unwrap();
        assert_eq!(export.people[42].employee_id.as_deref(), Some("00042"));
        assert_eq!(export.people[148].row, 150);
        assert_eq!(export.people[148].employee_id.as_deref(), Some("X-1"));
    }

    #[test]
    fn invalid_utf8_names_the_byte_offset_and_is_never_read_lossily() {
        let bytes = b"Primary Email,Status\nb\xE9@x.example,ACTIVE\n";
        let err = read_bytes(Path::new("f.csv"), bytes, Format::Okta, &config("okta"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`f.csv`, byte offset 22"), "{err}");
        assert!(err.contains("cp1252"), "{err}");
    }

    #[test]
    fn an_empty_export_is_refused() {
        for text in [
            "",
            "Primary Email,Status\n",
            "\u{feff}Primary Email,Status\r\n",
            "[]",
        ] {
            let err = read_text("okta", text, &config("okta")).unwrap_err();
            assert!(matches!(err, IdpError::Empty { .. }), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_bad_termination_date_names_the_row_the_column_and_the_key() {
        let cfg = IdpConfig {
            columns: Columns {
                termination_date: Some("Left On".into()),
                ..Columns::default()
            },
            ..config("generic")
        };
        let err = read_text("generic", "email,Left On\na@x.example,31/12/2026\n", &cfg)
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 2"), "{err}");
        assert!(err.contains("column `Left On`"), "{err}");
        assert!(err.contains("idp.date_format"), "{err}");
        let cfg = IdpConfig {
            date_format: Some("%d/%m/%Y".into()),
            ..cfg
        };
        let export = read_text("generic", "email,Left On\na@x.example,31/12/2026\n", &cfg).unwrap();
        assert_eq!(export.people[0].termination_date, Some(day("2026-12-31")));
    }

    #[test]
    fn a_bad_setting_is_refused_before_reading() {
        let cfg = IdpConfig {
            timezone: "Mars/Olympus".into(),
            ..config("okta")
        };
        let err = read_text("okta", "Primary Email,Status\na,ACTIVE\n", &cfg)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`idp.timezone` = `Mars/Olympus`"), "{err}");
    }

    #[test]
    fn the_okta_people_export_reads_with_its_bom_crlf_and_quoted_newline() {
        let export = fixture("okta-people.csv", &config("okta")).unwrap();
        assert_eq!(export.people.len(), 10);
        let ada = person(&export, "ada.lovelace@acme.example");
        assert_eq!(ada.employee_id.as_deref(), Some("00042"));
        assert_eq!(
            ada.department.as_deref(),
            Some("Research\r\nand Development")
        );
        assert_eq!(ada.aliases, ["ada@personal.example"]);
        assert_eq!(ada.row, 2);
        let jose = person(&export, "jose.nunez@acme.example");
        assert_eq!(
            jose.name.as_deref(),
            Some("Jos\u{e9} N\u{fa}\u{f1}ez"),
            "NFC"
        );
        let terminated: Vec<&str> = export
            .people
            .iter()
            .filter(|p| p.status_terminated)
            .filter_map(|p| p.email.as_deref())
            .collect();
        assert_eq!(
            terminated,
            ["s.suspended@acme.example", "d.deprovisioned@acme.example"]
        );
        let login_only = person(&export, "login.only@acme.example");
        assert!(login_only.aliases.is_empty());
        let keyless = export.people.last().unwrap();
        assert_eq!((keyless.row, keyless.email.as_ref()), (11, None));
        assert_eq!(keyless.name.as_deref(), Some("No Key"));
    }

    #[test]
    fn the_okta_users_api_export_reads_over_its_pages() {
        let export = fixture("okta-users-api.json", &config("okta")).unwrap();
        assert_eq!(export.people.len(), 8);
        let grace = person(&export, "grace.hopper@acme.example");
        assert_eq!(grace.row, 1);
        assert_eq!(grace.employee_id.as_deref(), Some("0007"));
        assert_eq!(grace.aliases, ["grace@navy.example"]);
        assert_eq!(
            grace.last_sign_in.map(|t| t.to_rfc3339()),
            Some("2026-11-29T08:15:00+00:00".into())
        );
        let statuses: Vec<(&str, bool)> = export
            .people
            .iter()
            .map(|p| (p.status.as_deref().unwrap(), p.status_terminated))
            .collect();
        assert_eq!(
            statuses,
            [
                ("ACTIVE", false),
                ("STAGED", false),
                ("PROVISIONED", false),
                ("RECOVERY", false),
                ("LOCKED_OUT", false),
                ("PASSWORD_EXPIRED", false),
                ("SUSPENDED", true),
                ("DEPROVISIONED", true),
            ]
        );
        let last = export.people.last().unwrap();
        assert_eq!(last.row, 8);
        assert_eq!(last.name.as_deref(), Some("Zo\u{eb} D\u{fc}rr"), "NFC");
    }

    #[test]
    fn an_okta_api_user_without_a_status_is_named_by_position_and_id() {
        let text = r#"[{"id":"00u1","status":"ACTIVE","profile":{"login":"a@x.example"}},
                       {"id":"00u2","profile":{"login":"b@x.example"}}]"#;
        let err = read_text("okta", text, &config("okta"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("user 2 (`00u2`)"), "{err}");
        assert!(err.contains("column `status` is empty"), "{err}");
        let err = read_text(
            "okta",
            r#"{"errorCode":"E0000011","errorSummary":"Invalid token provided"}"#,
            &config("okta"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Okta error response"), "{err}");
        let err = read_text("okta", "[{\"id\": 1,", &config("okta"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a JSON user list at line 1"), "{err}");
    }

    #[test]
    fn the_entra_portal_download_falls_back_to_the_upn_and_marks_guests() {
        let export = fixture("entra-portal.csv", &config("entra")).unwrap();
        assert_eq!(export.people.len(), 4);
        let mary = person(&export, "mary.jackson@acme.example");
        assert_eq!(
            mary.employee_id.as_deref(),
            Some("0a1b2c3d-0000-4000-8000-000000000001")
        );
        assert!(!mary.status_terminated && !mary.guest);
        let katherine = person(&export, "k.johnson@acme.example");
        assert_eq!(katherine.name.as_deref(), Some("Katherine Johnson"));
        assert!(person(&export, "d.vaughan@acme.example").status_terminated);
        let guest = &export.people[3];
        assert!(guest.guest);
        assert_eq!(
            guest.email.as_deref(),
            Some("chris_partner.example#EXT#@acme.onmicrosoft.example")
        );
        assert_eq!(guest.aliases, ["chris@partner.example"]);
    }

    #[test]
    fn the_entra_powershell_export_reads_utf16_the_type_line_and_leave_dates_in_its_zone() {
        let cfg = IdpConfig {
            timezone: "America/New_York".into(),
            ..config("entra")
        };
        let export = fixture("entra-powershell.csv", &cfg).unwrap();
        assert_eq!(export.people.len(), 5);
        let spring = person(&export, "n.spring@acme.example");
        assert_eq!(spring.row, 3, "the #TYPE line is row 1");
        assert_eq!(
            spring.employee_id.as_deref(),
            Some("1f000000-0000-4000-8000-000000000001")
        );
        assert_eq!(spring.termination_date, Some(day("2026-03-08")));
        assert_eq!(
            spring.termination_text.as_deref(),
            Some("3/8/2026 2:30:00 AM")
        );
        let autumn = person(&export, "f.autumn@acme.example");
        assert_eq!(autumn.termination_date, Some(day("2026-11-01")));
        let late = person(&export, "late.leaver@acme.example");
        assert_eq!(late.termination_date, Some(day("2026-12-01")), "UTC day");
        assert!(!late.is_terminated(day("2026-11-30")));
        let guest = person(&export, "g.guest@partner.example");
        assert!(guest.guest && guest.status_terminated);
        assert_eq!(
            guest.aliases,
            ["g.guest_partner.example#EXT#@acme.onmicrosoft.example"]
        );
        let keyless = export.people.last().unwrap();
        assert_eq!((keyless.row, keyless.email.as_ref()), (7, None));
    }

    #[test]
    fn the_google_download_reads_either_years_header() {
        let export = fixture("google-2024.csv", &config("google")).unwrap();
        let hedy = person(&export, "hedy.lamarr@acme.example");
        assert_eq!(hedy.employee_id.as_deref(), Some("000123"));
        assert_eq!(hedy.aliases, ["hedy@acme-labs.example"]);
        assert_eq!(
            hedy.last_sign_in.map(|t| t.to_rfc3339()),
            Some("2024-01-31T07:55:13+00:00".into())
        );
        let emilie = person(&export, "emilie@acme.example");
        assert_eq!(emilie.last_sign_in, None, "never logged in");
        assert_eq!(emilie.name.as_deref(), Some("\u{c9}milie du Ch\u{e2}telet"));
        assert!(person(&export, "sus.pended@acme.example").status_terminated);
        assert!(person(&export, "arch.ived@acme.example").status_terminated);

        let old = fixture("google-2019.csv", &config("google")).unwrap();
        assert_eq!(old.people.len(), 2);
        assert!(person(&old, "gone.away@acme.example").status_terminated);
        assert_eq!(person(&old, "old.timer@acme.example").employee_id, None);
    }

    #[test]
    fn the_jumpcloud_group_report_collapses_repeats_but_keeps_conflicts() {
        let export = fixture("jumpcloud-groups.csv", &config("jumpcloud")).unwrap();
        let emails: Vec<&str> = export
            .people
            .iter()
            .filter_map(|p| p.email.as_deref())
            .collect();
        assert_eq!(
            emails,
            [
                "rosalind.franklin@acme.example",
                "staged.sam@acme.example",
                "gone.gus@acme.example",
                "two.faced@acme.example",
                "two.faced@acme.example",
            ]
        );
        assert_eq!(export.rows, 5);
        let rosalind = person(&export, "rosalind.franklin@acme.example");
        assert_eq!(rosalind.row, 2);
        assert_eq!(rosalind.employee_id.as_deref(), Some("0099"));
        assert_eq!(rosalind.department.as_deref(), Some("Structural; Biology"));
        assert_eq!(rosalind.aliases, ["rf@lab.example"]);
        assert!(person(&export, "gone.gus@acme.example").status_terminated);
        assert!(!person(&export, "staged.sam@acme.example").status_terminated);
        let two: Vec<bool> = export.people[3..]
            .iter()
            .map(|p| p.status_terminated)
            .collect();
        assert_eq!(two, [false, true]);
    }

    // Regression: with both a `state` and a `suspended` column, `suspended=true` beside
    // `ACTIVATED` was ignored and the leaver read as active.
    #[test]
    fn a_jumpcloud_user_suspended_by_either_column_is_a_leaver() {
        let text = "username,email,employeeIdentifier,state,suspended\n\
                    bob,bob@acme.example,1,ACTIVATED,true\n\
                    amy,amy@acme.example,2,SUSPENDED,false\n\
                    cat,cat@acme.example,3,ACTIVATED,false\n\
                    dan,dan@acme.example,4,ACTIVATED,\n";
        let export = read_text("jumpcloud", text, &config("jumpcloud")).unwrap();
        assert!(person(&export, "bob@acme.example").status_terminated);
        assert!(person(&export, "amy@acme.example").status_terminated);
        assert!(!person(&export, "cat@acme.example").status_terminated);
        assert!(!person(&export, "dan@acme.example").status_terminated);
        assert_eq!(
            person(&export, "bob@acme.example").status.as_deref(),
            Some("ACTIVATED, suspended true")
        );
    }

    #[test]
    fn the_bamboohr_report_reads_cp1252_and_termination_dates() {
        let err = fixture("bamboohr-report.tsv", &config("bamboohr"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("byte offset"), "{err}");
        assert!(err.contains("cp1252"), "{err}");

        let cfg = IdpConfig {
            encoding: "cp1252".into(),
            ..config("bamboohr")
        };
        let export = fixture("bamboohr-report.tsv", &cfg).unwrap();
        let as_of = day("2026-11-30");
        let renee = person(&export, "renee.faure@acme.example");
        assert_eq!(renee.name.as_deref(), Some("Ren\u{e9}e Faure"));
        assert_eq!(renee.employee_id.as_deref(), Some("00007"));
        assert_eq!(renee.termination_date, None, "0000-00-00 is no date");
        assert!(!renee.is_terminated(as_of));
        let zoe = person(&export, "zoe.oneil@acme.example");
        assert_eq!(zoe.name.as_deref(), Some("Zo\u{eb} O\u{2019}Neil"));
        assert!(zoe.is_terminated(as_of));
        let future = person(&export, "future.leaver@acme.example");
        assert!(!future.is_terminated(as_of), "leaves later");
        assert!(!future.is_terminated(day("2026-12-14")));
        assert!(future.is_terminated(day("2026-12-15")), "from that day on");
        assert!(person(&export, "still.inactive@acme.example").is_terminated(as_of));
        assert!(!person(&export, "con.tractor@acme.example").is_terminated(as_of));
        let no_mail = export.people.last().unwrap();
        assert_eq!(no_mail.email, None);
        assert_eq!(no_mail.employee_id.as_deref(), Some("00012"));
    }

    #[test]
    fn a_generic_export_reads_its_mapping_lists_and_dst_times() {
        let cfg = IdpConfig {
            timezone: "Europe/Berlin".into(),
            date_format: Some("%Y-%m-%d %H:%M".into()),
            status_active: Some(vec!["Employed".into()]),
            status_terminated: Some(vec!["Left".into()]),
            columns: Columns {
                email: Some("Work Email".into()),
                status: Some("State".into()),
                employee_id: Some("Personnel No".into()),
                aliases: Some("Other Emails".into()),
                termination_date: Some("Leaving".into()),
                name: Some("Full Name".into()),
                department: Some("Team".into()),
            },
            ..config("generic")
        };
        let export = fixture("generic-hr.csv", &cfg).unwrap();
        let ines = person(&export, "ines.ortiz@acme.example");
        assert_eq!(ines.name.as_deref(), Some("In\u{e9}s Ortiz"));
        assert_eq!(
            ines.aliases,
            ["i.ortiz@acme.example", "ines@acme-old.example"]
        );
        assert_eq!(ines.employee_id.as_deref(), Some("000501"));
        assert_eq!(ines.department.as_deref(), Some("Platform"));
        assert_eq!(
            person(&export, "k.march@acme.example").termination_date,
            Some(day("2026-03-29"))
        );
        assert_eq!(
            person(&export, "o.october@acme.example").termination_date,
            Some(day("2026-10-25"))
        );
        assert!(person(&export, "left.already@acme.example").status_terminated);
        assert_eq!(export.people.last().unwrap().email, None);

        let defaults = IdpConfig {
            status_active: None,
            status_terminated: None,
            ..cfg
        };
        let err = fixture("generic-hr.csv", &defaults)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`Employed` in column `State`"), "{err}");
    }

    #[test]
    fn without_a_status_column_everyone_in_a_generic_export_is_active() {
        let export = read_text(
            "generic",
            "email\na@x.example\nb@x.example\n",
            &config("generic"),
        )
        .unwrap();
        assert!(export.people.iter().all(|p| !p.status_terminated));
    }

    #[test]
    fn a_blank_status_cell_is_an_error_naming_the_row_in_every_format() {
        for format in ["okta", "entra", "google", "jumpcloud", "bamboohr"] {
            for blank in ["", "  ", "\"\"", "\" \""] {
                let text = status_export(format, blank);
                let err = read_text(format, &text, &config(format))
                    .map(|e| format!("read as {:?}", e.people))
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("export.csv"), "{format} {blank:?}: {err}");
                assert!(err.contains("row 2"), "{format} {blank:?}: {err}");
                assert!(err.contains("is empty"), "{format} {blank:?}: {err}");
            }
        }
        let generic = IdpConfig {
            columns: Columns {
                status: Some("status".into()),
                ..Columns::default()
            },
            ..config("generic")
        };
        let err = read_text("generic", &status_export("generic", ""), &generic)
            .map(|e| format!("read as {:?}", e.people))
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 2") && err.contains("is empty"), "{err}");
    }

    #[test]
    fn a_repeated_or_case_colliding_status_header_is_refused_as_ambiguous() {
        for header in ["Primary Email,Status,Status", "Primary Email,status,Status"] {
            let text = format!("{header}\na@x.example,ACTIVE,DEPROVISIONED\n");
            let err = read_text("okta", &text, &config("okta"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("export.csv"), "{header}: {err}");
            assert!(err.contains("ambiguous"), "{header}: {err}");
            assert!(err.contains("Status`"), "{header}: {err}");
        }
    }

    #[test]
    fn a_repeated_header_the_format_does_not_read_is_no_obstacle() {
        let text = "Primary Email,Status,Note,note\na@x.example,ACTIVE,x,y\n";
        let export = read_text("okta", text, &config("okta")).unwrap();
        assert_eq!(export.rows, 1);
    }

    #[test]
    fn trailing_blank_lines_are_ignored_and_the_count_is_right() {
        for tail in ["\n", "\n\n", "\r\n\r\n", "\n  \n"] {
            let text = format!("Primary Email,Status\na@x.example,ACTIVE{tail}");
            let export = read_text("okta", &text, &config("okta"))
                .unwrap_or_else(|e| panic!("{tail:?}: {e}"));
            assert_eq!(export.rows, 1, "{tail:?}");
        }
        let text = "Primary Email,Status\na@x.example,ACTIVE\nb@x.example,SUSPENDED\n\n";
        let export = read_text("okta", text, &config("okta")).unwrap();
        assert_eq!(export.rows, 2);
        assert!(person(&export, "b@x.example").status_terminated);
        assert_eq!(person(&export, "b@x.example").row, 3);
    }

    #[test]
    fn a_blank_line_between_records_is_refused_naming_its_row() {
        let text = "Primary Email,Status\na@x.example,ACTIVE\n\nb@x.example,SUSPENDED\n";
        let err = read_text("okta", text, &config("okta"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("export.csv"), "{err}");
        assert!(err.contains("row 3: the line is blank"), "{err}");
        let crlf = text.replace('\n', "\r\n");
        let err = read_text("okta", &crlf, &config("okta"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 3: the line is blank"), "{err}");
        let quoted = "Primary Email,Status,Note\na@x.example,ACTIVE,\"two\n\nlines\"\n";
        assert_eq!(read_text("okta", quoted, &config("okta")).unwrap().rows, 1);
    }
}
