//! Configuration: a TOML file, overridden by `HUBREVIEW_<SECTION>_<KEY>` environment
//! variables, overridden by flags. Secrets come only from the environment or from a file
//! named by `<NAME>_FILE`, never from the file or a flag.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration after layering and validation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub scim: ScimConfig,
    pub hub: HubConfig,
    pub idp: IdpConfig,
    pub activity: ActivityConfig,
    pub review: ReviewConfig,
    pub store: StoreConfig,
    pub report: ReportConfig,
    pub mail: MailConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScimConfig {
    /// Base URL, ending in `/v2/scim/2.0` for Docker Hub.
    pub url: String,
    /// Users per page, 1 to 200.
    pub page_size: u32,
    /// Pages fetched at once after the first.
    pub concurrency: u32,
    /// Seconds before one request gives up.
    pub timeout_secs: u64,
    /// Retries for a 5xx, a timeout or a reset, over the whole fetch.
    pub max_retries: u32,
    /// First backoff in milliseconds; doubled on each retry, with jitter.
    pub retry_base_ms: u64,
    /// The longest wait a 429 gets, in seconds, whatever the server asks.
    pub retry_max_wait_secs: u64,
    /// How many times the fetch starts over when `totalResults` changes during it.
    pub max_restarts: u32,
    /// The longest the whole fetch may take, in seconds, retries and restarts included.
    pub deadline_secs: u64,
    /// A PEM file with a private CA to trust besides the built-in roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for ScimConfig {
    fn default() -> Self {
        ScimConfig {
            url: "https://hub.docker.com/v2/scim/2.0".into(),
            page_size: 200,
            concurrency: 4,
            timeout_secs: 30,
            max_retries: 5,
            retry_base_ms: 500,
            retry_max_wait_secs: 60,
            max_restarts: 2,
            deadline_secs: 3600,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdpConfig {
    pub file: Option<PathBuf>,
    pub format: String,
    /// Used when the file has no byte-order mark: `utf-8`, `utf-16le`, `utf-16be` or
    /// `cp1252`.
    pub encoding: String,
    /// `auto` (sniffed from the header line), `,`, `;`, `|` or `tab`.
    pub delimiter: String,
    /// The IANA time zone of dates and times written without an offset.
    pub timezone: String,
    /// chrono's strftime syntax, e.g. `%d/%m/%Y`; the preset's format when unset.
    pub date_format: Option<String>,
    /// What a status the format does not know means: `active` or `terminated`. Unset,
    /// such a status is an error.
    pub unknown_status: Option<String>,
    /// `generic`: the status values meaning active (default: active, enabled, true).
    pub status_active: Option<Vec<String>>,
    /// `generic`: the status values meaning terminated (default: terminated, suspended,
    /// disabled, inactive, false).
    pub status_terminated: Option<Vec<String>>,
    /// Column names for the `generic` format.
    pub columns: Columns,
}

impl Default for IdpConfig {
    fn default() -> Self {
        IdpConfig {
            file: None,
            format: "okta".into(),
            encoding: "utf-8".into(),
            delimiter: "auto".into(),
            timezone: "UTC".into(),
            date_format: None,
            unknown_status: None,
            status_active: None,
            status_terminated: None,
            columns: Columns::default(),
        }
    }
}

/// Column names of a `generic` export. Only `email` is required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Columns {
    pub email: Option<String>,
    pub status: Option<String>,
    pub employee_id: Option<String>,
    pub aliases: Option<String>,
    pub termination_date: Option<String>,
    pub name: Option<String>,
    pub department: Option<String>,
}

/// The Docker Hub organization API, for members, invites and activity. Read only when
/// `org` and `username` are set; the token is `HUBREVIEW_HUB_TOKEN`. Timeouts, retries and
/// the CA file are the `[scim]` ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// Origin of the Hub API; `next` links are followed only within it.
    pub url: String,
    /// The organization's name (namespace).
    pub org: Option<String>,
    /// The Docker ID (or organization name, for an organization access token) the token
    /// belongs to.
    pub username: Option<String>,
    /// Members per page, 1 to 100.
    pub page_size: u32,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            url: "https://hub.docker.com".into(),
            org: None,
            username: None,
            page_size: 100,
        }
    }
}

