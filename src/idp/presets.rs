//! The formats: which columns each export has, and what its statuses mean.
//!
//! Every preset finds its columns by name (see [`header_key`](super::header_key)),
//! tolerates columns it does not use, and refuses an export that lacks a column it needs,
//! naming the column, the columns found and the key that fixes it. A status that the
//! format's table does not know is an error naming the value and the row, unless
//! `idp.unknown_status` says what it means.

use std::cell::Cell;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tracing::{info, warn};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use super::dates::DateReader;
use super::encoding::Encoding;
use super::table::{Column, Table, parse_delimiter};
use super::{Format, IdpError, Person};
use crate::config::IdpConfig;

/// What an unknown status means, when `idp.unknown_status` says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownStatus {
    Active,
    Terminated,
}

impl UnknownStatus {
    pub fn parse(s: &str) -> Option<UnknownStatus> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Some(UnknownStatus::Active),
            "terminated" => Some(UnknownStatus::Terminated),
            _ => None,
        }
    }
}

/// A status table: the words meaning active and terminated, compared by [`status_key`].
#[derive(Debug, Clone)]
struct Statuses {
    /// What the table reads, for messages: "okta status", "Entra accountEnabled".
    what: &'static str,
    active: Vec<String>,
    terminated: Vec<String>,
    /// The keys that would change the table, for the message of an unknown value.
    keys: &'static str,
}

impl Statuses {
    fn fixed(what: &'static str, active: &[&str], terminated: &[&str], keys: &'static str) -> Self {
        Statuses {
            what,
            active: active.iter().map(|w| status_key(w)).collect(),
            terminated: terminated.iter().map(|w| status_key(w)).collect(),
            keys,
        }
    }

    /// `Some(true)` for a terminated value, `Some(false)` for an active one.
    fn classify(&self, value: &str) -> Option<bool> {
        let key = status_key(value);
        if self.terminated.contains(&key) {
            Some(true)
        } else if self.active.contains(&key) {
            Some(false)
        } else {
            None
        }
    }
}

/// A status reduced for comparison: trimmed, lowercase, spaces and dashes as `_`.
fn status_key(value: &str) -> String {
    value.trim().to_lowercase().replace([' ', '-'], "_")
}

const OKTA_ACTIVE: &[&str] = &[
    "STAGED",
    "PROVISIONED",
    "ACTIVE",
    "RECOVERY",
    "LOCKED_OUT",
    "PASSWORD_EXPIRED",
    // The admin console's labels for PROVISIONED and RECOVERY.
    "Pending user action",
    "Password reset",
];
const OKTA_TERMINATED: &[&str] = &[
    "SUSPENDED",
    "DEPROVISIONED",
    // The admin console's label for DEPROVISIONED.
    "Deactivated",
];
const GENERIC_ACTIVE: &[&str] = &["active", "enabled", "true"];
const GENERIC_TERMINATED: &[&str] = &["terminated", "suspended", "disabled", "inactive", "false"];

/// The status words of the `generic` format: the configured lists, or the defaults.
pub fn generic_statuses(cfg: &IdpConfig) -> (Vec<String>, Vec<String>) {
    let list = |configured: &Option<Vec<String>>, default: &[&str]| match configured {
        Some(words) => words.iter().map(|w| status_key(w)).collect(),
        None => default.iter().map(|w| status_key(w)).collect(),
    };
    (
        list(&cfg.status_active, GENERIC_ACTIVE),
        list(&cfg.status_terminated, GENERIC_TERMINATED),
    )
}

/// How one export is read: the configuration, checked and parsed.
pub struct Settings<'a> {
    pub path: String,
    pub format: Format,
    pub cfg: &'a IdpConfig,
    pub encoding: Encoding,
    pub delimiter: Option<u8>,
    pub dates: DateReader,
    unknown: Option<UnknownStatus>,
    /// How many unknown statuses `idp.unknown_status` decided, for one warning.
    unknown_seen: Cell<usize>,
}

