//! Orders the pipeline steps for each command and turns their results into an exit code.
//! Each step owns its work; this module only decides what runs next.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use tracing::{error, info, warn};

use crate::activity::{self, MemberExport};
use crate::cli::{Cli, Command, DropSource, LogFormat};
use crate::config::{Config, Secrets};
use crate::exceptions::{self, ExceptionFile};
use crate::idp::{self, Export};
use crate::lock::{LockError, RunLock};
use crate::mail::{self, Delivery};
use crate::metrics;
use crate::reconcile::{self, Inputs, Kind, Outcome};
use crate::report::{self, InputFile, ReportInput, SnapshotInfo, Written};
use crate::scim::{self, Completeness};
use crate::store::{Retention, RunRow, SnapshotRow, Store, StoreError, TrendPoint};

/// Prints a line on stdout. A closed pipe (`hubreview history | head`) is not an error
/// worth a panic: the rest is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Prints a line on stderr; like [`say!`], a closed stderr is no reason to panic.
macro_rules! esay {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// The exit codes, as documented in the README. When several apply, the first in the
/// order Usage, Locked, Incomplete, Delivery, Findings wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Completed.
    Completed = 0,
    /// Completed, and open findings of a kind named by `--fail-on` exist.
    Findings = 1,
    /// Bad usage, configuration or input.
    Usage = 2,
    /// Could not complete: a source failed, a snapshot was incomplete or refused.
    Incomplete = 3,
    /// Reports written, but delivery failed.
    Delivery = 4,
    /// Another run holds the lock.
    Locked = 5,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// An error that ends a command, with the exit code it gives.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }

    fn usage(e: impl std::fmt::Display) -> Failure {
        Failure::new(Exit::Usage, e.to_string())
    }

    /// A store or report error: the run could not complete.
    fn internal(e: &dyn std::error::Error) -> Failure {
        Failure::new(Exit::Incomplete, crate::http::error_chain(e))
    }
}

type Result<T> = std::result::Result<T, Failure>;

/// Runs the command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(&cli);
    // One TLS crypto provider for reqwest and lettre alike; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            esay!("error: cannot start the async runtime: {e}");
            return Exit::Incomplete.into();
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            esay!("error: {}", crate::http::terminal_text(&failure.message));
            failure.exit.into()
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    // The one summary line per run is logged unless -q, whatever the level.
    let summary = if cli.quiet { "error" } else { "info" };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("HUBREVIEW_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!(
                "hubreview={level},{SUMMARY_TARGET}={summary}"
            ))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        // A closed stderr (`2>&1 | head`) loses the log, never the exit code.
        .log_internal_errors(false);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The tracing target of the one summary line each run logs.
pub const SUMMARY_TARGET: &str = "hubreview::summary";

async fn dispatch(cli: Cli) -> Result<Exit> {
    if let Command::Demo(args) = &cli.command {
        if cli.config.is_some() || !cli.sets.is_empty() {
            warn!(
                "the demo uses its built-in configuration: --config, --set and HUBREVIEW_* settings do not apply"
            );
        }
        return demo(&args.dir).await;
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let loaded = Config::load(cli.config.as_deref(), &env, &cli.sets);
    if let Command::Doctor = cli.command {
        return doctor(cli.config.as_deref(), loaded).await;
    }
    let (config, secrets) = loaded.map_err(Failure::usage)?;

    // Every command that writes the store takes the lock before anything else, and holds
    // it until it returns. `history`, `diff` and `verify` only read, and never wait for it.
    // Sending needs a store that holds the run: never create one, nor its lock's folder.
    if matches!(cli.command, Command::Send(_)) && !config.store.path.is_file() {
        return Err(Failure::usage(format!(
            "no store at `{}`: `send` re-sends a stored run's report; check `store.path`",
            config.store.path.display()
        )));
    }
    let _lock = match &cli.command {
        Command::History(_) | Command::Diff(_) | Command::Verify(_) => None,
        _ => Some(RunLock::acquire(&config.store.path).map_err(lock_failure)?),
    };
    let job = Job {
        config,
        secrets,
        progress: !cli.quiet,
    };
    match cli.command {
        Command::Run(args) => {
            let drops = drops(&args.accept_drop);
            job.run(args.as_of, &drops, args.dry_run, &args.fail_on)
                .await
        }
        Command::Snapshot(args) => job.snapshot_only(&drops(&args.accept_drop)).await,
        Command::Reconcile(args) => job.reconcile_only(
            args.run,
            args.as_of,
            &drops(&args.accept_drop),
            &args.fail_on,
        ),
        Command::Report(args) => job.report_only(args.run),
        Command::Send(args) => job.send_only(args.run, args.dry_run).await,
        Command::History(args) => job.history(args.limit as usize),
        Command::Diff(args) => job.diff(args.from, args.to),
        Command::Verify(args) => {
            let verification =
                crate::verify::run(&args.dir, &job.config.store.path).map_err(Failure::usage)?;
            {
                use std::io::Write as _;
                // File names and manifest fields are data: never raw to the terminal.
                let text = crate::http::terminal_text(&verification.to_string());
                let _ = write!(std::io::stdout(), "{text}");
            }
            // A report that is not what was written counts like open findings: exit 1.
            Ok(if verification.is_clean() {
                Exit::Completed
            } else {
                Exit::Findings
            })
        }
        Command::Demo(_) | Command::Doctor => unreachable!("handled above"),
    }
}

fn lock_failure(e: LockError) -> Failure {
    let exit = match e {
        LockError::Held { .. } => Exit::Locked,
        LockError::Io { .. } => Exit::Incomplete,
        // A setup to mend, which a retry cannot.
        LockError::Symlink { .. } => Exit::Usage,
    };
    Failure::new(exit, crate::http::error_chain(&e))
}

/// `hubreview doctor`: one line per check on stdout; exit 2 when the configuration does
/// not load, 3 when another check fails, else 0.
async fn doctor(
    file: Option<&Path>,
    loaded: std::result::Result<(Config, Secrets), crate::config::ConfigError>,
) -> Result<Exit> {
    let (checks, exit) = match &loaded {
        Err(e) => (crate::doctor::config_failed(e), Exit::Usage),
        Ok((config, secrets)) => {
            let checks = crate::doctor::run(file, config, secrets).await;
            let failed = checks
                .iter()
                .any(|c| c.status == crate::doctor::Status::Fail);
            (
                checks,
                if failed {
                    Exit::Incomplete
                } else {
                    Exit::Completed
                },
            )
        }
    };
    for check in &checks {
        say!("{}", crate::http::terminal_text(&check.to_string()));
    }
    Ok(exit)
}

/// Why `--fail-on` fails a run: each named kind with open findings, and each named kind
/// that was not evaluated or only in part (an unchecked kind is no all clear).
fn fail_on_reasons(outcome: &Outcome, fail_on: &[Kind]) -> Vec<String> {
    let mut kinds = fail_on.to_vec();
    kinds.sort();
    kinds.dedup();
    kinds
        .into_iter()
        .filter_map(|kind| match outcome.counts.get(&kind).copied().flatten() {
            Some(n) if outcome.partial.contains_key(&kind) => Some(format!(
                "{kind}: {n} open, and checked only in part ({})",
                outcome.partial[&kind]
            )),
            Some(0) => None,
            Some(n) => Some(format!("{kind}: {n} open")),
            None => Some(format!(
                "{kind}: not evaluated ({}), so not known to be clear",
                outcome
                    .not_evaluated
                    .get(&kind)
                    .map(String::as_str)
                    .unwrap_or("no reason recorded")
            )),
        })
        .collect()
}

/// The one summary line of a run in the log: status, exit code, counts, duration and
/// report path.
fn log_summary(result: &Result<Summary>, duration: Duration) {
    let duration_secs = (duration.as_secs_f64() * 1000.0).round() / 1000.0;
    match result {
        Ok(s) => {
            let status = match (&s.outcome, s.complete) {
                (Some(_), _) => "complete",
                _ => "incomplete",
            };
            let findings = s
                .outcome
                .as_ref()
                .map(|o| {
                    Kind::ALL
                        .iter()
                        .map(|k| format!("{k}={}", o.count_text(*k, "n/a")))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| "not reconciled".into());
            let report = s
                .report
                .as_ref()
                .map(|r| r.html.display().to_string())
                .unwrap_or_default();
            info!(
                target: SUMMARY_TARGET,
                run_id = s.run_id,
                status,
                exit_code = s.exit as i32,
                accounts = s.accounts,
                open_findings = s.outcome.as_ref().map(open_total).unwrap_or(0),
                findings = %findings,
                duration_secs,
                report = %report,
                reason = %crate::http::terminal_text(s.reason.as_deref().unwrap_or("")),
                "run finished"
            );
        }
        Err(f) => error!(
            target: SUMMARY_TARGET,
            status = "failed",
            exit_code = f.exit as i32,
            duration_secs,
            reason = %crate::http::terminal_text(&f.message),
            "run failed"
        ),
    }
}

/// Removes a pruned run's report directory, only if it looks like one this tool wrote
/// (it holds `summary.json` or `manifest.json`); a directory already gone is fine.
fn remove_report_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.join("summary.json").is_file() && !dir.join("manifest.json").is_file() {
        return Err(std::io::Error::other(
            "it holds neither summary.json nor manifest.json, so it was left alone",
        ));
    }
    std::fs::remove_dir_all(dir)
}

/// Opens the store for a command that only reads it.
fn open_read(path: &Path) -> Result<Option<Store>> {
    match Store::open_existing(path) {
        Ok(store) => Ok(Some(store)),
        Err(StoreError::Missing { .. }) => Ok(None),
        Err(e @ StoreError::NeedsMigration { .. }) => Err(Failure::usage(e)),
        Err(e) => Err(Failure::internal(&e)),
    }
}

fn drops(sources: &[DropSource]) -> Vec<String> {
    let mut v: Vec<String> = sources.iter().map(|s| s.as_str().to_owned()).collect();
    v.sort();
    v.dedup();
    v
}

/// One invocation's configuration and secrets.
pub struct Job {
    pub config: Config,
    pub secrets: Secrets,
    /// Show a progress bar (on a terminal only).
    pub progress: bool,
}

/// What the whole job did, for the caller that prints it.
#[derive(Debug)]
pub struct Summary {
    pub run_id: i64,
    pub exit: Exit,
    pub complete: bool,
    pub reason: Option<String>,
    pub accounts: u64,
    pub outcome: Option<Outcome>,
    pub active_accounts: u64,
    pub report: Option<Written>,
    pub delivery: Option<std::result::Result<Delivery, String>>,
    /// Why `--fail-on` fails the run: one reason per kind, empty when it does not.
    pub fail_on: Vec<String>,
    /// The runs retention pruned after this one.
    pub pruned: Vec<i64>,
}

/// What one `run` works on, for its steps.
#[derive(Clone, Copy)]
struct RunSteps<'a> {
    run_id: i64,
    as_of: NaiveDate,
    token: &'a str,
    export: &'a Export,
    members: Option<&'a MemberExport>,
    drops: &'a [String],
    dry_run: bool,
    fail_on: &'a [Kind],
    /// Why the relay failed its connection test before the fetch, if it did.
    relay_failed: Option<&'a str>,
    exceptions: Option<&'a ExceptionFile>,
}

