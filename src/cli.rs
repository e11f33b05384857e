//! The command line: global options and one subcommand per pipeline step.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::reconcile::Kind;

/// Access reviews and seat reconciliation for Docker Hub organizations.
///
/// Snapshots every Docker Hub user through SCIM, reconciles them with an identity-provider
/// or HR export, and writes a review report (HTML, CSV, JSON) that it emails to reviewers.
#[derive(Debug, Parser)]
#[command(name = "hubreview", version, max_term_width = 100)]
pub struct Cli {
    /// Configuration file (TOML); HUBREVIEW_<SECTION>_<KEY> variables and --set override it
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "HUBREVIEW_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Override one configuration key, e.g. --set review.idle_days=60 (repeatable)
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub sets: Vec<String>,

    /// More log output (-v info, -vv debug)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors in the log
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log format: text for terminals, json for log collectors
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole job: snapshot, read the IdP export, reconcile, report, deliver
    Run(RunArgs),
    /// Fetch a SCIM snapshot into the store (a new run)
    Snapshot(SnapshotArgs),
    /// Reconcile a run's snapshot with the IdP export and store the findings
    Reconcile(ReconcileArgs),
    /// Render a run's report from the store
    Report(RunSelector),
    /// Deliver a run's report by email, or to the outbox
    Send(SendArgs),
    /// Run the whole job against the built-in demo organization (no network, no setup)
    Demo(DemoArgs),
    /// List the runs and snapshots, and the open findings per kind over the last runs
    History(HistoryArgs),
    /// Show what changed between the snapshots of two stored runs
    Diff(DiffArgs),
    /// Check the configuration, the store and every source and relay, changing nothing
    Doctor,
    /// Check a report directory against its manifest.json and the store's record of it
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Review date, YYYY-MM-DD (default: today in UTC)
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,

    /// Let this run through a size-drop guard: scim, idp (repeatable); the report says so
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub accept_drop: Vec<DropSource>,

    /// Write the message to the outbox instead of sending it
    #[arg(long)]
    pub dry_run: bool,

    /// Exit 1 when open findings of these kinds exist (comma-separated, e.g.
    /// terminated_active,shadow); a kind that could not be evaluated counts as failing
    #[arg(long, value_name = "KIND[,KIND]", value_delimiter = ',', value_parser = parse_kind)]
    pub fail_on: Vec<Kind>,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Let this snapshot through the size-drop guard (`snapshot` reads only SCIM)
    #[arg(long, value_name = "SOURCE", value_parser = parse_scim_drop)]
    pub accept_drop: Vec<DropSource>,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The run whose snapshot to reconcile (default: the newest run with a snapshot)
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,

    /// Review date, YYYY-MM-DD (default: today in UTC)
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,

    /// Let this run through a size-drop guard (idp)
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub accept_drop: Vec<DropSource>,

    /// Exit 1 when open findings of these kinds exist (comma-separated); a kind that could
    /// not be evaluated counts as failing
    #[arg(long, value_name = "KIND[,KIND]", value_delimiter = ',', value_parser = parse_kind)]
    pub fail_on: Vec<Kind>,
}

#[derive(Debug, Args)]
pub struct RunSelector {
    /// The run (default: the newest run with a snapshot)
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The run whose report to send (default: the newest run with a report)
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,

    /// Write the message to the outbox instead of sending it
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps its store, reports and outbox
    #[arg(long, value_name = "DIR", default_value = "reports/demo")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// How many runs to list (1 to 100000)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier run (see `hubreview history`)
    #[arg(long, value_name = "RUN")]
    pub from: i64,

    /// The later run
    #[arg(long, value_name = "RUN")]
    pub to: i64,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The report directory of one run, holding manifest.json
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// `--accept-drop` of `snapshot`: only `scim`, the one guard a snapshot has.
fn parse_scim_drop(text: &str) -> Result<DropSource, String> {
    match text {
        "scim" => Ok(DropSource::Scim),
        "idp" => {
            Err("`snapshot` reads only SCIM: `idp` is accepted by `run` and `reconcile`".into())
        }
        other => Err(format!("`{other}` is not a source: use `scim`")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DropSource {
    Scim,
    Idp,
}

impl DropSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DropSource::Scim => "scim",
            DropSource::Idp => "idp",
        }
    }
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    Kind::parse(text.trim()).ok_or_else(|| {
        format!(
            "`{text}` is not a finding kind (known: {})",
            Kind::ALL.map(Kind::as_str).join(", ")
        )
    })
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    use chrono::Datelike as _;
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("`{text}` is not a date in the form YYYY-MM-DD ({e})"))?;
    // Four-digit years only: dates are stored as text and must sort as they compare.
    if !(1000..=9999).contains(&date.year()) {
        return Err(format!("`{text}`: the year must have four digits"));
    }
    Ok(date)
}