impl<'a> Settings<'a> {
    pub fn from_config(path: &str, format: Format, cfg: &'a IdpConfig) -> Result<Self, IdpError> {
        let bad = |key: &'static str, value: &str, what: String| IdpError::Config {
            key,
            value: value.to_owned(),
            what,
        };
        let encoding = Encoding::parse(&cfg.encoding).ok_or_else(|| {
            bad(
                "encoding",
                &cfg.encoding,
                format!("must be one of {}", Encoding::NAMES),
            )
        })?;
        let delimiter = parse_delimiter(&cfg.delimiter).ok_or_else(|| {
            bad(
                "delimiter",
                &cfg.delimiter,
                "must be `auto`, `,`, `;`, `|` or `tab`".into(),
            )
        })?;
        let timezone = cfg.timezone.trim().parse().map_err(|_| {
            bad(
                "timezone",
                &cfg.timezone,
                "is not an IANA time zone such as `UTC` or `Europe/Berlin`".into(),
            )
        })?;
        let format_text = cfg
            .date_format
            .clone()
            .unwrap_or_else(|| format.date_format().to_owned());
        if !super::dates::valid_format(&format_text) {
            return Err(bad(
                "date_format",
                &format_text,
                "is not a date format such as `%d/%m/%Y` (chrono's strftime syntax)".into(),
            ));
        }
        let unknown = match &cfg.unknown_status {
            None => None,
            Some(text) => Some(UnknownStatus::parse(text).ok_or_else(|| {
                bad(
                    "unknown_status",
                    text,
                    "must be `active` or `terminated` (or unset, to refuse unknown statuses)"
                        .into(),
                )
            })?),
        };
        Ok(Settings {
            path: path.to_owned(),
            format,
            cfg,
            encoding,
            delimiter,
            dates: DateReader {
                format: format_text,
                timezone,
            },
            unknown,
            unknown_seen: Cell::new(0),
        })
    }

    /// Whether `value` of `column` means terminated, by `table`; an empty or unknown
    /// value is decided by `idp.unknown_status`, or refused.
    fn status(&self, value: Option<&str>, column: &str, table: &Statuses) -> Result<bool, String> {
        if let Some(terminated) = value.and_then(|v| table.classify(v)) {
            return Ok(terminated);
        }
        if let Some(unknown) = self.unknown {
            self.unknown_seen.set(self.unknown_seen.get() + 1);
            return Ok(unknown == UnknownStatus::Terminated);
        }
        let what = match value {
            Some(v) => format!("`{v}` in column `{column}` is not a known {}", table.what),
            None => format!("column `{column}` is empty, so the person's status is unknown"),
        };
        Err(format!(
            "{what} (active: {}; terminated: {}); {}, or set `idp.unknown_status` to \
             `active` or `terminated`",
            table.active.join(", "),
            table.terminated.join(", "),
            table.keys
        ))
    }

    /// Logs once how many statuses `idp.unknown_status` decided.
    pub fn report_unknown(&self) {
        let seen = self.unknown_seen.get();
        if seen > 0 {
            warn!(
                path = %self.path,
                people = seen,
                meaning = ?self.unknown,
                "statuses the format does not know were read as set by idp.unknown_status"
            );
        }
    }

    fn row_error(&self, row: usize, what: String) -> IdpError {
        IdpError::Row {
            path: self.path.clone(),
            row,
            what,
        }
    }

    fn missing(&self, table: &Table<'_>, column: &str, key: &'static str) -> IdpError {
        IdpError::MissingColumn {
            path: self.path.clone(),
            format: self.format.as_str(),
            column: column.into(),
            found: table.found(),
            key,
        }
    }
}

/// The columns a preset reads; each is a header index, or `None` when the export lacks
/// it.
#[derive(Default)]
struct Wanted {
    email: Option<usize>,
    /// Used as the email when the email is empty (Okta's login, Entra's UPN); an alias
    /// otherwise.
    fallback_email: Option<usize>,
    /// Further emails; a cell may hold a `;` or `,` separated list.
    aliases: Vec<usize>,
    employee_id: Option<usize>,
    first_name: Option<usize>,
    last_name: Option<usize>,
    display_name: Option<usize>,
    department: Option<usize>,
    termination: Option<usize>,
    last_sign_in: Option<usize>,
    /// The preset's own columns (status and the like), handed to its status rule.
    extra: Vec<Option<usize>>,
}