impl Job {
    fn open_store(&self) -> Result<Store> {
        let store = Store::open(&self.config.store.path).map_err(|e| {
            Failure::usage(format!(
                "{}; check `store.path`",
                crate::http::error_chain(&e)
            ))
        })?;
        let interrupted = store
            .fail_interrupted_runs()
            .map_err(|e| Failure::internal(&e))?;
        if interrupted > 0 {
            warn!(
                runs = interrupted,
                "marked runs interrupted by an earlier crash as failed"
            );
        }
        Ok(store)
    }

    fn token(&self) -> Result<&str> {
        self.secrets.scim_token.as_deref().ok_or_else(|| {
            Failure::usage(
                "no SCIM token: set HUBREVIEW_SCIM_TOKEN (or HUBREVIEW_SCIM_TOKEN_FILE) to a \
                 token generated in Docker Hub's SSO and SCIM settings",
            )
        })
    }

    /// Checks, before anything is fetched, everything a run needs from its configuration
    /// and the file system, and reports every problem at once.
    fn preflight(&self, needs_scim: bool, needs_idp: bool) -> Result<()> {
        let mut problems = Vec::new();
        if needs_scim {
            if self.secrets.scim_token.is_none() {
                problems.push(
                    "no SCIM token: set HUBREVIEW_SCIM_TOKEN (or HUBREVIEW_SCIM_TOKEN_FILE) to a \
                     token generated in Docker Hub's SSO and SCIM settings"
                        .to_owned(),
                );
            }
            problems.extend(control_character_in(
                "SCIM",
                "HUBREVIEW_SCIM_TOKEN",
                self.secrets.scim_token.as_deref(),
            ));
            problems.extend(short_scim_token(self.secrets.scim_token.as_deref()));
            if let Err(e) = crate::scim::check(&self.config.scim) {
                problems.push(e);
            }
            if self.config.hub.configured() {
                match &self.secrets.hub_token {
                    None => problems.push(
                        "`hub.org` and `hub.username` are set but there is no Hub token: set \
                         HUBREVIEW_HUB_TOKEN (or HUBREVIEW_HUB_TOKEN_FILE) to an access token \
                         of `hub.username`, or unset `hub.org` and `hub.username`"
                            .to_owned(),
                    ),
                    token => problems.extend(control_character_in(
                        "Hub",
                        "HUBREVIEW_HUB_TOKEN",
                        token.as_deref(),
                    )),
                }
                if let Err(e) = crate::hub::check(&self.config.hub, &self.config.scim) {
                    problems.push(e);
                }
            }
        }
        if needs_idp {
            match &self.config.idp.file {
                None => problems.push(
                    "no IdP export: set `idp.file` (or HUBREVIEW_IDP_FILE) to the identity \
                     provider's user export"
                        .to_owned(),
                ),
                Some(path) if !path.is_file() => problems.push(format!(
                    "`idp.file` = `{}` is not a readable file",
                    path.display()
                )),
                Some(_) => {}
            }
            if let Some(path) = &self.config.activity.file
                && !path.is_file()
            {
                problems.push(format!(
                    "`activity.file` = `{}` is not a readable file",
                    path.display()
                ));
            }
        }
        for (key, path) in [
            ("report.dir", &self.config.report.dir),
            ("mail.outbox", &self.config.mail.outbox),
        ] {
            if path.exists() && !path.is_dir() {
                problems.push(format!(
                    "`{key}` = `{}` is a file, not a directory",
                    path.display()
                ));
            }
        }
        if self.config.store.path.is_dir() {
            problems.push(format!(
                "`store.path` = `{}` is a directory; name the database file",
                self.config.store.path.display()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Failure::usage(format!(
                "cannot start:\n  - {}",
                problems.join("\n  - ")
            )))
        }
    }

    /// Reads the IdP export and the activity export, before anything is fetched, so that
    /// bad input fails fast.
    fn read_inputs(&self) -> Result<(Export, Option<MemberExport>)> {
        if self.config.idp.file.is_none() {
            return Err(Failure::usage(
                "no IdP export: set `idp.file` (or HUBREVIEW_IDP_FILE) to the identity \
                 provider's user export",
            ));
        }
        let export = idp::read(&self.config.idp).map_err(Failure::usage)?;
        let members = match &self.config.activity.file {
            Some(path) => {
                Some(activity::read(path, &self.config.activity.format).map_err(Failure::usage)?)
            }
            None => None,
        };
        Ok((export, members))
    }

    /// Reads the exceptions file, when one is configured.
    fn read_exceptions(&self) -> Result<Option<ExceptionFile>> {
        match &self.config.review.exceptions {
            Some(path) => Ok(Some(exceptions::read(path).map_err(Failure::usage)?)),
            None => Ok(None),
        }
    }

    /// `hubreview run`: every step on one new run, then the run's summary line in the log
    /// and its metrics.
    pub async fn run(
        &self,
        as_of: Option<NaiveDate>,
        drops: &[String],
        dry_run: bool,
        fail_on: &[Kind],
    ) -> Result<Exit> {
        let started = Instant::now();
        let result = self.run_job(as_of, drops, dry_run, fail_on).await;
        let duration = started.elapsed();
        if let Ok(summary) = &result {
            print_summary(&self.config, summary);
        }
        log_summary(&result, duration);
        self.write_metrics(&result, duration);
        result.map(|summary| summary.exit)
    }

    /// The whole job, returning what it did. A run that fails after it began is recorded
    /// as failed, with the error, before the error is returned.
    pub async fn run_job(
        &self,
        as_of: Option<NaiveDate>,
        drops: &[String],
        dry_run: bool,
        fail_on: &[Kind],
    ) -> Result<Summary> {
        let as_of = as_of.unwrap_or_else(|| Utc::now().date_naive());
        refuse_future(as_of)?;
        self.preflight(true, true)?;
        let token = self.token()?;
        let (export, members) = self.read_inputs()?;
        let relay_failed = self.check_relay(dry_run).await?;
        let exceptions = self.read_exceptions()?;

        let mut store = self.open_store()?;
        refuse_backdated(&store, as_of, None)?;
        let run_id = store
            .begin_run("run", Some(as_of))
            .map_err(|e| Failure::internal(&e))?;
        let steps = RunSteps {
            run_id,
            as_of,
            token,
            export: &export,
            members: members.as_ref(),
            drops,
            dry_run,
            fail_on,
            relay_failed: relay_failed.as_deref(),
            exceptions: exceptions.as_ref(),
        };
        match self.run_steps(&mut store, &steps).await {
            Ok(summary) => Ok(summary),
            Err(failure) => {
                if let Err(e) = store.finish_run(
                    run_id,
                    "failed",
                    Some(&failure.message),
                    failure.exit as i32,
                ) {
                    warn!(run_id, error = %crate::http::error_chain(&e), "cannot mark the run failed");
                }
                Err(failure)
            }
        }
    }

    async fn run_steps(&self, store: &mut Store, steps: &RunSteps<'_>) -> Result<Summary> {
        let RunSteps {
            run_id,
            as_of,
            token,
            export,
            members,
            drops,
            dry_run,
            fail_on,
            relay_failed,
            exceptions,
        } = *steps;
        info!(run_id, %as_of, "run started");
        if let Some(reason) = self.idp_guard(store, run_id, export, drops)? {
            return self
                .refuse(store, run_id, export, reason, dry_run, relay_failed)
                .await;
        }

        let (snapshot_id, completeness) = self.snapshot_step(store, run_id, token, drops).await?;
        let mut summary = Summary {
            run_id,
            exit: Exit::Completed,
            complete: completeness.is_complete(),
            reason: completeness.reason().map(str::to_owned),
            accounts: store
                .snapshot(snapshot_id)
                .ok()
                .flatten()
                .map(|s| s.accounts)
                .unwrap_or(0),
            active_accounts: store
                .snapshot(snapshot_id)
                .ok()
                .flatten()
                .map(|s| s.active_accounts)
                .unwrap_or(0),
            outcome: None,
            report: None,
            delivery: None,
            fail_on: Vec::new(),
            pruned: Vec::new(),
        };

        if completeness.is_complete() {
            let outcome = reconcile_step(
                store,
                run_id,
                snapshot_id,
                export,
                members,
                exceptions,
                as_of,
                &self.config,
            )?;
            summary.fail_on = fail_on_reasons(&outcome, fail_on);
            summary.outcome = Some(outcome);
        } else {
            summary.exit = Exit::Incomplete;
        }

        let (input, written) = self.report_step(store, run_id)?;
        let delivered = self
            .send_step(store, run_id, &input, &written, dry_run, relay_failed)
            .await;
        summary.report = Some(written);
        if let Err(e) = &delivered {
            warn!(error = %e, "delivery failed; the report stays on disk");
            if summary.exit == Exit::Completed {
                summary.exit = Exit::Delivery;
            }
        }
        summary.delivery = Some(delivered);
        for reason in &summary.fail_on {
            warn!(run_id, %reason, "--fail-on");
        }
        if summary.exit == Exit::Completed && !summary.fail_on.is_empty() {
            summary.exit = Exit::Findings;
        }

        let status = if summary.complete {
            "complete"
        } else {
            "incomplete"
        };
        store
            .finish_run(
                run_id,
                status,
                summary.reason.as_deref(),
                summary.exit as i32,
            )
            .map_err(|e| Failure::internal(&e))?;
        summary.pruned = self.prune(store);
        Ok(summary)
    }

    /// Applies retention (`store.keep_runs`, `store.keep_days`): prunes old runs' data in
    /// the store, then removes their report directories. A failure is logged as an error
    /// and does not change the run's exit code: the review itself completed.
    fn prune(&self, store: &mut Store) -> Vec<i64> {
        let retention = Retention {
            keep_runs: self.config.store.keep_runs,
            keep_days: self.config.store.keep_days,
        };
        let pruned = match store.prune(retention, Utc::now()) {
            Ok(p) => p,
            Err(e) => {
                error!(error = %crate::http::error_chain(&e), "retention failed; old runs were kept");
                return Vec::new();
            }
        };
        for run in &pruned {
            if let Some(dir) = &run.report_dir
                && let Err(e) = remove_report_dir(dir)
            {
                error!(
                    run_id = run.run_id,
                    dir = %dir.display(),
                    error = %e,
                    "retention could not remove a report directory; remove it by hand"
                );
            }
            info!(
                run_id = run.run_id,
                "retention pruned the run's snapshot, findings and report"
            );
        }
        pruned.iter().map(|p| p.run_id).collect()
    }

    /// Writes `metrics.textfile`, when set, after a run; a failure is logged as an error.
    fn write_metrics(&self, result: &Result<Summary>, duration: Duration) {
        let Some(path) = &self.config.metrics.textfile else {
            return;
        };
        let last_success = Store::open_existing(&self.config.store.path)
            .and_then(|store| store.last_success())
            .unwrap_or(None);
        let (exit, complete, accounts, outcome) = match result {
            Ok(s) => (
                s.exit,
                s.complete && s.outcome.is_some(),
                Some((s.accounts, s.active_accounts)),
                s.outcome.as_ref(),
            ),
            Err(f) => (f.exit, false, None, None),
        };
        let m = metrics::RunMetrics {
            finished_at: Utc::now(),
            duration,
            exit_code: exit as i32,
            complete,
            last_success,
            accounts,
            outcome,
        };
        if let Err(e) = metrics::write(path, &m) {
            error!(error = %crate::http::error_chain(&e), "metrics not written");
        }
    }

    /// The IdP export's size guard: why `export` is refused, when it has fewer people than
    /// the last export reconciled by more than both thresholds and `--accept-drop idp` was
    /// not given.
    /// An override is recorded in the run only when the guard tripped, so the report's
    /// banner is never a false claim.
    fn idp_guard(
        &self,
        store: &Store,
        run_id: i64,
        export: &Export,
        drops: &[String],
    ) -> Result<Option<String>> {
        let Some((last_run, last)) = store
            .last_reconciled_input("idp")
            .map_err(|e| Failure::internal(&e))?
        else {
            return Ok(None);
        };
        let now = export.rows as u64;
        let Some((dropped, percent)) = shrinkage(last.rows, now, &self.config) else {
            return Ok(None);
        };
        let reason = format!(
            "the IdP export `{}` has {now} people, {dropped} ({percent:.1}%) fewer than the \
             last one reconciled ({} in run {last_run}); more than both \
             review.max_drop_percent ({}) and review.max_drop_count ({})",
            export.path.display(),
            last.rows,
            self.config.review.max_drop_percent,
            self.config.review.max_drop_count
        );
        if drops.iter().any(|d| d == "idp") {
            warn!(%reason, "IdP export size guard overridden by --accept-drop idp");
            store
                .add_accepted_drop(run_id, "idp")
                .map_err(|e| Failure::internal(&e))?;
            return Ok(None);
        }
        Ok(Some(format!(
            "{reason}; if this is real, rerun with --accept-drop idp"
        )))
    }

    /// Ends a run whose IdP export was refused: nothing is fetched or reconciled, the
    /// report says why, and the run exits 3. The refused export is recorded as evidence
    /// but never becomes the guard's baseline, since the run has no outcome.
    async fn refuse(
        &self,
        store: &Store,
        run_id: i64,
        export: &Export,
        reason: String,
        dry_run: bool,
        relay_failed: Option<&str>,
    ) -> Result<Summary> {
        warn!(%reason, "IdP export refused");
        store
            .record_input(run_id, "idp", &idp_input(export))
            .map_err(|e| Failure::internal(&e))?;
        // The reason is stored before the report, which reads it from the run.
        store
            .finish_run(run_id, "incomplete", Some(&reason), Exit::Incomplete as i32)
            .map_err(|e| Failure::internal(&e))?;
        let (input, written) = self.report_step(store, run_id)?;
        let delivered = self
            .send_step(store, run_id, &input, &written, dry_run, relay_failed)
            .await;
        if let Err(e) = &delivered {
            warn!(error = %e, "delivery failed; the report stays on disk");
        }
        store
            .finish_run(run_id, "incomplete", Some(&reason), Exit::Incomplete as i32)
            .map_err(|e| Failure::internal(&e))?;
        Ok(Summary {
            run_id,
            exit: Exit::Incomplete,
            complete: false,
            reason: Some(reason),
            accounts: 0,
            active_accounts: 0,
            outcome: None,
            report: Some(written),
            delivery: Some(delivered),
            fail_on: Vec::new(),
            pruned: Vec::new(),
        })
    }

    /// Fetches a snapshot, applies the size-drop guard, and stores it.
    async fn snapshot_step(
        &self,
        store: &mut Store,
        run_id: i64,
        token: &str,
        drops: &[String],
    ) -> Result<(i64, Completeness)> {
        let taken_at = Utc::now();
        let mut fetched = scim::fetch_all(&self.config.scim, token, self.progress)
            .await
            .map_err(Failure::usage)?;

        if fetched.completeness.is_complete() {
            let previous = store
                .latest_complete_snapshot()
                .map_err(|e| Failure::internal(&e))?;
            let now = fetched.accounts.len() as u64;
            let tripped = if now == 0 {
                Some(
                    "SCIM returned no users at all, and an organization has at least its owner"
                        .to_owned(),
                )
            } else {
                previous.and_then(|p| drop_guard(p.accounts, now, &self.config))
            };
            if let Some(reason) = tripped {
                if drops.iter().any(|d| d == "scim") {
                    warn!(%reason, "size-drop guard overridden by --accept-drop scim");
                    // Recorded only when it let something through, so the report's
                    // banner is never a false claim.
                    store
                        .add_accepted_drop(run_id, "scim")
                        .map_err(|e| Failure::internal(&e))?;
                } else {
                    fetched.completeness = Completeness::Incomplete {
                        reason: format!("{reason}; if this is real, rerun with --accept-drop scim"),
                    };
                }
            }
        }
        // The Hub members and invites are read only for a snapshot that can be reconciled.
        let hub = match (&self.secrets.hub_token, fetched.completeness.is_complete()) {
            (Some(hub_token), true) if self.config.hub.configured() => Some(
                crate::hub::fetch(&self.config.hub, &self.config.scim, hub_token)
                    .await
                    .map_err(Failure::usage)?,
            ),
            _ => None,
        };
        let snapshot_id = store
            .save_snapshot_with_hub(
                run_id,
                &self.config.scim.url,
                taken_at,
                &fetched,
                hub.as_ref(),
            )
            .map_err(|e| Failure::internal(&e))?;
        Ok((snapshot_id, fetched.completeness))
    }

    /// Renders the run's report from the store into its own directory.
    fn report_step(&self, store: &Store, run_id: i64) -> Result<(ReportInput, Written)> {
        let run = load_run(store, run_id)?;
        if run.pruned {
            return Err(Failure::usage(format!(
                "run {run_id} was pruned by retention (`store.keep_runs`, `store.keep_days`): \
                 its findings and report are gone, only its counts and manifest hash remain"
            )));
        }
        let input = report_input(store, &run, &self.config)?;
        // A report directory is evidence: it is never written twice.
        let dir = report_dir(&self.config.report.dir, &run)?;
        let options = report::Options {
            html_rows: self.config.report.html_rows,
            csv_bom: self.config.report.csv_bom,
        };
        let written =
            report::write_with(&dir, &input, &options).map_err(|e| Failure::internal(&e))?;
        let manifest = written
            .files
            .iter()
            .find(|f| f.name == "manifest.json")
            .map(|f| f.sha256.clone())
            .unwrap_or_default();
        store
            .set_report(run_id, &written.dir, &manifest)
            .map_err(|e| Failure::internal(&e))?;
        store
            .set_stage(run_id, "report")
            .map_err(|e| Failure::internal(&e))?;
        Ok((input, written))
    }

    /// Tests the SMTP relay before the long fetch. A mistake in the mail configuration
    /// stops the run (exit 2); a relay that fails the test is logged with its reply, and
    /// the run goes on: its message will go to the outbox. Returns that failure.
    async fn check_relay(&self, dry_run: bool) -> Result<Option<String>> {
        if dry_run || !mail::relay_configured(&self.config.mail) {
            return Ok(None);
        }
        match mail::check_relay(&self.config.mail, &self.secrets).await {
            Ok(check) => {
                info!(relay = %check, "smtp connection test passed");
                Ok(None)
            }
            Err(e) if e.is_configuration() => Err(Failure::usage(crate::http::error_chain(&e))),
            Err(e) => {
                let text = crate::http::error_chain(&e);
                warn!(
                    error = %text,
                    "smtp connection test failed; the run goes on, and the message will go \
                     to the outbox"
                );
                Ok(Some(text))
            }
        }
    }

    /// Delivers the report; on failure the message goes to the outbox and the error is
    /// returned for the exit code. `relay_failed` is the failed connection test, if any.
    async fn send_step(
        &self,
        store: &Store,
        run_id: i64,
        input: &ReportInput,
        written: &Written,
        dry_run: bool,
        relay_failed: Option<&str>,
    ) -> std::result::Result<Delivery, String> {
        let mut mail_config = self.config.mail.clone();
        if dry_run {
            mail_config.smtp_host = None;
        }
        match mail::send_report(&mail_config, &self.secrets, input, written, relay_failed).await {
            Ok(delivered) => {
                let method = match &delivered.delivery {
                    Delivery::Sent { .. } => "smtp",
                    Delivery::Outbox { .. } => "outbox",
                };
                if let Some(note) = &delivered.note {
                    warn!(%note, "the review mail does not carry every report file as it is");
                }
                let _ = store.record_delivery(run_id, method, "ok", &delivered.to_string());
                let _ = store.set_stage(run_id, "send");
                Ok(delivered.delivery)
            }
            Err(undelivered) => {
                let detail = undelivered.to_string();
                let _ = store.record_delivery(run_id, undelivered.method(), "failed", &detail);
                Err(detail)
            }
        }
    }

    /// `hubreview snapshot`: a new run holding only a snapshot.
    async fn snapshot_only(&self, drops: &[String]) -> Result<Exit> {
        if drops.iter().any(|d| d != "scim") {
            return Err(Failure::usage(
                "`snapshot` reads only SCIM: `--accept-drop scim` is the only guard it has",
            ));
        }
        self.preflight(true, false)?;
        let token = self.token()?;
        let mut store = self.open_store()?;
        let run_id = store
            .begin_run("snapshot", None)
            .map_err(|e| Failure::internal(&e))?;
        let stepped = self.snapshot_step(&mut store, run_id, token, drops).await;
        let (snapshot_id, completeness) = match stepped {
            Ok(done) => done,
            Err(failure) => {
                let _ = store.finish_run(
                    run_id,
                    "failed",
                    Some(&failure.message),
                    failure.exit as i32,
                );
                return Err(failure);
            }
        };
        let snapshot = store.snapshot(snapshot_id).ok().flatten();
        let accounts = snapshot.map(|s| s.accounts).unwrap_or(0);
        let (status, exit) = match &completeness {
            Completeness::Complete => ("complete", Exit::Completed),
            Completeness::Incomplete { .. } => ("incomplete", Exit::Incomplete),
        };
        store
            .finish_run(run_id, status, completeness.reason(), exit as i32)
            .map_err(|e| Failure::internal(&e))?;
        match completeness.reason() {
            None => say!("run {run_id}: snapshot {snapshot_id} complete, {accounts} accounts"),
            Some(reason) => say!(
                "run {run_id}: snapshot {snapshot_id} INCOMPLETE ({accounts} accounts received): {reason}"
            ),
        }
        if let Ok(Some(hub)) = store.hub(snapshot_id) {
            for (what, count, completeness) in [
                (
                    "members",
                    hub.members.items.len(),
                    &hub.members.completeness,
                ),
                (
                    "invites",
                    hub.invites.items.len(),
                    &hub.invites.completeness,
                ),
            ] {
                match completeness.reason() {
                    None => say!("run {run_id}: Hub {what} of `{}`: {count}", hub.org),
                    Some(reason) => say!(
                        "run {run_id}: Hub {what} of `{}` INCOMPLETE ({count} received): {reason}",
                        hub.org
                    ),
                }
            }
        }
        Ok(exit)
    }

    /// `hubreview reconcile`: findings for a stored run's snapshot.
    fn reconcile_only(
        &self,
        run: Option<i64>,
        as_of: Option<NaiveDate>,
        drops: &[String],
        fail_on: &[Kind],
    ) -> Result<Exit> {
        self.preflight(false, true)?;
        let (export, members) = self.read_inputs()?;
        let exceptions = self.read_exceptions()?;
        let mut store = self.open_store()?;
        let run = match run {
            Some(id) => load_run(&store, id)?,
            None => store
                .latest_run_with_snapshot()
                .map_err(|e| Failure::internal(&e))?
                .ok_or_else(|| {
                    Failure::usage(
                        "the store holds no snapshot yet: run `hubreview snapshot` first",
                    )
                })?,
        };
        let snapshot_id = run
            .snapshot_id
            .ok_or_else(|| Failure::usage(format!("run {} has no snapshot", run.id)))?;
        let snapshot = store
            .snapshot(snapshot_id)
            .map_err(|e| Failure::internal(&e))?
            .ok_or_else(|| Failure::internal(&std::io::Error::other("snapshot row missing")))?;
        refuse_pruned(&snapshot)?;
        if let Completeness::Incomplete { reason } = &snapshot.completeness {
            return Err(Failure::new(
                Exit::Incomplete,
                format!(
                    "run {}: snapshot {snapshot_id} is incomplete ({reason}); it is never \
                     reconciled. Take a new snapshot with `hubreview snapshot`",
                    run.id
                ),
            ));
        }
        if let Some(dir) = &run.report_dir {
            return Err(Failure::usage(format!(
                "run {} was already reported (`{}`); its findings stay as they were reported. \
                 Start a new run with `hubreview run`, or `hubreview snapshot` then `reconcile`",
                run.id,
                dir.display()
            )));
        }
        if let Some(reason) = self.idp_guard(&store, run.id, &export, drops)? {
            return Err(Failure::new(
                Exit::Incomplete,
                format!("run {}: nothing was reconciled: {reason}", run.id),
            ));
        }
        let as_of = as_of
            .or(run.as_of)
            .unwrap_or_else(|| Utc::now().date_naive());
        refuse_future(as_of)?;
        refuse_backdated(&store, as_of, Some(run.id))?;
        let outcome = reconcile_step(
            &mut store,
            run.id,
            snapshot_id,
            &export,
            members.as_ref(),
            exceptions.as_ref(),
            as_of,
            &self.config,
        )?;
        say!(
            "run {}: reconciled snapshot {snapshot_id} as of {as_of}: {}",
            run.id,
            counts_line(&outcome)
        );
        let reasons = fail_on_reasons(&outcome, fail_on);
        for reason in &reasons {
            say!("fail-on: {reason}");
        }
        Ok(if reasons.is_empty() {
            Exit::Completed
        } else {
            Exit::Findings
        })
    }

    /// `hubreview report`: re-renders a run's report.
    fn report_only(&self, run: Option<i64>) -> Result<Exit> {
        let store = self.open_store()?;
        let run = match run {
            Some(id) => load_run(&store, id)?,
            None => store
                .latest_run_with_snapshot()
                .map_err(|e| Failure::internal(&e))?
                .ok_or_else(|| Failure::usage("the store holds no run with a snapshot yet"))?,
        };
        let snapshot_complete = run
            .snapshot_id
            .and_then(|id| store.snapshot(id).ok().flatten())
            .is_some_and(|s| s.completeness.is_complete());
        let reconciled = store
            .outcome(run.id)
            .map_err(|e| Failure::internal(&e))?
            .is_some();
        if snapshot_complete && !reconciled {
            return Err(Failure::usage(format!(
                "run {} has not been reconciled: run `hubreview reconcile --run {}` first",
                run.id, run.id
            )));
        }
        let (input, written) = self.report_step(&store, run.id)?;
        say!(
            "run {}: report written to {}",
            run.id,
            written.html.display()
        );
        Ok(if input.status == "complete" {
            Exit::Completed
        } else {
            Exit::Incomplete
        })
    }

    /// `hubreview send`: delivers a stored run's report.
    async fn send_only(&self, run: Option<i64>, dry_run: bool) -> Result<Exit> {
        let store = self.open_store()?;
        let run = match run {
            Some(id) => load_run(&store, id)?,
            None => store
                .latest_run_with_report()
                .map_err(|e| Failure::internal(&e))?
                .ok_or_else(|| {
                    Failure::usage(
                        "the store holds no run with a report yet: run `hubreview report` first",
                    )
                })?,
        };
        if run.pruned {
            return Err(Failure::usage(format!(
                "run {} was pruned by retention (`store.keep_runs`, `store.keep_days`): its \
                 report is gone, only its counts and manifest hash remain",
                run.id
            )));
        }
        let Some(dir) = &run.report_dir else {
            return Err(Failure::usage(format!(
                "run {} has no report yet: run `hubreview report --run {}` first",
                run.id, run.id
            )));
        };
        // Send what was written, checked against its manifest; never a new rendering.
        let written =
            report::load(dir).map_err(|e| Failure::new(Exit::Incomplete, e.to_string()))?;
        // The manifest must be the one the store recorded: files rewritten together with
        // their manifest would otherwise go out as the run's report.
        let recorded = store
            .manifest_record(run.id)
            .map_err(|e| Failure::internal(&e))?
            .map(|(_, sha256)| sha256);
        let on_disk = written.file("manifest.json").map(|f| f.sha256.clone());
        if recorded.is_none() || recorded != on_disk {
            return Err(Failure::new(
                Exit::Incomplete,
                format!(
                    "run {}: `{}` is not the report the run wrote: its manifest.json has \
                     SHA-256 {}, the store recorded {}. Nothing was sent; `hubreview verify \
                     {}` shows what changed, and `hubreview report --run {}` writes the \
                     report again into a new directory",
                    run.id,
                    dir.display(),
                    on_disk.as_deref().unwrap_or("(none)"),
                    recorded.as_deref().unwrap_or("nothing"),
                    dir.display(),
                    run.id
                ),
            ));
        }
        let input = report_input(&store, &run, &self.config)?;
        match self
            .send_step(&store, run.id, &input, &written, dry_run, None)
            .await
        {
            Ok(delivery) => {
                say!("run {}: {}", run.id, delivery_line(&delivery));
                Ok(if input.status == "complete" {
                    Exit::Completed
                } else {
                    Exit::Incomplete
                })
            }
            Err(e) => {
                esay!("error: delivery failed: {e}");
                Ok(Exit::Delivery)
            }
        }
    }

    /// `hubreview history`: runs and snapshots, newest first.
    fn history(&self, limit: usize) -> Result<Exit> {
        let Some(store) = open_read(&self.config.store.path)? else {
            say!("no runs in `{}` yet", self.config.store.path.display());
            return Ok(Exit::Completed);
        };
        let runs = store.runs(limit).map_err(|e| Failure::internal(&e))?;
        if runs.is_empty() {
            say!("no runs in `{}` yet", self.config.store.path.display());
            return Ok(Exit::Completed);
        }
        say!(
            "{:>5}  {:<20}  {:<10}  {:<9}  {:<10}  {:<9}  {:>8}  {:>8}  report",
            "run",
            "started (UTC)",
            "as of",
            "command",
            "status",
            "stage",
            "accounts",
            "findings"
        );
        for run in &runs {
            let snapshot = run
                .snapshot_id
                .and_then(|id| store.snapshot(id).ok().flatten());
            let findings = store
                .outcome(run.id)
                .ok()
                .flatten()
                .map(|o| open_total(&o).to_string())
                .unwrap_or_else(|| "-".into());
            say!(
                "{:>5}  {:<20}  {:<10}  {:<9}  {:<10}  {:<9}  {:>8}  {:>8}  {}",
                run.id,
                run.started_at.format("%Y-%m-%d %H:%M:%S"),
                run.as_of
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
                run.command,
                run.status,
                if run.pruned { "pruned" } else { &run.stage },
                snapshot
                    .map(|s| s.accounts.to_string())
                    .unwrap_or_else(|| "-".into()),
                findings,
                match &run.report_dir {
                    Some(_) if run.pruned => "(report removed by retention)".to_string(),
                    Some(d) => d.display().to_string(),
                    None => String::new(),
                }
            );
            if let Some(reason) = &run.reason {
                say!("       reason: {reason}");
            }
        }
        let snapshots = store.snapshots(limit).map_err(|e| Failure::internal(&e))?;
        say!("");
        say!(
            "{:>8}  {:>5}  {:<20}  {:<10}  {:>8}  {:>6}  reason",
            "snapshot",
            "run",
            "taken (UTC)",
            "status",
            "accounts",
            "active"
        );
        for s in snapshots {
            say!(
                "{:>8}  {:>5}  {:<20}  {:<10}  {:>8}  {:>6}  {}",
                s.id,
                s.run_id,
                s.taken_at.format("%Y-%m-%d %H:%M:%S"),
                if s.completeness.is_complete() {
                    "complete"
                } else {
                    "incomplete"
                },
                s.accounts,
                s.active_accounts,
                s.completeness.reason().unwrap_or("")
            );
        }
        let trend = store.trend(limit).map_err(|e| Failure::internal(&e))?;
        if !trend.is_empty() {
            say!();
            say!("{}", trend_table(&trend).trim_end());
        }
        Ok(Exit::Completed)
    }
}

impl Job {
    /// `hubreview diff`: the drift between the snapshots of two runs, as a table.
    fn diff(&self, from: i64, to: i64) -> Result<Exit> {
        let Some(store) = open_read(&self.config.store.path)? else {
            return Err(Failure::usage(format!(
                "no store at `{}` yet; `hubreview history` lists the runs once there are some",
                self.config.store.path.display()
            )));
        };
        let snapshot_of = |id: i64| -> Result<SnapshotRow> {
            let run = load_run(&store, id)?;
            let snapshot_id = run.snapshot_id.ok_or_else(|| {
                Failure::usage(format!(
                    "run {id} has no snapshot; `hubreview history` lists the runs that have one"
                ))
            })?;
            let snapshot = store
                .snapshot(snapshot_id)
                .map_err(|e| Failure::internal(&e))?
                .ok_or_else(|| {
                    Failure::usage(format!("snapshot {snapshot_id} of run {id} is missing"))
                })?;
            refuse_pruned(&snapshot)?;
            if let Some(reason) = snapshot.completeness.reason() {
                return Err(Failure::usage(format!(
                    "snapshot {snapshot_id} of run {id} is incomplete ({reason}); an \
                     incomplete snapshot is never compared: pick a complete one from \
                     `hubreview history`"
                )));
            }
            Ok(snapshot)
        };
        let (before, after) = (snapshot_of(from)?, snapshot_of(to)?);
        let accounts = |s: &SnapshotRow| store.accounts(s.id).map_err(|e| Failure::internal(&e));
        let label = format!(
            "snapshot {} taken {}",
            before.id,
            before.taken_at.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let mut changes = reconcile::drift(&accounts(&before)?, &accounts(&after)?, &label);
        changes.sort_by(|a, b| {
            (change_name(a), &a.email, &a.key).cmp(&(change_name(b), &b.email, &b.key))
        });

        say!(
            "drift from run {from} (snapshot {}, {} accounts, taken {}) to run {to} \
             (snapshot {}, {} accounts, taken {}): {} changes",
            before.id,
            before.accounts,
            before.taken_at.format("%Y-%m-%d %H:%M:%SZ"),
            after.id,
            after.accounts,
            after.taken_at.format("%Y-%m-%d %H:%M:%SZ"),
            changes.len()
        );
        if changes.is_empty() {
            return Ok(Exit::Completed);
        }
        say!(
            "{:<12}  {:<8}  {:<36}  {:<32}  detail",
            "change",
            "severity",
            "account",
            "email"
        );
        for f in &changes {
            say!(
                "{:<12}  {:<8}  {:<36}  {:<32}  {}",
                change_name(f),
                f.severity.as_str(),
                f.account_id.as_deref().unwrap_or("-"),
                f.email.as_deref().unwrap_or("-"),
                f.reason
            );
        }
        let mut by_change: std::collections::BTreeMap<&str, usize> = Default::default();
        for f in &changes {
            *by_change.entry(change_name(f)).or_default() += 1;
        }
        let totals: Vec<String> = by_change.iter().map(|(k, n)| format!("{k} {n}")).collect();
        say!("total: {}", totals.join(", "));
        Ok(Exit::Completed)
    }
}

/// The kind of a drift change: `added`, `removed`, `role`, `team`, `email`, ...
fn change_name(f: &crate::reconcile::Finding) -> &str {
    let change = f.evidence.get("change").map(String::as_str).unwrap_or("");
    change.split(':').next().unwrap_or(change)
}

/// Why a token from `variable` (or the file `<variable>_FILE` names) cannot be sent: it
/// holds a control character, such as a line break inside it.
fn control_character_in(what: &str, variable: &str, token: Option<&str>) -> Option<String> {
    token.filter(|t| t.chars().any(char::is_control)).map(|_| {
        format!(
            "the {what} token ({variable}, or the file {variable}_FILE names) holds a control \
             character (a line break inside it?); set it to the token alone"
        )
    })
}

/// The fewest characters a SCIM token can have. Docker's are far longer; the token is
/// masked out of everything the server sends, so a short one would rewrite user data.
const MIN_SCIM_TOKEN_CHARS: usize = 16;

fn short_scim_token(token: Option<&str>) -> Option<String> {
    let n = token?.chars().count();
    (n < MIN_SCIM_TOKEN_CHARS).then(|| {
        format!(
            "the SCIM token (HUBREVIEW_SCIM_TOKEN, or the file HUBREVIEW_SCIM_TOKEN_FILE names) \
             is {n} characters long, and Docker's are far longer: check that it was copied \
             whole (at least {MIN_SCIM_TOKEN_CHARS} characters)"
        )
    })
}

/// Refuses a review date after tomorrow (UTC; tomorrow for zones ahead of UTC): a typo
/// such as 2062 for 2026 would otherwise make every later, real date "back-dated".
fn refuse_future(as_of: NaiveDate) -> Result<()> {
    let today = Utc::now().date_naive();
    if as_of > today + chrono::Days::new(1) {
        return Err(Failure::usage(format!(
            "--as-of {as_of} lies in the future (today is {today}, UTC): a review date is no \
             later than tomorrow; leave --as-of out for today"
        )));
    }
    Ok(())
}

/// Refuses a review date before that of a run already reconciled (other than `this`):
/// finding history runs forward, and a back-dated review would give findings a first-seen
/// date after their review date.
fn refuse_backdated(store: &Store, as_of: NaiveDate, this: Option<i64>) -> Result<()> {
    let latest = store
        .latest_reconciled_as_of(this)
        .map_err(|e| Failure::internal(&e))?;
    match latest {
        Some((run, date)) if date > as_of => Err(Failure::usage(format!(
            "the review date {as_of} is before run {run}'s ({date}), already reconciled: \
             finding history only runs forward. Use --as-of {date} or later, or a new store \
             for a review of the past"
        ))),
        _ => Ok(()),
    }
}

/// Refuses a snapshot whose accounts retention removed.
fn refuse_pruned(snapshot: &SnapshotRow) -> Result<()> {
    if snapshot.pruned {
        return Err(Failure::usage(format!(
            "snapshot {} of run {} was pruned by retention (`store.keep_runs`, \
             `store.keep_days`): only its counts remain",
            snapshot.id, snapshot.run_id
        )));
    }
    Ok(())
}

/// Open findings per kind over the reconciled runs, oldest first: one column per run.
/// Accepted findings are not counted; `n/a` marks a kind the run did not evaluate.
fn trend_table(trend: &[TrendPoint]) -> String {
    let mut out = String::from("open findings per kind (accepted ones not counted):\n");
    let cell = |text: String| format!("  {text:>10}");
    out.push_str(&format!("{:<20}", "run"));
    for point in trend {
        out.push_str(&cell(point.run_id.to_string()));
    }
    out.push_str(&format!("\n{:<20}", "as of"));
    for point in trend {
        out.push_str(&cell(
            point
                .as_of
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into()),
        ));
    }
    out.push('\n');
    for kind in Kind::ALL {
        out.push_str(&format!("{:<20}", kind.as_str()));
        for point in trend {
            out.push_str(&cell(point.cell(kind, "n/a")));
        }
        out.push('\n');
    }
    out.push_str(&format!("{:<20}", "resolved"));
    for point in trend {
        out.push_str(&cell(point.resolved.to_string()));
    }
    out.push('\n');
    if trend.iter().any(|p| !p.partial.is_empty()) {
        out.push_str("* checked only in part (a source failed): what was found, not a clear\n");
    }
    out
}

/// `hubreview demo`: the whole job against the built-in organization, served by a local
/// SCIM server on 127.0.0.1, through the same steps as `run`. The demo's store is made
/// anew each time, holding the organization as it was a week before the review date, so
/// the output is the same on every day.
pub async fn demo(dir: &Path) -> Result<Exit> {
    use crate::demo;

    let as_of: NaiveDate = demo::DEMO_AS_OF
        .parse()
        .map_err(|e| Failure::usage(format!("demo review date: {e}")))?;
    let io = |what: &str, e: std::io::Error| Failure::usage(format!("demo: {what}: {e}"));
    std::fs::create_dir_all(dir.join("inputs"))
        .map_err(|e| io(&format!("cannot create `{}`", dir.display()), e))?;
    let store_path = dir.join("hubreview.db");
    let _lock = RunLock::acquire(&store_path).map_err(lock_failure)?;
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", store_path.display()));
        if path.exists() {
            std::fs::remove_file(&path)
                .map_err(|e| io(&format!("cannot reset `{}`", path.display()), e))?;
        }
    }
    let okta = dir.join("inputs").join("okta-users.csv");
    std::fs::write(&okta, demo::DEMO_OKTA_CSV)
        .map_err(|e| io(&format!("cannot write `{}`", okta.display()), e))?;

