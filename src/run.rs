//! Orders the pipeline steps for each command and turns their results into an exit code.
//! Each step owns its work; this module only decides what runs next.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{NaiveDate, Utc};
use tracing::{info, warn};

use crate::activity::{self, MemberExport};
use crate::cli::{Cli, Command, DropSource, LogFormat};
use crate::config::{Config, Secrets};
use crate::idp::{self, Export};
use crate::mail::{self, Delivery};
use crate::reconcile::{self, Inputs, Kind, Outcome};
use crate::report::{self, InputFile, ReportInput, SnapshotInfo, Written};
use crate::scim::{self, Completeness};
use crate::store::{RunRow, Store};

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
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Incomplete.into();
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            eprintln!("error: {}", failure.message);
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUBREVIEW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("hubreview={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn dispatch(cli: Cli) -> Result<Exit> {
    if let Command::Demo(args) = &cli.command {
        return demo(&args.dir).await;
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (config, secrets) =
        Config::load(cli.config.as_deref(), &env, &cli.sets).map_err(Failure::usage)?;
    let job = Job {
        config,
        secrets,
        progress: !cli.quiet,
    };
    match cli.command {
        Command::Run(args) => {
            let drops = drops(&args.accept_drop);
            job.run(args.as_of, &drops, args.dry_run).await
        }
        Command::Snapshot(args) => job.snapshot_only(&drops(&args.accept_drop)).await,
        Command::Reconcile(args) => job.reconcile_only(args.run, args.as_of),
        Command::Report(args) => job.report_only(args.run),
        Command::Send(args) => job.send_only(args.run, args.dry_run).await,
        Command::History(args) => job.history(args.limit),
        Command::Verify(args) => {
            let verification =
                crate::verify::run(&args.dir, &job.config.store.path).map_err(Failure::usage)?;
            print!("{verification}");
            // A report that is not what was written counts like open findings: exit 1.
            Ok(if verification.is_clean() {
                Exit::Completed
            } else {
                Exit::Findings
            })
        }
        Command::Demo(_) => unreachable!("handled above"),
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
    pub report: Option<Written>,
    pub delivery: Option<std::result::Result<Delivery, String>>,
}

impl Job {
    fn open_store(&self) -> Result<Store> {
        let store = Store::open(&self.config.store.path).map_err(|e| Failure::internal(&e))?;
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

    /// `hubreview run`: every step on one new run.
    pub async fn run(
        &self,
        as_of: Option<NaiveDate>,
        drops: &[String],
        dry_run: bool,
    ) -> Result<Exit> {
        let summary = self.run_job(as_of, drops, dry_run).await?;
        print_summary(&self.config, &summary);
        Ok(summary.exit)
    }

    /// The whole job, returning what it did.
    pub async fn run_job(
        &self,
        as_of: Option<NaiveDate>,
        drops: &[String],
        dry_run: bool,
    ) -> Result<Summary> {
        let as_of = as_of.unwrap_or_else(|| Utc::now().date_naive());
        let token = self.token()?;
        crate::http::check_url("scim.url", &self.config.scim.url).map_err(Failure::usage)?;
        let (export, members) = self.read_inputs()?;

        let mut store = self.open_store()?;
        let run_id = store
            .begin_run("run", Some(as_of))
            .map_err(|e| Failure::internal(&e))?;
        store
            .set_accepted_drops(run_id, drops)
            .map_err(|e| Failure::internal(&e))?;
        info!(run_id, %as_of, "run started");

        let (snapshot_id, completeness) =
            self.snapshot_step(&mut store, run_id, token, drops).await?;
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
            outcome: None,
            report: None,
            delivery: None,
        };

        if completeness.is_complete() {
            let outcome = reconcile_step(
                &mut store,
                run_id,
                snapshot_id,
                &export,
                members.as_ref(),
                as_of,
                &self.config,
            )?;
            summary.outcome = Some(outcome);
        } else {
            summary.exit = Exit::Incomplete;
        }

        let (input, written) = self.report_step(&store, run_id)?;
        let delivered = self
            .send_step(&store, run_id, &input, &written, dry_run)
            .await;
        summary.report = Some(written);
        if let Err(e) = &delivered {
            warn!(error = %e, "delivery failed; the report stays on disk");
            if summary.exit == Exit::Completed {
                summary.exit = Exit::Delivery;
            }
        }
        summary.delivery = Some(delivered);

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
        Ok(summary)
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
            if let Some(previous) = previous {
                let now = fetched.accounts.len() as u64;
                if let Some(reason) = drop_guard(previous.accounts, now, &self.config) {
                    if drops.iter().any(|d| d == "scim") {
                        warn!(%reason, "size-drop guard overridden by --accept-drop scim");
                    } else {
                        fetched.completeness = Completeness::Incomplete {
                            reason: format!(
                                "{reason}; if this is real, rerun with --accept-drop scim"
                            ),
                        };
                    }
                }
            }
        }
        let snapshot_id = store
            .save_snapshot(run_id, &self.config.scim.url, taken_at, &fetched)
            .map_err(|e| Failure::internal(&e))?;
        Ok((snapshot_id, fetched.completeness))
    }

    /// Renders the run's report from the store into its own directory.
    fn report_step(&self, store: &Store, run_id: i64) -> Result<(ReportInput, Written)> {
        let run = load_run(store, run_id)?;
        let input = report_input(store, &run, &self.config)?;
        let dir = match &run.report_dir {
            Some(dir) => dir.clone(),
            None => report_dir(store, &self.config.report.dir, &run)?,
        };
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

    /// Delivers the report; on failure the message goes to the outbox and the error is
    /// returned for the exit code.
    async fn send_step(
        &self,
        store: &Store,
        run_id: i64,
        input: &ReportInput,
        written: &Written,
        dry_run: bool,
    ) -> std::result::Result<Delivery, String> {
        let mut mail_config = self.config.mail.clone();
        if dry_run {
            mail_config.smtp_host = None;
        }
        let message = match mail::build_message(&mail_config, input, written) {
            Ok(m) => m,
            Err(e) => {
                let text = crate::http::error_chain(&e);
                let _ = store.record_delivery(run_id, "build", "failed", &text);
                return Err(text);
            }
        };
        match mail::deliver(&mail_config, &self.secrets, &message, run_id).await {
            Ok(delivery) => {
                let (method, detail) = match &delivery {
                    Delivery::Sent { relay } => ("smtp", relay.clone()),
                    Delivery::Outbox { path } => ("outbox", path.display().to_string()),
                };
                let _ = store.record_delivery(run_id, method, "ok", &detail);
                let _ = store.set_stage(run_id, "send");
                Ok(delivery)
            }
            Err(e) => {
                let text = crate::http::error_chain(&e);
                let saved = mail::write_outbox(&self.config.mail.outbox, &message, run_id);
                let detail = match &saved {
                    Ok(path) => format!("{text}; message saved to `{}`", path.display()),
                    Err(e2) => format!("{text}; saving to the outbox failed too: {e2}"),
                };
                let _ = store.record_delivery(run_id, "smtp", "failed", &detail);
                Err(detail)
            }
        }
    }

    /// `hubreview snapshot`: a new run holding only a snapshot.
    async fn snapshot_only(&self, drops: &[String]) -> Result<Exit> {
        let token = self.token()?;
        crate::http::check_url("scim.url", &self.config.scim.url).map_err(Failure::usage)?;
        let mut store = self.open_store()?;
        let run_id = store
            .begin_run("snapshot", None)
            .map_err(|e| Failure::internal(&e))?;
        store
            .set_accepted_drops(run_id, drops)
            .map_err(|e| Failure::internal(&e))?;
        let (snapshot_id, completeness) =
            self.snapshot_step(&mut store, run_id, token, drops).await?;
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
            None => println!("run {run_id}: snapshot {snapshot_id} complete, {accounts} accounts"),
            Some(reason) => println!(
                "run {run_id}: snapshot {snapshot_id} INCOMPLETE ({accounts} accounts received): {reason}"
            ),
        }
        Ok(exit)
    }

    /// `hubreview reconcile`: findings for a stored run's snapshot.
    fn reconcile_only(&self, run: Option<i64>, as_of: Option<NaiveDate>) -> Result<Exit> {
        let (export, members) = self.read_inputs()?;
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
        let as_of = as_of
            .or(run.as_of)
            .unwrap_or_else(|| Utc::now().date_naive());
        let outcome = reconcile_step(
            &mut store,
            run.id,
            snapshot_id,
            &export,
            members.as_ref(),
            as_of,
            &self.config,
        )?;
        println!(
            "run {}: reconciled snapshot {snapshot_id} as of {as_of}: {}",
            run.id,
            counts_line(&outcome)
        );
        Ok(Exit::Completed)
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
        let (_, written) = self.report_step(&store, run.id)?;
        println!(
            "run {}: report written to {}",
            run.id,
            written.html.display()
        );
        Ok(Exit::Completed)
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
        if run.report_dir.is_none() {
            return Err(Failure::usage(format!(
                "run {} has no report yet: run `hubreview report --run {}` first",
                run.id, run.id
            )));
        }
        let (input, written) = self.report_step(&store, run.id)?;
        match self
            .send_step(&store, run.id, &input, &written, dry_run)
            .await
        {
            Ok(delivery) => {
                println!("run {}: {}", run.id, delivery_line(&delivery));
                Ok(Exit::Completed)
            }
            Err(e) => {
                eprintln!("error: delivery failed: {e}");
                Ok(Exit::Delivery)
            }
        }
    }

    /// `hubreview history`: runs and snapshots, newest first.
    fn history(&self, limit: usize) -> Result<Exit> {
        let store = self.open_store()?;
        let runs = store.runs(limit).map_err(|e| Failure::internal(&e))?;
        if runs.is_empty() {
            println!("no runs in `{}` yet", self.config.store.path.display());
            return Ok(Exit::Completed);
        }
        println!(
            "{:>5}  {:<20}  {:<10}  {:<9}  {:<10}  {:<9}  {:>8}  {:>8}  report",
            "run", "started (UTC)", "as of", "command", "status", "stage", "accounts", "findings"
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
            println!(
                "{:>5}  {:<20}  {:<10}  {:<9}  {:<10}  {:<9}  {:>8}  {:>8}  {}",
                run.id,
                run.started_at.format("%Y-%m-%d %H:%M:%S"),
                run.as_of
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
                run.command,
                run.status,
                run.stage,
                snapshot
                    .map(|s| s.accounts.to_string())
                    .unwrap_or_else(|| "-".into()),
                findings,
                run.report_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            );
            if let Some(reason) = &run.reason {
                println!("       reason: {reason}");
            }
        }
        let snapshots = store.snapshots(limit).map_err(|e| Failure::internal(&e))?;
        println!();
        println!(
            "{:>8}  {:>5}  {:<20}  {:<10}  {:>8}  {:>6}  reason",
            "snapshot", "run", "taken (UTC)", "status", "accounts", "active"
        );
        for s in snapshots {
            println!(
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
        Ok(Exit::Completed)
    }
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
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", store_path.display()));
        if path.exists() {
            std::fs::remove_file(&path)
                .map_err(|e| io(&format!("cannot reset `{}`", path.display()), e))?;
        }
    }
    let okta = dir.join("inputs").join("okta-users.csv");
    let members = dir.join("inputs").join("docker-members.csv");
    std::fs::write(&okta, demo::DEMO_OKTA_CSV)
        .map_err(|e| io(&format!("cannot write `{}`", okta.display()), e))?;
    std::fs::write(&members, demo::DEMO_ACTIVITY_CSV)
        .map_err(|e| io(&format!("cannot write `{}`", members.display()), e))?;

    let options = demo::ServerOptions::default();
    let token = options.token.clone();
    let server = demo::start(demo::demo_baseline(), options)
        .await
        .map_err(|e| io("cannot start the demo SCIM server on 127.0.0.1", e))?;

    let mut config = Config::default();
    config.scim.url = server.base_url();
    config.scim.retry_base_ms = 50;
    config.idp.file = Some(okta);
    config.idp.format = "okta".into();
    config.activity.file = Some(members);
    config.activity.format = "insights".into();
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
            ..Secrets::default()
        },
        progress: true,
    };

    println!(
        "demo: SCIM server for the demo organization on {}",
        server.base_url()
    );
    println!("demo: snapshot of the organization a week before the review");
    let exit = job.snapshot_only(&[]).await?;
    if exit != Exit::Completed {
        return Ok(exit);
    }
    // Reconciling the baseline gives the report a trend and its findings an age.
    let baseline: NaiveDate = demo::DEMO_BASELINE_DATE
        .parse()
        .map_err(|e| Failure::usage(format!("demo baseline date: {e}")))?;
    job.reconcile_only(None, Some(baseline))?;
    server.set_users(demo::demo_current());
    println!("demo: the review, as of {as_of}");
    let summary = job.run_job(Some(as_of), &[], false).await?;
    print_summary(&job.config, &summary);
    server.shutdown().await;
    Ok(summary.exit)
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

fn reconcile_step(
    store: &mut Store,
    run_id: i64,
    snapshot_id: i64,
    export: &Export,
    members: Option<&MemberExport>,
    as_of: NaiveDate,
    config: &Config,
) -> Result<Outcome> {
    let accounts = store
        .accounts(snapshot_id)
        .map_err(|e| Failure::internal(&e))?;
    let previous = match store
        .previous_complete_snapshot(snapshot_id)
        .map_err(|e| Failure::internal(&e))?
    {
        Some(s) => Some(store.accounts(s.id).map_err(|e| Failure::internal(&e))?),
        None => None,
    };
    let outcome = reconcile::reconcile(&Inputs {
        accounts: &accounts,
        previous: previous.as_deref(),
        people: &export.people,
        members: members.map(|m| m.members.as_slice()),
        review: &config.review,
        as_of,
    })
    .map_err(|e| Failure::internal(&e))?;

    let idp_input = InputFile {
        path: export.path.clone(),
        format: export.format.as_str().to_owned(),
        sha256: export.sha256.clone(),
        rows: export.rows as u64,
    };
    store
        .record_input(run_id, "idp", &idp_input)
        .map_err(|e| Failure::internal(&e))?;
    if let Some(m) = members {
        let input = InputFile {
            path: m.path.clone(),
            format: m.format.clone(),
            sha256: m.sha256.clone(),
            rows: m.members.len() as u64,
        };
        store
            .record_input(run_id, "activity", &input)
            .map_err(|e| Failure::internal(&e))?;
    }
    store
        .save_outcome(run_id, as_of, &outcome)
        .map_err(|e| Failure::internal(&e))?;
    Ok(outcome)
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
    let (status, reason) = match (&snapshot, &outcome) {
        (Some(s), _) if !s.completeness.is_complete() => {
            ("incomplete", s.completeness.reason().map(str::to_owned))
        }
        (_, Some(_)) => ("complete", None),
        (None, None) => ("incomplete", Some("no snapshot was taken".to_owned())),
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

/// `<report.dir>/<YYYYMMDDTHHMMSSZ>/` from the run's start, made unique if another run
/// started in the same second.
fn report_dir(store: &Store, base: &Path, run: &RunRow) -> Result<PathBuf> {
    let stamp = run.started_at.format("%Y%m%dT%H%M%SZ").to_string();
    let dir = base.join(&stamp);
    let taken = store
        .runs(1000)
        .map_err(|e| Failure::internal(&e))?
        .iter()
        .any(|r| r.id != run.id && r.report_dir.as_deref() == Some(dir.as_path()));
    if taken || (dir.exists() && run.report_dir.is_none()) {
        Ok(base.join(format!("{stamp}-run{}", run.id)))
    } else {
        Ok(dir)
    }
}

fn open_total(outcome: &Outcome) -> usize {
    outcome.counts.values().flatten().sum()
}

pub fn counts_line(outcome: &Outcome) -> String {
    let parts: Vec<String> = Kind::ALL
        .iter()
        .map(|k| match outcome.counts.get(k).copied().flatten() {
            Some(n) => format!("{k} {n}"),
            None => format!("{k} n/a"),
        })
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
        None => println!(
            "run {}{}: complete, {} accounts",
            summary.run_id,
            if org.is_empty() {
                String::new()
            } else {
                format!(" ({org})")
            },
            summary.accounts
        ),
        Some(reason) => println!(
            "run {}: INCOMPLETE, nothing was reconciled: {reason}",
            summary.run_id
        ),
    }
    if let Some(outcome) = &summary.outcome {
        for kind in Kind::ALL {
            let count = match outcome.counts.get(&kind).copied().flatten() {
                Some(n) => n.to_string(),
                None => "not evaluated".into(),
            };
            println!("  {:<20} {count}", kind.as_str());
        }
        let seats = &outcome.seats;
        println!(
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
        println!("report: {}", report.html.display());
    }
    match &summary.delivery {
        Some(Ok(d)) => println!("{}", delivery_line(d)),
        Some(Err(e)) => println!("delivery FAILED: {e}"),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