/// Reads a checked table in its format.
pub fn read_table(s: &Settings<'_>, t: &Table<'_>) -> Result<Vec<Person>, IdpError> {
    match s.format {
        Format::Okta => okta(s, t),
        Format::Entra => entra(s, t),
        Format::Google => google(s, t),
        Format::Jumpcloud => jumpcloud(s, t),
        Format::Bamboohr => bamboohr(s, t),
        Format::Generic => generic(s, t),
    }
}

/// A preset's rule for one row: sets the status (and whatever else the preset knows)
/// from the values of its `extra` columns.
type Rule<'r> = dyn Fn(&[Option<&str>], &mut Person) -> Result<(), String> + 'r;

/// Reads every row of `t` through `w`, then the preset's `rule`.
fn people(
    s: &Settings<'_>,
    t: &Table<'_>,
    w: &Wanted,
    rule: &Rule<'_>,
) -> Result<Vec<Person>, IdpError> {
    let mut indexes = vec![
        w.email,
        w.fallback_email,
        w.employee_id,
        w.first_name,
        w.last_name,
        w.display_name,
        w.department,
        w.termination,
        w.last_sign_in,
    ];
    indexes.extend(w.aliases.iter().map(|a| Some(*a)));
    indexes.extend(w.extra.iter().copied());
    t.refuse_ambiguous(&indexes)?;
    let loaded = t.load(&indexes)?;
    let column = |i: Option<usize>| loaded.column(i);
    let email = column(w.email)?;
    let fallback = column(w.fallback_email)?;
    let employee = column(w.employee_id)?;
    let first = column(w.first_name)?;
    let last = column(w.last_name)?;
    let display = column(w.display_name)?;
    let department = column(w.department)?;
    let termination = column(w.termination)?;
    let sign_in = column(w.last_sign_in)?;
    let aliases: Vec<Column<'_>> = w
        .aliases
        .iter()
        .map(|a| column(Some(*a)))
        .collect::<Result<_, _>>()?;
    let extra: Vec<Column<'_>> = w
        .extra
        .iter()
        .map(|e| column(*e))
        .collect::<Result<_, _>>()?;
    let header = |i: Option<usize>| i.map(|i| t.headers[i].as_str()).unwrap_or("");

    let mut out = Vec::with_capacity(t.records);
    let mut values: Vec<Option<&str>> = Vec::with_capacity(extra.len());
    for i in 0..t.records {
        let row = t.first_row + i;
        let primary = email.at(i).or(fallback.at(i));
        let mut alias_cells: Vec<Option<&str>> = vec![fallback.at(i)];
        alias_cells.extend(aliases.iter().map(|a| a.at(i)));
        let termination_text = termination.at(i);
        let termination_date = match termination_text {
            Some(text) => s.dates.day(text).map_err(|e| {
                s.row_error(row, format!("column `{}`: {e}", header(w.termination)))
            })?,
            None => None,
        };
        let last_sign_in = match sign_in.at(i) {
            Some(text) => sign_in_time(&s.dates, text).map_err(|e| {
                s.row_error(row, format!("column `{}`: {e}", header(w.last_sign_in)))
            })?,
            None => None,
        };
        let mut person = Person {
            row,
            email: primary.map(nfc),
            employee_id: employee.at(i).map(nfc),
            aliases: alias_list(&alias_cells, primary),
            name: full_name(first.at(i), last.at(i), display.at(i)),
            department: department.at(i).map(nfc),
            status: None,
            status_terminated: false,
            termination_date,
            termination_text: termination_date.and(termination_text.map(nfc)),
            guest: false,
            last_sign_in,
        };
        values.clear();
        values.extend(extra.iter().map(|e| e.at(i)));
        rule(&values, &mut person).map_err(|what| s.row_error(row, what))?;
        out.push(person);
    }
    Ok(out)
}

/// Google's and Okta's "never" for a last sign-in is no time, not an error.
fn sign_in_time(
    dates: &DateReader,
    text: &str,
) -> Result<Option<DateTime<Utc>>, super::dates::DateError> {
    let lower = text.trim().to_lowercase();
    if lower.starts_with("never") {
        return Ok(None);
    }
    dates.instant(text)
}