    let options = demo::ServerOptions::default();
    let token = options.token.clone();
    let server = demo::start(demo::demo_baseline(), options)
        .await
        .map_err(|e| io("cannot start the demo SCIM server on 127.0.0.1", e))?;
    let hub_options = demo::hub_api::HubOptions::default();
    let hub_token = hub_options.token.clone();
    let hub = demo::hub_api::start(
        demo::hub_api::demo_members(),
        demo::hub_api::demo_invites(),
        hub_options.clone(),
    )
    .await
    .map_err(|e| io("cannot start the demo Docker Hub API on 127.0.0.1", e))?;

    let mut config = Config::default();
    config.scim.url = server.base_url();
    config.scim.retry_base_ms = 50;
    config.hub.url = hub.origin();
    config.hub.org = Some(hub_options.org);
    config.hub.username = Some(hub_options.username);
    config.idp.file = Some(okta);
    config.idp.format = "okta".into();
    config.review.seat_price = Some(24.0);
    config.review.seats_purchased = Some(520);
    config.store.path = store_path;
    config.report.dir = dir.to_path_buf();
    config.report.organization = "Acme Robotics (demo)".into();
    config.mail.from = Some("hubreview@acmerobotics.example".into());
    config.mail.to = vec!["access-reviews@acmerobotics.example".into()];
    config.mail.outbox = dir.join("outbox");
    let job = Job {
        config,
        secrets: Secrets {
            scim_token: Some(token),
            hub_token: Some(hub_token),
            ..Secrets::default()
        },
        progress: true,
    };