impl HubConfig {
    /// Whether the Hub API is to be read.
    pub fn configured(&self) -> bool {
        self.org.is_some() || self.username.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActivityConfig {
    /// The Docker Hub members export (or its Insights variant) carrying last sign-in.
    pub file: Option<PathBuf>,
    /// `members` or `insights`.
    pub format: String,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            file: None,
            format: "insights".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewConfig {
    pub idle_days: u32,
    pub max_drop_percent: f64,
    pub max_drop_count: u64,
    /// Price of one seat per month, in the currency of the contract.
    pub seat_price: Option<f64>,
    pub seats_purchased: Option<u64>,
    /// An invite older than this many whole UTC days is a `pending_invite`.
    pub invite_days: u32,
    /// The exceptions file (TOML or CSV) listing accepted findings.
    pub exceptions: Option<PathBuf>,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            idle_days: 90,
            max_drop_percent: 10.0,
            max_drop_count: 5,
            seat_price: None,
            seats_purchased: None,
            invite_days: 14,
            exceptions: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Keep the snapshots and reports of this many newest runs; older ones are pruned.
    pub keep_runs: Option<u64>,
    /// Keep the snapshots and reports of runs started within this many days.
    pub keep_days: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("hubreview.db"),
            keep_runs: None,
            keep_days: None,
        }
    }
}

/// Prometheus metrics for node-exporter's textfile collector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where each run writes its metrics (atomically), e.g. `/var/lib/node_exporter/hubreview.prom`.
    pub textfile: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Each run writes into `<dir>/<YYYYMMDDTHHMMSSZ>/`.
    pub dir: PathBuf,
    /// The organization's name, shown in the report and the mail subject.
    pub organization: String,
    /// Rows shown per section of `report.html`; the CSVs hold all of them.
    pub html_rows: usize,
    /// Start every CSV with a UTF-8 byte order mark, so that Excel reads it as UTF-8.
    pub csv_bom: bool,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            dir: PathBuf::from("reports"),
            organization: String::new(),
            html_rows: 500,
            csv_bom: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// Without a host, messages go to the outbox as `.eml` files.
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    /// `starttls`, `implicit` or `none`; the default follows the port.
    pub tls: Option<String>,
    pub username: Option<String>,
    pub from: Option<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub cc: Vec<String>,
    pub reply_to: Option<String>,
    /// A PEM CA certificate trusted for the relay, besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// Allows `tls = "none"` to a relay that is not loopback.
    pub insecure: bool,
    /// Largest message sent as is; larger ones get their attachments zipped, then dropped.
    pub max_bytes: u64,
    pub outbox: PathBuf,
    pub timeout_secs: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            smtp_host: None,
            smtp_port: None,
            tls: None,
            username: None,
            from: None,
            to: Vec::new(),
            cc: Vec::new(),
            reply_to: None,
            ca_file: None,
            insecure: false,
            max_bytes: crate::mail::DEFAULT_MAX_BYTES,
            outbox: PathBuf::from("outbox"),
            timeout_secs: 30,
        }
    }
}

/// Accepts `to = "a@x"` as well as `to = ["a@x", "b@x"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Secrets, read from the environment only.
#[derive(Clone, Default)]
pub struct Secrets {
    pub scim_token: Option<String>,
    pub hub_token: Option<String>,
    pub smtp_password: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |s: &Option<String>| if s.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Secrets")
            .field("scim_token", &shown(&self.scim_token))
            .field("hub_token", &shown(&self.hub_token))
            .field("smtp_password", &shown(&self.smtp_password))
            .finish()
    }
}

use std::path::Path;

/// The type of a configuration key, for reading it from an environment variable or flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Text,
    Path,
    Integer,
    Float,
    Bool,
    List,
}

/// Every key, as `section.key` (or `section.group.key`), with its type.
const KEYS: &[(&str, KeyType)] = &[
    ("scim.url", KeyType::Text),
    ("scim.page_size", KeyType::Integer),
    ("scim.concurrency", KeyType::Integer),
    ("scim.timeout_secs", KeyType::Integer),
    ("scim.max_retries", KeyType::Integer),
    ("scim.retry_base_ms", KeyType::Integer),
    ("scim.retry_max_wait_secs", KeyType::Integer),
    ("scim.max_restarts", KeyType::Integer),
    ("scim.deadline_secs", KeyType::Integer),
    ("scim.ca_file", KeyType::Path),
    ("hub.url", KeyType::Text),
    ("hub.org", KeyType::Text),
    ("hub.username", KeyType::Text),
    ("hub.page_size", KeyType::Integer),
    ("idp.file", KeyType::Path),
    ("idp.format", KeyType::Text),
    ("idp.encoding", KeyType::Text),
    ("idp.delimiter", KeyType::Text),
    ("idp.timezone", KeyType::Text),
    ("idp.date_format", KeyType::Text),
    ("idp.unknown_status", KeyType::Text),
    ("idp.status_active", KeyType::List),
    ("idp.status_terminated", KeyType::List),
    ("idp.columns.email", KeyType::Text),
    ("idp.columns.status", KeyType::Text),
    ("idp.columns.employee_id", KeyType::Text),
    ("idp.columns.aliases", KeyType::Text),
    ("idp.columns.termination_date", KeyType::Text),
    ("idp.columns.name", KeyType::Text),
    ("idp.columns.department", KeyType::Text),
    ("activity.file", KeyType::Path),
    ("activity.format", KeyType::Text),
    ("review.idle_days", KeyType::Integer),
    ("review.max_drop_percent", KeyType::Float),
    ("review.max_drop_count", KeyType::Integer),
    ("review.seat_price", KeyType::Float),
    ("review.seats_purchased", KeyType::Integer),
    ("review.invite_days", KeyType::Integer),
    ("review.exceptions", KeyType::Path),
    ("store.path", KeyType::Path),
    ("store.keep_runs", KeyType::Integer),
    ("store.keep_days", KeyType::Integer),
    ("report.dir", KeyType::Path),
    ("report.organization", KeyType::Text),
    ("report.html_rows", KeyType::Integer),
    ("report.csv_bom", KeyType::Bool),
    ("mail.smtp_host", KeyType::Text),
    ("mail.smtp_port", KeyType::Integer),
    ("mail.tls", KeyType::Text),
    ("mail.username", KeyType::Text),
    ("mail.from", KeyType::Text),
    ("mail.to", KeyType::List),
    ("mail.cc", KeyType::List),
    ("mail.reply_to", KeyType::Text),
    ("mail.ca_file", KeyType::Path),
    ("mail.insecure", KeyType::Bool),
    ("mail.max_bytes", KeyType::Integer),
    ("mail.outbox", KeyType::Path),
    ("mail.timeout_secs", KeyType::Integer),
    ("metrics.textfile", KeyType::Path),
];