fn okta(s: &Settings<'_>, t: &Table<'_>) -> Result<Vec<Person>, IdpError> {
    let w = Wanted {
        email: t.find(&["Primary Email", "email"]),
        fallback_email: t.find(&["Username", "login"]),
        aliases: t
            .find(&["Secondary Email", "secondEmail"])
            .into_iter()
            .collect(),
        employee_id: t.find(&["Employee Number", "employeeNumber", "Employee ID"]),
        first_name: t.find(&["First Name", "firstName"]),
        last_name: t.find(&["Last Name", "lastName"]),
        display_name: t.find(&["Display Name", "displayName"]),
        department: t.find(&["Department"]),
        extra: vec![t.find(&["Status"])],
        ..Wanted::default()
    };
    if w.email.is_none() && w.fallback_email.is_none() {
        return Err(s.missing(t, "Primary Email", "idp.format"));
    }
    if w.extra[0].is_none() {
        return Err(s.missing(t, "Status", "idp.format"));
    }
    let table = okta_statuses();
    people(s, t, &w, &|v, p| {
        p.status_terminated = s.status(v[0], "Status", &table)?;
        p.status = v[0].map(nfc);
        Ok(())
    })
}

fn okta_statuses() -> Statuses {
    Statuses::fixed(
        "okta status",
        OKTA_ACTIVE,
        OKTA_TERMINATED,
        "check that `idp.format` is the export's",
    )
}

fn entra(s: &Settings<'_>, t: &Table<'_>) -> Result<Vec<Person>, IdpError> {
    let upn = t.find(&["userPrincipalName"]);
    let enabled = t.find(&["accountEnabled"]);
    let w = Wanted {
        email: t.find(&["mail"]),
        fallback_email: upn,
        employee_id: t.find(&["objectId", "id"]),
        first_name: t.find(&["givenName"]),
        last_name: t.find(&["surname"]),
        display_name: t.find(&["displayName"]),
        department: t.find(&["department"]),
        termination: t.find(&["employeeLeaveDateTime"]),
        extra: vec![enabled, t.find(&["userType"]), upn],
        ..Wanted::default()
    };
    if w.email.is_none() && upn.is_none() {
        return Err(s.missing(t, "userPrincipalName", "idp.format"));
    }
    if enabled.is_none() {
        return Err(s.missing(t, "accountEnabled", "idp.format"));
    }
    let table = Statuses::fixed(
        "Entra accountEnabled value",
        &["True"],
        &["False"],
        "check that `idp.format` is the export's",
    );
    people(s, t, &w, &|v, p| {
        p.status_terminated = s.status(v[0], "accountEnabled", &table)?;
        p.status = v[0].map(|e| format!("accountEnabled {e}"));
        let upn = v[2].unwrap_or("");
        p.guest = v[1].is_some_and(|kind| kind.eq_ignore_ascii_case("guest"))
            || upn.to_ascii_uppercase().contains("#EXT#");
        if let Some(invited) = guest_address(upn) {
            push_alias(&mut p.aliases, p.email.as_deref(), &invited);
        }
        Ok(())
    })
}

/// The address a guest was invited with, from a guest UPN such as
/// `jo_partner.example#EXT#@tenant.onmicrosoft.com`: the last `_` stands for the `@`.
fn guest_address(upn: &str) -> Option<String> {
    let at = upn.to_ascii_uppercase().find("#EXT#")?;
    let local = &upn[..at];
    let split = local.rfind('_')?;
    let (user, domain) = (&local[..split], &local[split + 1..]);
    (!user.is_empty() && domain.contains('.')).then(|| nfc(&format!("{user}@{domain}")))
}