    say!(
        "demo: SCIM server for the demo organization on {}",
        server.base_url()
    );
    say!(
        "demo: Docker Hub members and invites API on {}",
        hub.origin()
    );
    say!("demo: snapshot of the organization a week before the review");
    let exit = job.snapshot_only(&[]).await?;
    if exit != Exit::Completed {
        return Ok(exit);
    }
    // Reconciling the baseline gives the report a trend and its findings an age.
    let baseline: NaiveDate = demo::DEMO_BASELINE_DATE
        .parse()
        .map_err(|e| Failure::usage(format!("demo baseline date: {e}")))?;
    job.reconcile_only(None, Some(baseline), &[], &[])?;
    server.set_users(demo::demo_current());
    say!("demo: the review, as of {as_of}");
    let summary = job.run_job(Some(as_of), &[], false, &[]).await?;
    print_summary(&job.config, &summary);
    server.shutdown().await;
    hub.shutdown().await;
    Ok(summary.exit)
}

/// How the IdP export is recorded with a run: its path, format, SHA-256 and people.
fn idp_input(export: &Export) -> InputFile {
    InputFile {
        // Absolute, as every other input: a relative path says nothing as evidence.
        path: std::path::absolute(&export.path).unwrap_or_else(|_| export.path.clone()),
        format: export.format.as_str().to_owned(),
        sha256: export.sha256.clone(),
        rows: export.rows as u64,
    }
}