/// Secret names: read from `NAME` or from the file named by `NAME_FILE`.
const SECRETS: [&str; 3] = [
    "HUBREVIEW_SCIM_TOKEN",
    "HUBREVIEW_HUB_TOKEN",
    "HUBREVIEW_SMTP_PASSWORD",
];

/// Every problem found in the configuration, reported at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(problem: String) -> Self {
        ConfigError {
            problems: vec![problem],
        }
    }
}

/// Every configuration key, as `section.key`.
pub fn keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|(k, _)| *k)
}

/// The environment variable that overrides `key`: `scim.page_size` -> `HUBREVIEW_SCIM_PAGE_SIZE`.
pub fn env_name(key: &str) -> String {
    format!("HUBREVIEW_{}", key.replace('.', "_").to_ascii_uppercase())
}

impl Config {
    /// Layers the file (if any), then `HUBREVIEW_*` variables from `env`, then `sets`
    /// (`key=value` flags), and validates the result. Relative paths in the file are
    /// read against the file's folder; the others against the working directory.
    pub fn load(
        file: Option<&Path>,
        env: &[(String, String)],
        sets: &[String],
    ) -> Result<(Config, Secrets), ConfigError> {
        let mut problems = Vec::new();
        let mut table = toml::Table::new();

        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::one(format!("cannot read config file `{}`: {e}", path.display()))
            })?;
            table = toml::from_str(&text).map_err(|e: toml::de::Error| {
                // The message only, never the offending line: it may hold a secret.
                let line = e
                    .span()
                    .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
                let at = line.map(|l| format!(", line {l}")).unwrap_or_default();
                ConfigError::one(format!(
                    "config file `{}`{at}: {}",
                    path.display(),
                    e.message()
                ))
            })?;
            for (section, value) in &table {
                if let Some(t) = value.as_table() {
                    for secret in [
                        "token",
                        "password",
                        "scim_token",
                        "hub_token",
                        "smtp_password",
                    ] {
                        if t.contains_key(secret) {
                            problems.push(format!(
                                "`{section}.{secret}` in `{}`: secrets are never read from the \
                                 config file; set {} (or {}_FILE) in the environment",
                                path.display(),
                                secret_for(section),
                                secret_for(section),
                            ));
                        }
                    }
                }
            }
            let base = path.parent().unwrap_or(Path::new(""));
            for (key, kind) in KEYS {
                if *kind == KeyType::Path
                    && let Some(toml::Value::String(p)) = lookup_mut(&mut table, key)
                    && Path::new(p.as_str()).is_relative()
                    && !base.as_os_str().is_empty()
                {
                    *p = base.join(&*p).display().to_string();
                }
            }
        }

        for (name, value) in env {
            if !name.starts_with("HUBREVIEW_")
                || SECRETS
                    .iter()
                    .any(|s| name == s || *name == format!("{s}_FILE"))
                || name == "HUBREVIEW_CONFIG"
                || name == "HUBREVIEW_LOG"
            {
                continue;
            }
            match KEYS.iter().find(|(k, _)| env_name(k) == *name) {
                Some((key, kind)) => set(&mut table, key, *kind, value, name, &mut problems),
                None => problems.push(format!(
                    "environment variable {name} names no configuration key (known: {})",
                    KEYS.iter()
                        .map(|(k, _)| env_name(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }

        for assignment in sets {
            let Some((key, value)) = assignment.split_once('=') else {
                problems.push(format!("--set `{assignment}`: expected KEY=VALUE"));
                continue;
            };
            let key = key.trim();
            match KEYS.iter().find(|(k, _)| *k == key) {
                Some((key, kind)) => set(
                    &mut table,
                    key,
                    *kind,
                    value,
                    &format!("--set {key}"),
                    &mut problems,
                ),
                None if SECRETS.iter().any(|s| env_name(key) == *s) => problems.push(format!(
                    "--set {key}: secrets are never taken from flags; set {} in the environment",
                    env_name(key)
                )),
                None => problems.push(format!(
                    "--set {key}: no such key (known: {})",
                    KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                )),
            }
        }

        // Wrong types and unknown keys are taken out of the table and reported, so the
        // rest can still be checked and every problem is reported at once.
        check_types(&mut table, &mut problems);
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let mut all = problems.clone();
                    all.push(format!("configuration: {}", e.message()));
                    ConfigError { problems: all }
                })?;
        if let Err(e) = config.validate() {
            problems.extend(e.problems);
        }
        let secrets = match Secrets::from_env(env) {
            Ok(s) => s,
            Err(e) => {
                problems.extend(e.problems);
                Secrets::default()
            }
        };
        if problems.is_empty() {
            Ok((config, secrets))
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Checks ranges and names, reporting every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !(1..=200).contains(&self.scim.page_size) {
            problems.push(format!(
                "`scim.page_size` = {}: must be 1 to 200 (Docker's SCIM API pages at most 200)",
                self.scim.page_size
            ));
        }
        if !(1..=32).contains(&self.scim.concurrency) {
            problems.push(format!(
                "`scim.concurrency` = {}: must be 1 to 32",
                self.scim.concurrency
            ));
        }
        problems.extend(crate::http::userinfo_problem("scim.url", &self.scim.url));
        if self.scim.deadline_secs == 0 {
            problems.push("`scim.deadline_secs` must be at least 1".into());
        }
        if self.scim.timeout_secs == 0 {
            problems.push("`scim.timeout_secs` must be at least 1".into());
        }
        if self.scim.max_restarts > 10 {
            problems.push(format!(
                "`scim.max_restarts` = {}: must be 0 to 10 (an organization that changes \
                 during every fetch needs a quieter time, not more restarts)",
                self.scim.max_restarts
            ));
        }
        if self.scim.retry_max_wait_secs > 3600 {
            problems.push(format!(
                "`scim.retry_max_wait_secs` = {}: must be at most 3600",
                self.scim.retry_max_wait_secs
            ));
        }
        if crate::idp::Format::parse(&self.idp.format).is_none() {
            problems.push(format!(
                "`idp.format` = `{}`: must be one of {}",
                self.idp.format,
                crate::idp::Format::NAMES
            ));
        }
        problems.extend(self.idp.problems());
        problems.extend(crate::hub::config_problems(&self.hub));
        if !["members", "insights"].contains(&self.activity.format.as_str()) {
            problems.push(format!(
                "`activity.format` = `{}`: must be `members` or `insights`",
                self.activity.format
            ));
        }
        if !(0.0..=100.0).contains(&self.review.max_drop_percent) {
            problems.push(format!(
                "`review.max_drop_percent` = {}: must be 0 to 100",
                self.review.max_drop_percent
            ));
        }
        if self
            .review
            .seat_price
            .is_some_and(|p| !p.is_finite() || p < 0.0)
        {
            problems.push("`review.seat_price` must be a positive number".into());
        }
        problems.extend(crate::mail::config_problems(&self.mail));
        for (key, value) in [
            ("store.keep_runs", self.store.keep_runs),
            ("store.keep_days", self.store.keep_days),
        ] {
            if value == Some(0) {
                problems.push(format!(
                    "`{key}` = 0 would prune every run; use at least 1, or leave it unset to \
                     keep everything"
                ));
            }
        }
        if self.report.html_rows == 0 {
            problems.push("`report.html_rows` must be at least 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

impl IdpConfig {
    /// What is wrong with the `[idp]` keys besides the format.
    fn problems(&self) -> Vec<String> {
        use crate::idp::{Encoding, Format, UnknownStatus};
        let mut problems = Vec::new();
        if Encoding::parse(&self.encoding).is_none() {
            problems.push(format!(
                "`idp.encoding` = `{}`: must be one of {}",
                self.encoding,
                Encoding::NAMES
            ));
        }
        if crate::idp::parse_delimiter(&self.delimiter).is_none() {
            problems.push(format!(
                "`idp.delimiter` = `{}`: must be `auto`, `,`, `;`, `|` or `tab`",
                self.delimiter
            ));
        }
        if self.timezone.trim().parse::<chrono_tz::Tz>().is_err() {
            problems.push(format!(
                "`idp.timezone` = `{}`: not an IANA time zone such as `UTC` or `Europe/Berlin`",
                self.timezone
            ));
        }
        if let Some(format) = &self.date_format
            && !crate::idp::valid_date_format(format)
        {
            problems.push(format!(
                "`idp.date_format` = `{format}`: not a date format such as `%d/%m/%Y` \
                     (chrono's strftime syntax)"
            ));
        }
        if let Some(meaning) = &self.unknown_status
            && UnknownStatus::parse(meaning).is_none()
        {
            problems.push(format!(
                "`idp.unknown_status` = `{meaning}`: must be `active` or `terminated`"
            ));
        }
        let generic = Format::parse(&self.format) == Some(Format::Generic);
        for (key, list) in [
            ("idp.status_active", &self.status_active),
            ("idp.status_terminated", &self.status_terminated),
        ] {
            match list {
                Some(_) if !generic => problems.push(format!(
                    "`{key}` is read only by the `generic` format; the other formats have \
                     fixed status tables (set `idp.unknown_status` for values they do not \
                     know)"
                )),
                Some(words) if words.iter().all(|w| w.trim().is_empty()) => {
                    problems.push(format!("`{key}` is empty: list at least one value"))
                }
                _ => {}
            }
        }
        if generic {
            let (active, terminated) = crate::idp::generic_statuses(self);
            let both: Vec<&String> = active.iter().filter(|w| terminated.contains(w)).collect();
            if !both.is_empty() {
                problems.push(format!(
                    "`idp.status_active` and `idp.status_terminated` both list {}: a status \
                     must mean one thing",
                    both.iter()
                        .map(|w| format!("`{w}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        problems
    }
}

fn secret_for(section: &str) -> &'static str {
    match section {
        "hub" => "HUBREVIEW_HUB_TOKEN",
        "mail" | "smtp" => "HUBREVIEW_SMTP_PASSWORD",
        _ => "HUBREVIEW_SCIM_TOKEN",
    }
}

impl Secrets {
    /// Reads each secret from `NAME`, or from the file named by `NAME_FILE`.
    pub fn from_env(env: &[(String, String)]) -> Result<Secrets, ConfigError> {
        let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut problems = Vec::new();
        let mut read = |name: &str| -> Option<String> {
            if let Some(v) = get(name).filter(|v| !v.trim().is_empty()) {
                return Some(v.trim().to_owned());
            }
            let file = get(&format!("{name}_FILE"))?;
            match std::fs::read_to_string(&file) {
                Ok(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
                Ok(_) => {
                    problems.push(format!("{name}_FILE: `{file}` is empty"));
                    None
                }
                Err(e) => {
                    problems.push(format!("{name}_FILE: cannot read `{file}`: {e}"));
                    None
                }
            }
        };
        let secrets = Secrets {
            scim_token: read(SECRETS[0]),
            hub_token: read(SECRETS[1]),
            smtp_password: read(SECRETS[2]),
        };
        if problems.is_empty() {
            Ok(secrets)
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// Removes every value of the wrong type, every unknown key, and every empty path from
/// `table`, and says what was wrong with each.
fn check_types(table: &mut toml::Table, problems: &mut Vec<String>) {
    let known_sections: Vec<&str> = KEYS
        .iter()
        .filter_map(|(key, _)| key.split('.').next())
        .collect();
    let mut unknown = Vec::new();
    let mut secrets = Vec::new();
    for (section, value) in table.iter() {
        if !known_sections.contains(&section.as_str()) {
            unknown.push(section.clone());
            continue;
        }
        let Some(inner) = value.as_table() else {
            problems.push(format!(
                "`{section}` must be a table (a `[{section}]` section)"
            ));
            continue;
        };
        for (key, value) in inner {
            let path = format!("{section}.{key}");
            if let Some(group) = value.as_table() {
                for sub in group.keys() {
                    let full = format!("{path}.{sub}");
                    if !KEYS.iter().any(|(k, _)| *k == full) {
                        unknown.push(full);
                    }
                }
            } else if is_secret_key(key) {
                // Reported where the file is read; taken out so the rest still parses.
                secrets.push(path);
            } else if !KEYS.iter().any(|(k, _)| *k == path) {
                unknown.push(path);
            }
        }
    }
    for key in secrets {
        remove(table, &key);
    }
    for key in unknown {
        problems.push(format!(
            "unknown configuration key `{key}` (known: {})",
            KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        ));
        remove(table, &key);
    }
    for (key, kind) in KEYS {
        let Some(value) = lookup_mut(table, key) else {
            continue;
        };
        let wrong = match (kind, &*value) {
            (KeyType::Text, toml::Value::String(_)) => None,
            (KeyType::Path, toml::Value::String(s)) if s.trim().is_empty() => {
                // An empty path means "not set".
                remove(table, key);
                continue;
            }
            (KeyType::Path, toml::Value::String(_)) => None,
            (KeyType::Integer, toml::Value::Integer(n)) if *n >= 0 => None,
            (KeyType::Integer, toml::Value::Integer(n)) => {
                Some(format!("`{key}` = {n}: must not be negative"))
            }
            (KeyType::Float, toml::Value::Float(_) | toml::Value::Integer(_)) => None,
            (KeyType::Bool, toml::Value::Boolean(_)) => None,
            (KeyType::List, toml::Value::String(_)) => None,
            (KeyType::List, toml::Value::Array(items)) if items.iter().all(|i| i.is_str()) => None,
            (kind, other) => Some(format!(
                "`{key}` = {other}: expected {}",
                match kind {
                    KeyType::Text | KeyType::Path => "a string",
                    KeyType::Integer => "a whole number",
                    KeyType::Float => "a number",
                    KeyType::Bool => "true or false",
                    KeyType::List => "a string or a list of strings",
                }
            )),
        };
        if let Some(problem) = wrong {
            problems.push(problem);
            remove(table, key);
        } else if *kind == KeyType::Float
            && let toml::Value::Integer(n) = value
        {
            *value = toml::Value::Float(*n as f64);
        }
    }
}

fn is_secret_key(key: &str) -> bool {
    [
        "token",
        "password",
        "scim_token",
        "hub_token",
        "smtp_password",
    ]
    .contains(&key)
}

fn remove(table: &mut toml::Table, key: &str) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut current = table;
    for part in parts {
        match current.get_mut(part).and_then(toml::Value::as_table_mut) {
            Some(t) => current = t,
            None => return,
        }
    }
    current.remove(last);
}

fn lookup_mut<'a>(table: &'a mut toml::Table, key: &str) -> Option<&'a mut toml::Value> {
    let mut parts = key.split('.');
    let mut current = table.get_mut(parts.next()?)?;
    for part in parts {
        current = current.as_table_mut()?.get_mut(part)?;
    }
    Some(current)
}

/// Sets `key` in `table` from text, typed as the key wants.
fn set(
    table: &mut toml::Table,
    key: &str,
    kind: KeyType,
    text: &str,
    source: &str,
    problems: &mut Vec<String>,
) {
    let text = text.trim();
    let value = match kind {
        KeyType::Text | KeyType::Path => toml::Value::String(text.to_owned()),
        KeyType::Integer => match text.parse::<i64>() {
            Ok(n) => toml::Value::Integer(n),
            Err(_) => {
                problems.push(format!("{source} = `{text}`: expected a whole number"));
                return;
            }
        },
        KeyType::Float => match text.parse::<f64>() {
            Ok(n) => toml::Value::Float(n),
            Err(_) => {
                problems.push(format!("{source} = `{text}`: expected a number"));
                return;
            }
        },
        KeyType::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => toml::Value::Boolean(true),
            "false" | "no" | "0" => toml::Value::Boolean(false),
            _ => {
                problems.push(format!("{source} = `{text}`: expected true or false"));
                return;
            }
        },
        // A TOML array (`["Left", "Gone"]`) as in the file, or comma-separated words.
        KeyType::List if text.trim_start().starts_with('[') => {
            match toml::from_str::<toml::Table>(&format!("v = {text}")) {
                Ok(mut t) => match t.remove("v") {
                    Some(v @ toml::Value::Array(_)) => v,
                    _ => {
                        problems.push(format!("{source} = `{text}`: expected a list of strings"));
                        return;
                    }
                },
                Err(_) => {
                    problems.push(format!(
                        "{source} = `{text}`: not a TOML list; write `[\"a\", \"b\"]` or `a, b`"
                    ));
                    return;
                }
            }
        }
        KeyType::List => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
    };
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = match entry.as_table_mut() {
            Some(t) => t,
            None => return,
        };
    }
    current.insert(last.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hubreview.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_hub_keys_layer_like_the_others_and_are_checked_together() {
        let (dir, path) = file("[hub]\norg = \"acme\"\nusername = \"bot\"\n");
        let (c, s) = Config::load(
            Some(&path),
            &env(&[
                ("HUBREVIEW_HUB_URL", "http://127.0.0.1:8080"),
                ("HUBREVIEW_HUB_TOKEN", "dckr_pat_x"),
            ]),
            &["hub.page_size=50".into(), "review.invite_days=30".into()],
        )
        .unwrap();
        drop(dir);
        assert_eq!(c.hub.org.as_deref(), Some("acme"));
        assert_eq!(c.hub.url, "http://127.0.0.1:8080");
        assert_eq!(c.hub.page_size, 50);
        assert_eq!(c.review.invite_days, 30);
        assert!(c.hub.configured());
        assert_eq!(s.hub_token.as_deref(), Some("dckr_pat_x"));
        assert_eq!(Config::default().review.invite_days, 14);
        assert_eq!(Config::default().hub.url, "https://hub.docker.com");

        let err = Config::load(
            None,
            &env(&[("HUBREVIEW_HUB_ORG", "acme")]),
            &[
                "hub.page_size=0".into(),
                "hub.url=https://hub.docker.com/v2".into(),
            ],
        )
        .unwrap_err()
        .to_string();
        for needle in ["`hub.username`", "`hub.page_size` = 0", "has a path"] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let (_dir, path) = file("[hub]\ntoken = \"dckr_pat_x\"\n");
        let err = Config::load(Some(&path), &[], &[]).unwrap_err().to_string();
        assert!(err.contains("HUBREVIEW_HUB_TOKEN"), "{err}");
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let (c, _) = Config::load(None, &[], &[]).unwrap();
        assert_eq!(c.scim.page_size, 200);
        assert_eq!(c.review.idle_days, 90);
        assert_eq!(c.review.max_drop_percent, 10.0);
    }

    #[test]
    fn the_environment_overrides_the_file_and_flags_override_both() {
        let (_d, path) = file("[scim]\npage_size = 50\nurl = \"https://a.example/v2/scim/2.0\"\n");
        let (c, _) = Config::load(
            Some(&path),
            &env(&[("HUBREVIEW_SCIM_PAGE_SIZE", "100")]),
            &[],
        )
        .unwrap();
        assert_eq!(c.scim.page_size, 100);
        assert_eq!(c.scim.url, "https://a.example/v2/scim/2.0");
        let (c, _) = Config::load(
            Some(&path),
            &env(&[("HUBREVIEW_SCIM_PAGE_SIZE", "100")]),
            &["scim.page_size=20".into()],
        )
        .unwrap();
        assert_eq!(c.scim.page_size, 20);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let (_d, path) = file("[scim]\npage_size = 500\n[idp]\nformat = \"ldap\"\n");
        let err = Config::load(
            Some(&path),
            &env(&[("HUBREVIEW_REVIEW_IDLE_DAYS", "soon")]),
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 3, "{text}");
        assert!(text.contains("HUBREVIEW_REVIEW_IDLE_DAYS"), "{text}");
        assert!(text.contains("scim.page_size"), "{text}");
        assert!(text.contains("idp.format"), "{text}");
    }

    #[test]
    fn a_secret_in_the_file_is_refused_with_the_variable_to_use() {
        let (_d, path) = file("[scim]\ntoken = \"abc\"\n");
        let err = Config::load(Some(&path), &[], &[]).unwrap_err().to_string();
        assert!(err.contains("HUBREVIEW_SCIM_TOKEN"), "{err}");
        assert!(!err.contains("abc"), "the secret must not be echoed: {err}");
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "from-file\n").unwrap();
        let (_, s) = Config::load(
            None,
            &env(&[
                ("HUBREVIEW_SCIM_TOKEN_FILE", token_file.to_str().unwrap()),
                ("HUBREVIEW_SMTP_PASSWORD", "pw"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(s.scim_token.as_deref(), Some("from-file"));
        assert_eq!(s.smtp_password.as_deref(), Some("pw"));
        assert!(!format!("{s:?}").contains("pw"));
    }

    #[test]
    fn an_unknown_variable_or_flag_key_is_an_error() {
        let err = Config::load(None, &env(&[("HUBREVIEW_SCIM_PAGESIZE", "1")]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("HUBREVIEW_SCIM_PAGESIZE"), "{err}");
        let err = Config::load(None, &[], &["scim.token=abc".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("never taken from flags"), "{err}");
    }

    #[test]
    fn relative_paths_in_the_file_are_read_against_its_folder() {
        let (dir, path) = file("[idp]\nfile = \"okta.csv\"\n[store]\npath = \"/abs/x.db\"\n");
        let (c, _) = Config::load(Some(&path), &[], &[]).unwrap();
        assert_eq!(c.idp.file.unwrap(), dir.path().join("okta.csv"));
        assert_eq!(c.store.path, std::path::PathBuf::from("/abs/x.db"));
    }

    #[test]
    fn a_true_or_false_key_reads_from_the_environment_and_refuses_anything_else() {
        let (c, _) = Config::load(None, &env(&[("HUBREVIEW_MAIL_INSECURE", "true")]), &[]).unwrap();
        assert!(c.mail.insecure);
        let (c, _) = Config::load(None, &[], &["mail.insecure=no".into()]).unwrap();
        assert!(!c.mail.insecure);
        let err = Config::load(None, &env(&[("HUBREVIEW_MAIL_INSECURE", "maybe")]), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HUBREVIEW_MAIL_INSECURE = `maybe`: expected true or false"),
            "{err}"
        );
    }

    #[test]
    fn a_switch_reads_true_or_false_from_the_environment_and_says_what_it_expected() {
        let (c, _) =
            Config::load(None, &env(&[("HUBREVIEW_REPORT_CSV_BOM", "true")]), &[]).unwrap();
        assert!(c.report.csv_bom);
        let (c, _) = Config::load(None, &[], &["report.csv_bom=no".into()]).unwrap();
        assert!(!c.report.csv_bom);
        let (_d, path) = file("[report]\ncsv_bom = true\n");
        let (c, _) = Config::load(Some(&path), &[], &[]).unwrap();
        assert!(c.report.csv_bom);
        let err = Config::load(None, &env(&[("HUBREVIEW_REPORT_CSV_BOM", "maybe")]), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HUBREVIEW_REPORT_CSV_BOM = `maybe`: expected true or false"),
            "{err}"
        );
    }

    #[test]
    fn every_bad_idp_setting_is_reported_at_once_with_its_key() {
        let (_d, path) = file(
            "[idp]\nformat = \"okta\"\nencoding = \"latin9\"\ndelimiter = \"::\"\n\
             timezone = \"Mars/Olympus\"\ndate_format = \"%Q\"\nunknown_status = \"maybe\"\n\
             status_active = [\"Employed\"]\n",
        );
        let err = Config::load(Some(&path), &[], &[]).unwrap_err();
        let text = err.to_string();
        for key in [
            "idp.encoding",
            "idp.delimiter",
            "idp.timezone",
            "idp.date_format",
            "idp.unknown_status",
            "idp.status_active",
        ] {
            assert!(text.contains(&format!("`{key}`")), "{key}: {text}");
        }
        assert_eq!(err.problems.len(), 6, "{text}");
    }

    // Regression: `--set 'idp.status_terminated=["left"]'` became the one status `["left"]`.
    #[test]
    fn a_list_from_a_flag_or_variable_may_be_written_as_a_toml_array() {
        let (c, _) = Config::load(
            None,
            &env(&[("HUBREVIEW_IDP_FORMAT", "generic")]),
            &[r#"idp.status_terminated=["Left", "Gone"]"#.into()],
        )
        .unwrap();
        assert_eq!(
            c.idp.status_terminated,
            Some(vec!["Left".to_string(), "Gone".to_string()])
        );
        let err = Config::load(None, &[], &[r#"mail.to=["a@x.example""#.into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a TOML list"), "{err}");
    }

    #[test]
    fn idp_settings_come_from_the_environment_and_flags_too() {
        let (c, _) = Config::load(
            None,
            &env(&[
                ("HUBREVIEW_IDP_FORMAT", "generic"),
                ("HUBREVIEW_IDP_STATUS_TERMINATED", "Left, Gone"),
                ("HUBREVIEW_IDP_TIMEZONE", "Europe/Berlin"),
            ]),
            &[
                "idp.delimiter=;".into(),
                "idp.unknown_status=terminated".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            c.idp.status_terminated,
            Some(vec!["Left".to_string(), "Gone".to_string()])
        );
        assert_eq!(c.idp.timezone, "Europe/Berlin");
        assert_eq!(c.idp.delimiter, ";");
        assert_eq!(c.idp.unknown_status.as_deref(), Some("terminated"));
    }

    #[test]
    fn a_status_listed_as_both_active_and_terminated_is_refused() {
        let err = Config::load(
            None,
            &env(&[
                ("HUBREVIEW_IDP_FORMAT", "generic"),
                ("HUBREVIEW_IDP_STATUS_ACTIVE", "active, On Leave"),
                ("HUBREVIEW_IDP_STATUS_TERMINATED", "on leave"),
            ]),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("both list `on_leave`"), "{err}");
    }

    #[test]
    fn mail_to_takes_one_address_or_a_list() {
        let (_d, path) = file("[mail]\nto = \"a@x.example\"\n");
        let (c, _) = Config::load(Some(&path), &[], &[]).unwrap();
        assert_eq!(c.mail.to, ["a@x.example"]);
        let (c, _) = Config::load(
            None,
            &env(&[("HUBREVIEW_MAIL_TO", "a@x.example, b@x.example")]),
            &[],
        )
        .unwrap();
        assert_eq!(c.mail.to, ["a@x.example", "b@x.example"]);
    }

    #[test]
    fn type_errors_unknown_keys_and_range_errors_come_together_and_name_their_key() {
        let (_d, path) = file(
            "[scim]\npage_size = 500\ntimeout = 3\n[review]\nidle_days = -3\n[report]\nhtml_rows = \"abc\"\n[mail]\nto = \"not an address\"\n",
        );
        let err = Config::load(Some(&path), &[], &[]).unwrap_err();
        let text = err.to_string();
        for needle in [
            "scim.page_size",
            "unknown configuration key `scim.timeout`",
            "`review.idle_days` = -3: must not be negative",
            "`report.html_rows` = \"abc\": expected a whole number",
            "`mail.to`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn a_toml_syntax_error_never_prints_the_offending_line() {
        let (_d, path) = file("[scim]\nurl = \"https://x.example\"\ntoken = \"FILESECRET-aaa\n");
        let err = Config::load(Some(&path), &[], &[]).unwrap_err().to_string();
        assert!(!err.contains("FILESECRET"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn an_empty_path_from_the_environment_means_unset() {
        let (c, _) = Config::load(None, &env(&[("HUBREVIEW_ACTIVITY_FILE", "")]), &[]).unwrap();
        assert_eq!(c.activity.file, None);
    }

    #[test]
    fn a_secret_in_the_file_does_not_hide_other_problems() {
        let (_d, path) = file("[scim]\ntoken = \"abc\"\npage_size = 0\n");
        let err = Config::load(Some(&path), &[], &[]).unwrap_err().to_string();
        assert!(err.contains("HUBREVIEW_SCIM_TOKEN"), "{err}");
        assert!(err.contains("scim.page_size"), "{err}");
    }
}