fn google(s: &Settings<'_>, t: &Table<'_>) -> Result<Vec<Person>, IdpError> {
    let status = t.find(&["Status"]);
    let w = Wanted {
        email: t.find(&["Email Address", "Primary Email", "Email"]),
        aliases: t.find(&["Work Secondary Email"]).into_iter().collect(),
        employee_id: t.find(&["Employee ID"]),
        first_name: t.find(&["First Name"]),
        last_name: t.find(&["Last Name"]),
        department: t.find(&["Department"]),
        last_sign_in: t.find(&["Last Sign In"]),
        extra: vec![status],
        ..Wanted::default()
    };
    if w.email.is_none() {
        return Err(s.missing(t, "Email Address [Required]", "idp.format"));
    }
    if status.is_none() {
        return Err(s.missing(t, "Status [READ ONLY]", "idp.format"));
    }
    let table = Statuses::fixed(
        "Google Workspace status",
        &["Active"],
        &["Suspended", "Archived"],
        "check that `idp.format` is the export's",
    );
    people(s, t, &w, &|v, p| {
        p.status_terminated = s.status(v[0], "Status [READ ONLY]", &table)?;
        p.status = v[0].map(nfc);
        Ok(())
    })
}

fn jumpcloud(s: &Settings<'_>, t: &Table<'_>) -> Result<Vec<Person>, IdpError> {
    let state = t.find(&["state", "User State", "Account State"]);
    let suspended = t.find(&["suspended"]);
    let w = Wanted {
        email: t.find(&["email", "User Email", "Email Address"]),
        aliases: t
            .find(&["alternateEmail", "Alternate Email"])
            .into_iter()
            .collect(),
        employee_id: t.find(&["employeeIdentifier", "Employee ID"]),
        first_name: t.find(&["firstname", "First Name"]),
        last_name: t.find(&["lastname", "Last Name"]),
        display_name: t.find(&["displayname", "Display Name"]),
        department: t.find(&["department"]),
        extra: vec![state, suspended],
        ..Wanted::default()
    };
    if w.email.is_none() {
        return Err(s.missing(t, "email", "idp.format"));
    }
    if state.is_none() && suspended.is_none() {
        return Err(s.missing(t, "state", "idp.format"));
    }
    let states = Statuses::fixed(
        "JumpCloud state",
        &["STAGED", "ACTIVATED"],
        &["SUSPENDED"],
        "check that `idp.format` is the export's",
    );
    let flags = Statuses::fixed(
        "JumpCloud suspended value",
        &["false"],
        &["true"],
        "check that `idp.format` is the export's",
    );
    // With both columns, either one saying suspended makes the person a leaver: a
    // conflict between them is never read as active.
    let read = people(s, t, &w, &|v, p| {
        let by_state = match state {
            Some(_) => Some(s.status(v[0], "state", &states)?),
            None => None,
        };
        // Beside a state, a blank `suspended` cell says nothing; alone, it is an error.
        let by_flag = match (suspended, v[1]) {
            (Some(_), Some(_)) => Some(s.status(v[1], "suspended", &flags)?),
            (Some(_), None) if state.is_none() => Some(s.status(v[1], "suspended", &flags)?),
            _ => None,
        };
        p.status_terminated = by_state.unwrap_or(false) || by_flag.unwrap_or(false);
        p.status = match (v[0], v[1]) {
            (Some(st), Some(f)) if state.is_some() && suspended.is_some() => {
                Some(format!("{}, suspended {f}", nfc(st)))
            }
            (Some(st), _) if state.is_some() => Some(nfc(st)),
            (_, Some(f)) => Some(format!("suspended {f}")),
            _ => None,
        };
        Ok(())
    })?;
    Ok(collapse_repeats(s, read))
}

/// Report-style JumpCloud exports list a user once per group. Rows that say the same
/// about the same person become one, keeping the first row; rows that differ stay, so a
/// conflict is still reported as a duplicate.
fn collapse_repeats(s: &Settings<'_>, people: Vec<Person>) -> Vec<Person> {
    let before = people.len();
    let mut first_of: HashMap<(Option<String>, Option<String>), Vec<usize>> = HashMap::new();
    let mut out: Vec<Person> = Vec::with_capacity(people.len());
    for person in people {
        let key = (
            person.email.as_deref().map(str::to_lowercase),
            person.employee_id.clone(),
        );
        let kept = first_of.entry(key).or_default();
        let same = kept.iter().any(|&k| {
            let mut other = out[k].clone();
            other.row = person.row;
            other == person
        });
        if !same {
            kept.push(out.len());
            out.push(person);
        }
    }
    if out.len() < before {
        info!(
            path = %s.path,
            rows = before,
            people = out.len(),
            "collapsed the rows that repeat a user once per group"
        );
    }
    out
}