/// How much a source shrank, `(fewer, percent)`, when by more than both
/// `review.max_drop_percent` and `review.max_drop_count`.
fn shrinkage(before: u64, now: u64, config: &Config) -> Option<(u64, f64)> {
    let dropped = before.saturating_sub(now);
    if before == 0 || dropped == 0 {
        return None;
    }
    let percent = dropped as f64 * 100.0 / before as f64;
    (percent > config.review.max_drop_percent && dropped > config.review.max_drop_count)
        .then_some((dropped, percent))
}

/// Whether the snapshot shrank by more than both thresholds; the reason if so.
fn drop_guard(before: u64, now: u64, config: &Config) -> Option<String> {
    let dropped = before.saturating_sub(now);
    if before == 0 || dropped == 0 {
        return None;
    }
    let percent = dropped as f64 * 100.0 / before as f64;
    (percent > config.review.max_drop_percent && dropped > config.review.max_drop_count).then(
        || {
            format!(
                "the snapshot has {now} accounts, {dropped} ({percent:.1}%) fewer than the last \
             complete one ({before}); more than both review.max_drop_percent ({}) and \
             review.max_drop_count ({})",
                config.review.max_drop_percent, config.review.max_drop_count
            )
        },
    )
}

#[allow(
    clippy::too_many_arguments,
    reason = "one argument per source the step reads; a struct would only rename them"
)]
fn reconcile_step(
    store: &mut Store,
    run_id: i64,
    snapshot_id: i64,
    export: &Export,
    members: Option<&MemberExport>,
    exceptions: Option<&ExceptionFile>,
    as_of: NaiveDate,
    config: &Config,
) -> Result<Outcome> {
    let accounts = store
        .accounts(snapshot_id)
        .map_err(|e| Failure::internal(&e))?;
    let previous_row = store
        .previous_complete_snapshot(snapshot_id)
        .map_err(|e| Failure::internal(&e))?;
    let previous = match &previous_row {
        Some(s) => Some(store.accounts(s.id).map_err(|e| Failure::internal(&e))?),
        None => None,
    };
    let hub = store.hub(snapshot_id).map_err(|e| Failure::internal(&e))?;
    let hub_sources = HubSources::new(hub.as_ref(), members, config);
    let outcome = reconcile::reconcile(&Inputs {
        accounts: &accounts,
        previous: previous.as_deref(),
        previous_snapshot: previous_row.map(|s| {
            format!(
                "snapshot {} taken {}",
                s.id,
                s.taken_at.format("%Y-%m-%dT%H:%M:%SZ")
            )
        }),
        people: &export.people,
        members: hub_sources.members.as_deref(),
        invites: hub_sources.invites.as_deref(),
        unavailable: hub_sources.unavailable.clone(),
        review: &config.review,
        exceptions,
        as_of,
    })
    .map_err(|e| Failure::internal(&e))?;

    store
        .record_input(run_id, "idp", &idp_input(export))
        .map_err(|e| Failure::internal(&e))?;
    if let Some(m) = members {
        let input = InputFile {
            path: std::path::absolute(&m.path).unwrap_or_else(|_| m.path.clone()),
            format: m.format.clone(),
            sha256: m.sha256.clone(),
            rows: m.members.len() as u64,
        };
        store
            .record_input(run_id, "activity", &input)
            .map_err(|e| Failure::internal(&e))?;
    }
    if let Some(file) = exceptions {
        let input = InputFile {
            path: file.path.clone(),
            format: "exceptions".into(),
            sha256: file.sha256.clone(),
            rows: file.exceptions.len() as u64,
        };
        store
            .record_input(run_id, "exceptions", &input)
            .map_err(|e| Failure::internal(&e))?;
    }
    store
        .save_outcome(run_id, as_of, &outcome)
        .map_err(|e| Failure::internal(&e))?;
    Ok(outcome)
}