fn bamboohr(s: &Settings<'_>, t: &Table<'_>) -> Result<Vec<Person>, IdpError> {
    let status = t.find(&["status"]);
    let w = Wanted {
        email: t.find(&["workEmail", "Work Email"]),
        employee_id: t.find(&["employeeNumber", "Employee #", "Employee Number"]),
        first_name: t.find(&["firstName", "First Name"]),
        last_name: t.find(&["lastName", "Last Name"]),
        display_name: t.find(&["displayName", "Display Name"]),
        department: t.find(&["department"]),
        termination: t.find(&["terminationDate", "Termination Date"]),
        extra: vec![
            status,
            t.find(&["employmentHistoryStatus", "Employment Status"]),
        ],
        ..Wanted::default()
    };
    if w.email.is_none() {
        return Err(s.missing(t, "workEmail", "idp.format"));
    }
    if status.is_none() {
        return Err(s.missing(t, "status", "idp.format"));
    }
    let table = Statuses::fixed(
        "BambooHR status",
        &["Active"],
        &["Inactive"],
        "check that `idp.format` is the export's",
    );
    people(s, t, &w, &|v, p| {
        let inactive = s.status(v[0], "status", &table)?;
        // The employment status is free text (Full-Time, Contractor...): only
        // Terminated has a meaning here.
        let terminated_employment = v[1].is_some_and(|e| status_key(e) == status_key("Terminated"));
        let leaving = inactive || terminated_employment;
        // A termination dated later keeps the person active until that day; from that day
        // on, the date makes them a leaver.
        p.status_terminated = leaving && p.termination_date.is_none();
        p.status = match (v[0], v[1]) {
            (Some(st), Some(e)) if terminated_employment => Some(nfc(&format!("{st} ({e})"))),
            (st, _) => st.map(nfc),
        };
        Ok(())
    })
}

fn generic(s: &Settings<'_>, t: &Table<'_>) -> Result<Vec<Person>, IdpError> {
    let columns = &s.cfg.columns;
    let wanted = columns.email.as_deref().unwrap_or("email");
    let Some(email) = t.find(&[wanted]) else {
        return Err(s.missing(t, wanted, "idp.columns.email"));
    };
    let optional = |name: &Option<String>, key: &'static str| -> Result<Option<usize>, IdpError> {
        match name {
            None => Ok(None),
            Some(n) => t.find(&[n]).map(Some).ok_or_else(|| s.missing(t, n, key)),
        }
    };
    let status = optional(&columns.status, "idp.columns.status")?;
    let w = Wanted {
        email: Some(email),
        aliases: optional(&columns.aliases, "idp.columns.aliases")?
            .into_iter()
            .collect(),
        employee_id: optional(&columns.employee_id, "idp.columns.employee_id")?,
        display_name: optional(&columns.name, "idp.columns.name")?,
        department: optional(&columns.department, "idp.columns.department")?,
        termination: optional(&columns.termination_date, "idp.columns.termination_date")?,
        extra: vec![status],
        ..Wanted::default()
    };
    let (active, terminated) = generic_statuses(s.cfg);
    let table = Statuses {
        what: "status",
        active,
        terminated,
        keys: "list it in `idp.status_active` or `idp.status_terminated`",
    };
    let status_name = status.map(|i| t.headers[i].clone()).unwrap_or_default();
    people(s, t, &w, &|v, p| {
        // Without a status column, everyone is active.
        if status.is_some() {
            p.status_terminated = s.status(v[0], &status_name, &table)?;
            p.status = v[0].map(nfc);
        }
        Ok(())
    })
}