/// The members and invites one reconciliation reads: the Hub API's (stored with the
/// snapshot) when it was read, with the export's activity where the API has none; else the
/// export's members. A Hub listing that is incomplete makes its kinds "not evaluated".
struct HubSources {
    members: Option<Vec<crate::activity::Member>>,
    invites: Option<Vec<crate::hub::Invite>>,
    unavailable: Vec<(Kind, String)>,
}

impl HubSources {
    fn new(
        hub: Option<&crate::store::HubSnapshot>,
        export: Option<&MemberExport>,
        config: &Config,
    ) -> HubSources {
        let export_members = export.map(|m| m.members.clone());
        let Some(hub) = hub else {
            let mut unavailable = Vec::new();
            if config.hub.configured() {
                // Configured now, but this snapshot was taken without it.
                unavailable.push((
                    Kind::PendingInvite,
                    "no invite data: the Hub API was not read with this run's snapshot".into(),
                ));
                if export_members.is_none() {
                    // The members the configuration counts on are missing from this run:
                    // a failed source, not a choice (leavers still members go unseen).
                    let why = "the Docker Hub members list was not read with this run's \
                               snapshot (taken without `[hub]`): run again with `[hub]`";
                    unavailable.push((Kind::IdleSeat, why.into()));
                    unavailable.push((Kind::NotProvisioned, why.into()));
                }
            }
            return HubSources {
                members: export_members,
                invites: None,
                unavailable,
            };
        };
        let mut unavailable = Vec::new();
        let members = match hub.members.completeness.reason() {
            None => Some(crate::hub::merge_activity(
                hub.members.values().into_iter().cloned().collect(),
                export.map(|m| m.members.as_slice()),
            )),
            Some(reason) => {
                let why = format!(
                    "the Docker Hub members list of `{}` was incomplete ({reason}); nothing \
                     was concluded from it",
                    hub.org
                );
                unavailable.push((Kind::IdleSeat, why.clone()));
                unavailable.push((Kind::NotProvisioned, why));
                None
            }
        };
        let invites = match hub.invites.completeness.reason() {
            None => Some(hub.invites.values().into_iter().cloned().collect()),
            Some(reason) => {
                unavailable.push((
                    Kind::PendingInvite,
                    format!(
                        "the Docker Hub invites of `{}` were not read completely ({reason})",
                        hub.org
                    ),
                ));
                None
            }
        };
        HubSources {
            members,
            invites,
            unavailable,
        }
    }
}