/// An Okta users API export: the JSON array `GET /api/v1/users` returns, or several
/// pages of it one after the other. A user missing from it is not evidence of anything:
/// the API leaves deprovisioned users out unless asked for them.
pub fn okta_json(s: &Settings<'_>, text: &str) -> Result<Vec<Person>, IdpError> {
    let parse_error = |e: serde_json::Error| IdpError::Parse {
        path: s.path.clone(),
        what: format!(
            "not a JSON user list at line {}, column {}: {e}",
            e.line(),
            e.column()
        ),
    };
    let mut users = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match value.map_err(parse_error)? {
            Value::Array(page) => users.extend(page),
            Value::Object(object) if object.contains_key("errorCode") => {
                return Err(IdpError::Parse {
                    path: s.path.clone(),
                    what: format!(
                        "is an Okta error response ({}), not a user list; export the users \
                         again",
                        object
                            .get("errorSummary")
                            .and_then(Value::as_str)
                            .unwrap_or("no summary")
                    ),
                });
            }
            object @ Value::Object(_) => users.push(object),
            other => {
                return Err(IdpError::Parse {
                    path: s.path.clone(),
                    what: format!("expected a JSON array of users, found `{other}`"),
                });
            }
        }
    }
    let table = okta_statuses();
    let mut people = Vec::with_capacity(users.len());
    let mut deprovisioned = 0usize;
    for (i, user) in users.iter().enumerate() {
        let record = i + 1;
        let text_at = |pointer: &str| {
            user.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let error = |what: String| IdpError::Record {
            path: s.path.clone(),
            record,
            id: text_at("/id").map(str::to_owned),
            what,
        };
        if !user.is_object() {
            return Err(error(format!("expected a user object, found `{user}`")));
        }
        let status = text_at("/status");
        let status_terminated = s.status(status, "status", &table).map_err(error)?;
        if status.is_some_and(|v| status_key(v) == "deprovisioned") {
            deprovisioned += 1;
        }
        let last_sign_in = match text_at("/lastLogin") {
            Some(t) => s
                .dates
                .instant(t)
                .map_err(|e| error(format!("`lastLogin`: {e}")))?,
            None => None,
        };
        let primary = text_at("/profile/email").or(text_at("/profile/login"));
        people.push(Person {
            row: record,
            email: primary.map(nfc),
            employee_id: text_at("/profile/employeeNumber").map(nfc),
            aliases: alias_list(
                &[text_at("/profile/login"), text_at("/profile/secondEmail")],
                primary,
            ),
            name: full_name(
                text_at("/profile/firstName"),
                text_at("/profile/lastName"),
                text_at("/profile/displayName"),
            ),
            department: text_at("/profile/department").map(nfc),
            status: status.map(nfc),
            status_terminated,
            termination_date: None,
            termination_text: None,
            guest: false,
            last_sign_in,
        });
    }
    if deprovisioned == 0 && !people.is_empty() {
        info!(
            path = %s.path,
            "the Okta users API export lists no deprovisioned user; the API leaves them out \
             unless asked, so a Docker account missing from it is reported as shadow, not \
             as a leaver"
        );
    }
    Ok(people)
}

/// `first last`, or whichever there is, or the display name.
fn full_name(first: Option<&str>, last: Option<&str>, display: Option<&str>) -> Option<String> {
    match (first, last) {
        (Some(f), Some(l)) => Some(nfc(&format!("{f} {l}"))),
        (Some(n), None) | (None, Some(n)) => Some(nfc(n)),
        (None, None) => display.map(nfc),
    }
}

/// The emails of `cells` (each may be a `;` or `,` separated list), without the primary
/// email and without repeats.
fn alias_list(cells: &[Option<&str>], primary: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for cell in cells.iter().flatten() {
        for alias in cell.split([';', ',']) {
            push_alias(&mut out, primary, alias);
        }
    }
    out
}

fn push_alias(out: &mut Vec<String>, primary: Option<&str>, alias: &str) {
    let alias = nfc(alias.trim());
    let same = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
    if alias.is_empty()
        || primary.is_some_and(|p| same(p, &alias))
        || out.iter().any(|o| same(o, &alias))
    {
        return;
    }
    out.push(alias);
}

/// The text in Unicode NFC, so that names typed on different systems compare and show
/// alike.
fn nfc(text: &str) -> String {
    match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => text.to_owned(),
        _ => text.nfc().collect(),
    }
}