fn load_run(store: &Store, id: i64) -> Result<RunRow> {
    store
        .run(id)
        .map_err(|e| Failure::internal(&e))?
        .ok_or_else(|| {
            Failure::usage(format!(
                "no run {id} in the store; `hubreview history` lists them"
            ))
        })
}

/// Gathers what the report shows about a run from the store.
fn report_input(store: &Store, run: &RunRow, config: &Config) -> Result<ReportInput> {
    let snapshot = match run.snapshot_id {
        Some(id) => store.snapshot(id).map_err(|e| Failure::internal(&e))?,
        None => None,
    };
    let outcome = store.outcome(run.id).map_err(|e| Failure::internal(&e))?;
    let snapshot_sha256 = match &snapshot {
        Some(s) => Some(
            store
                .snapshot_sha256(s.id)
                .map_err(|e| Failure::internal(&e))?,
        ),
        None => None,
    };
    let internal = |e: crate::store::StoreError| Failure::internal(&e);
    // Only what was recorded of each listing: the report needs no members.
    let listings = match &snapshot {
        Some(s) => store.hub_listings(s.id).map_err(internal)?,
        None => Vec::new(),
    };
    let hub_info = listings.first().map(|first| {
        let listing = |name: &str| {
            listings.iter().find(|l| l.listing == name).map_or(
                report::HubListing {
                    status: "incomplete".into(),
                    reason: Some("not read".into()),
                    received: 0,
                    count: None,
                },
                |l| report::HubListing {
                    status: if l.completeness.is_complete() {
                        "complete"
                    } else {
                        "incomplete"
                    }
                    .into(),
                    reason: l.completeness.reason().map(str::to_owned),
                    received: l.items,
                    count: l.count,
                },
            )
        };
        report::HubInfo {
            url: first.url.clone(),
            org: first.org.clone(),
            members: listing("members"),
            invites: listing("invites"),
        }
    });
    let (status, reason) = match (&snapshot, &outcome) {
        (Some(s), _) if !s.completeness.is_complete() => {
            ("incomplete", s.completeness.reason().map(str::to_owned))
        }
        (_, Some(_)) => ("complete", None),
        (None, None) => (
            "incomplete",
            Some(
                run.reason
                    .clone()
                    .unwrap_or_else(|| "no snapshot was taken".to_owned()),
            ),
        ),
        (Some(_), None) => (
            "incomplete",
            Some(
                run.reason
                    .clone()
                    .unwrap_or_else(|| "the snapshot was not reconciled".into()),
            ),
        ),
    };
    Ok(ReportInput {
        organization: if config.report.organization.trim().is_empty() {
            "Docker Hub organization".into()
        } else {
            config.report.organization.clone()
        },
        run_id: run.id,
        status: status.into(),
        reason,
        as_of: run.as_of.unwrap_or_else(|| run.started_at.date_naive()),
        generated_at: Utc::now(),
        snapshot: snapshot.map(|s| SnapshotInfo {
            id: s.id,
            taken_at: s.taken_at,
            status: if s.completeness.is_complete() {
                "complete"
            } else {
                "incomplete"
            }
            .into(),
            accounts: s.accounts,
            active_accounts: s.active_accounts,
            total_results: s.total_results,
            sha256: snapshot_sha256,
        }),
        idp: store
            .input(run.id, "idp")
            .map_err(|e| Failure::internal(&e))?,
        activity: store
            .input(run.id, "activity")
            .map_err(|e| Failure::internal(&e))?,
        exceptions: store
            .input(run.id, "exceptions")
            .map_err(|e| Failure::internal(&e))?,
        hub: hub_info,
        outcome: if status == "complete" { outcome } else { None },
        accepted_drops: run.accepted_drops.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        trend: store
            .trend_through(run.id, report::TREND_RUNS)
            .map_err(internal)?,
        first_seen: store.first_seen(run.id).map_err(internal)?,
        config: Some(report::ConfigEvidence::new(config)),
        previous_manifest: store
            .previous_manifest(run.id)
            .map_err(internal)?
            .map(|(run_id, sha256)| report::ManifestLink { run_id, sha256 }),
    })
}

/// `<report.dir>/<YYYYMMDDTHHMMSSZ>/` from the run's start, as an absolute path. A name
/// already on disk (another run in the same second, or this run's earlier rendering) gets
/// `-run<ID>`, then `-run<ID>-<N>`: a report directory is never written twice.
fn report_dir(base: &Path, run: &RunRow) -> Result<PathBuf> {
    let base = std::path::absolute(base)
        .map_err(|e| Failure::usage(format!("`report.dir` = `{}`: {e}", base.display())))?;
    let stamp = run.started_at.format("%Y%m%dT%H%M%SZ").to_string();
    let candidates = std::iter::once(stamp.clone())
        .chain(std::iter::once(format!("{stamp}-run{}", run.id)))
        .chain((2..).map(|n| format!("{stamp}-run{}-{n}", run.id)));
    for name in candidates.take(1000) {
        let dir = base.join(name);
        if !dir.exists() {
            return Ok(dir);
        }
    }
    Err(Failure::usage(format!(
        "`report.dir` = `{}`: no free directory name for run {}",
        base.display(),
        run.id
    )))
}

fn open_total(outcome: &Outcome) -> usize {
    outcome.counts.values().flatten().sum()
}

pub fn counts_line(outcome: &Outcome) -> String {
    let parts: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{k} {}", outcome.count_text(*k, "n/a")))
        .collect();
    format!(
        "{} open findings ({})",
        open_total(outcome),
        parts.join(", ")
    )
}

fn delivery_line(delivery: &Delivery) -> String {
    match delivery {
        Delivery::Sent { relay } => format!("report sent through {relay}"),
        Delivery::Outbox { path } => format!("message written to {}", path.display()),
    }
}

/// The few lines a run prints on stdout.
pub fn print_summary(config: &Config, summary: &Summary) {
    let org = &config.report.organization;
    match &summary.reason {
        None => say!(
            "run {}{}: complete, {} accounts",
            summary.run_id,
            if org.is_empty() {
                String::new()
            } else {
                format!(" ({org})")
            },
            summary.accounts
        ),
        Some(reason) => say!(
            "run {}: INCOMPLETE, nothing was reconciled: {reason}",
            summary.run_id
        ),
    }
    if let Some(outcome) = &summary.outcome {
        for kind in Kind::ALL {
            let count = outcome.count_text(kind, "not evaluated");
            say!("  {:<20} {count}", kind.as_str());
        }
        let accepted = outcome.findings.iter().filter(|f| f.is_accepted()).count();
        if accepted > 0 {
            say!("  (and {accepted} accepted by exceptions, not counted)");
        }
        let seats = &outcome.seats;
        say!(
            "  seats: {} in use{}, {} reclaimable{}",
            seats.in_use,
            seats
                .purchased
                .map(|p| format!(" of {p} purchased"))
                .unwrap_or_default(),
            seats.reclaimable_total,
            seats
                .monthly_saving
                .map(|m| format!(" ({m:.2} a month)"))
                .unwrap_or_default()
        );
    }
    if let Some(report) = &summary.report {
        say!("report: {}", report.html.display());
    }
    match &summary.delivery {
        Some(Ok(d)) => say!("{}", delivery_line(d)),
        Some(Err(e)) => say!("delivery FAILED: {e}"),
        None => {}
    }
    for reason in &summary.fail_on {
        say!("fail-on: {reason}");
    }
    if !summary.pruned.is_empty() {
        let runs: Vec<String> = summary.pruned.iter().map(i64::to_string).collect();
        say!("retention: pruned runs {}", runs.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trend_table_has_a_column_per_run_and_says_n_a_for_a_kind_not_evaluated() {
        let point = |run_id, day: &str, leavers, idle| TrendPoint {
            run_id,
            partial: Vec::new(),
            as_of: day.parse().ok(),
            counts: vec![(Kind::TerminatedActive, leavers), (Kind::IdleSeat, idle)],
            resolved: 2,
        };
        let table = trend_table(&[
            point(3, "2026-11-23", Some(7), None),
            point(4, "2026-11-30", Some(5), Some(12)),
        ]);
        let line = |name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_default()
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
        };
        assert_eq!(line("run"), ["3", "4"]);
        assert_eq!(line("as of"), ["of", "2026-11-23", "2026-11-30"]);
        assert_eq!(line("terminated_active"), ["7", "5"]);
        assert_eq!(line("idle_seat"), ["n/a", "12"]);
        assert_eq!(line("drift"), ["n/a", "n/a"], "missing counts are not zero");
        assert_eq!(line("resolved"), ["2", "2"]);
    }

    #[test]
    fn the_drop_guard_trips_only_when_both_thresholds_are_exceeded() {
        let config = Config::default(); // 10 % and 5 accounts
        assert!(drop_guard(5, 4, &config).is_none(), "one leaver of five");
        assert!(drop_guard(100, 94, &config).is_none(), "6 % is under 10 %");
        assert!(
            drop_guard(40, 34, &config).is_some(),
            "6 of 40 is 15 % and > 5"
        );
        assert!(drop_guard(1000, 950, &config).is_none(), "5 %");
        assert!(drop_guard(1000, 800, &config).is_some());
        assert!(drop_guard(10, 12, &config).is_none(), "growth");
    }

    #[test]
    fn fail_on_names_open_and_unevaluated_kinds_and_ignores_clear_or_unnamed_ones() {
        let mut counts: reconcile::Counts = Kind::ALL.iter().map(|k| (*k, Some(0))).collect();
        counts.insert(Kind::TerminatedActive, Some(2));
        counts.insert(Kind::Shadow, Some(4));
        counts.insert(Kind::IdleSeat, None);
        let outcome = Outcome {
            partial: Default::default(),
            findings: vec![],
            counts,
            seats: Default::default(),
            resolved: Default::default(),
            not_evaluated: [(Kind::IdleSeat, "no member data".to_owned())]
                .into_iter()
                .collect(),
        };
        let cases: [(&[Kind], &[&str]); 5] = [
            (&[], &[]),
            (&[Kind::Privileged], &[]),
            (
                &[Kind::TerminatedActive, Kind::TerminatedActive],
                &["terminated_active: 2 open"],
            ),
            (
                &[Kind::IdleSeat],
                &["idle_seat: not evaluated (no member data), so not known to be clear"],
            ),
            (
                &[Kind::Shadow, Kind::Drift, Kind::TerminatedActive],
                &["terminated_active: 2 open", "shadow: 4 open"],
            ),
        ];
        for (fail_on, want) in cases {
            assert_eq!(
                fail_on_reasons(&outcome, fail_on),
                want,
                "--fail-on {fail_on:?}"
            );
        }
    }

    #[test]
    fn the_idp_export_shrinks_past_the_guard_only_when_both_thresholds_are_exceeded() {
        let config = Config::default(); // 10 % and 5 people
        assert_eq!(shrinkage(5, 4, &config), None, "one leaver of five");
        assert_eq!(shrinkage(100, 94, &config), None, "6 % is under 10 %");
        assert_eq!(shrinkage(40, 34, &config), Some((6, 15.0)));
        assert_eq!(shrinkage(1000, 950, &config), None, "5 %");
        assert_eq!(shrinkage(0, 0, &config), None, "no baseline");
        assert_eq!(shrinkage(10, 12, &config), None, "growth");
    }

    // Regression: a run reconciled from a snapshot taken without `[hub]`, while `[hub]` is
    // set, counted terminated_active as fully checked and resolved leavers found earlier
    // through the members list.
    #[test]
    fn a_snapshot_without_the_hub_leaves_the_members_kinds_unavailable_when_hub_is_set() {
        let mut config = Config::default();
        config.hub.org = Some("acme".into());
        let sources = HubSources::new(None, None, &config);
        let kinds: Vec<Kind> = sources.unavailable.iter().map(|(k, _)| *k).collect();
        assert!(kinds.contains(&Kind::NotProvisioned), "{kinds:?}");
        assert!(kinds.contains(&Kind::IdleSeat), "{kinds:?}");
        // Without `[hub]` nothing is expected from it: a choice, not a failure.
        let sources = HubSources::new(None, None, &Config::default());
        assert!(sources.unavailable.is_empty());
    }

    // Regression: a token of a few characters was masked out of every user attribute
    // holding it, so `t` rewrote every name with a t before matching.
    #[test]
    fn a_scim_token_too_short_to_be_real_is_refused() {
        assert!(
            short_scim_token(Some("t"))
                .unwrap()
                .contains("1 characters long")
        );
        assert!(short_scim_token(Some("fifteen-chars-x")).is_some());
        assert!(short_scim_token(Some("sixteen-chars-xy")).is_none());
        assert!(short_scim_token(None).is_none());
    }
}
