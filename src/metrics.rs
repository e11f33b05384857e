//! Prometheus metrics of the last run, in the text exposition format, for node-exporter's
//! textfile collector or a sidecar that serves the file.
//!
//! The file is replaced atomically (written beside it, then renamed), so a collector never
//! reads half of it. It holds counts only, no personal data, and is created readable by
//! everyone (`0644`) so that a collector running as another user can read it. A kind that
//! was not evaluated has no `hubreview_findings` sample at all, never `0`; a run that did
//! not complete writes no findings, seats or snapshot samples, so dashboards show a gap
//! and alerts key on `hubreview_last_success_timestamp_seconds`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::reconcile::{Kind, Outcome};

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("cannot write the metrics file `{}`: {cause}; check `metrics.textfile` and that its folder is writable", path.display())]
    Write {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
}

/// What one run tells the metrics.
#[derive(Debug, Clone)]
pub struct RunMetrics<'a> {
    pub finished_at: DateTime<Utc>,
    pub duration: Duration,
    pub exit_code: i32,
    /// Whether the run reconciled a complete snapshot.
    pub complete: bool,
    /// When the newest complete run finished, this one included.
    pub last_success: Option<DateTime<Utc>>,
    /// Accounts and active accounts of the run's snapshot, when complete.
    pub accounts: Option<(u64, u64)>,
    pub outcome: Option<&'a Outcome>,
}

/// The metrics as Prometheus text.
pub fn render(m: &RunMetrics<'_>) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    let unix = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;

    gauge(
        "hubreview_info",
        "The version of hubreview that wrote this file.",
        &[(
            format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
            1.0,
        )],
    );
    gauge(
        "hubreview_last_run_timestamp_seconds",
        "When the last run ended, as a Unix time.",
        &one(unix(m.finished_at)),
    );
    gauge(
        "hubreview_last_run_duration_seconds",
        "How long the last run took.",
        &one(m.duration.as_secs_f64()),
    );
    gauge(
        "hubreview_last_run_exit_code",
        "The exit code of the last run (0 completed, 1 findings over --fail-on, 2 bad input, 3 incomplete, 4 delivery failed, 5 locked).",
        &one(f64::from(m.exit_code)),
    );
    gauge(
        "hubreview_last_run_complete",
        "1 when the last run reconciled a complete snapshot, else 0.",
        &one(if m.complete { 1.0 } else { 0.0 }),
    );
    if let Some(t) = m.last_success {
        gauge(
            "hubreview_last_success_timestamp_seconds",
            "When the newest run that reconciled a complete snapshot ended, as a Unix time.",
            &one(unix(t)),
        );
    }
    if let Some((accounts, active)) = m.accounts.filter(|_| m.complete) {
        gauge(
            "hubreview_snapshot_accounts",
            "SCIM accounts in the last run's snapshot.",
            &one(accounts as f64),
        );
        gauge(
            "hubreview_snapshot_active_accounts",
            "Active SCIM accounts in the last run's snapshot.",
            &one(active as f64),
        );
    }
    let Some(outcome) = m.outcome.filter(|_| m.complete) else {
        return out;
    };
    let counts = |f: &dyn Fn(Option<usize>) -> Option<f64>| -> Vec<(String, f64)> {
        Kind::ALL
            .iter()
            .filter_map(|k| {
                let value = f(outcome.counts.get(k).copied().flatten())?;
                Some((format!("{{kind=\"{}\"}}", k.as_str()), value))
            })
            .collect()
    };
    gauge(
        "hubreview_findings",
        "Open findings of the last run, by kind; a kind that was not evaluated has no sample.",
        &counts(&|c| c.map(|n| n as f64)),
    );
    // A kind checked only in part is not evaluated for an alert: 0, so the "not
    // evaluated" alert fires rather than the count reading as an all clear.
    let evaluated: Vec<(String, f64)> = Kind::ALL
        .iter()
        .map(|k| {
            let whole = outcome.counts.get(k).copied().flatten().is_some()
                && !outcome.partial.contains_key(k);
            (
                format!("{{kind=\"{}\"}}", k.as_str()),
                if whole { 1.0 } else { 0.0 },
            )
        })
        .collect();
    gauge(
        "hubreview_finding_kind_evaluated",
        "1 when the last run evaluated the kind fully, 0 when its source was missing or \
         only part of it could be read.",
        &evaluated,
    );
    let seats = &outcome.seats;
    gauge(
        "hubreview_seats_in_use",
        "Seats in use: the organization's members and pending invites, else active SCIM accounts.",
        &one(seats.in_use as f64),
    );
    if let Some(purchased) = seats.purchased {
        gauge(
            "hubreview_seats_purchased",
            "Seats purchased, from review.seats_purchased.",
            &one(purchased as f64),
        );
    }
    gauge(
        "hubreview_seats_reclaimable",
        "Seats that could be reclaimed, each person counted once.",
        &one(seats.reclaimable_total as f64),
    );
    out
}

/// Replaces `path` with the metrics of `m`, atomically.
pub fn write(path: &Path, m: &RunMetrics<'_>) -> Result<(), MetricsError> {
    let err = |cause| MetricsError::Write {
        path: path.to_path_buf(),
        cause,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "metrics".into());
    // The collector reads only `*.prom`: a temporary name that does not end so is ignored.
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o644);
        }
        let mut file = options.open(&temporary)?;
        file.write_all(render(m).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::SeatSummary;

    fn outcome() -> Outcome {
        let mut counts: crate::reconcile::Counts =
            Kind::ALL.iter().map(|k| (*k, Some(0))).collect();
        counts.insert(Kind::Shadow, Some(3));
        counts.insert(Kind::IdleSeat, None);
        Outcome {
            partial: Default::default(),
            findings: vec![],
            counts,
            seats: SeatSummary {
                in_use_note: None,
                purchased: Some(50),
                in_use: 42,
                reclaimable_total: 4,
                ..SeatSummary::default()
            },
            resolved: Default::default(),
            not_evaluated: Default::default(),
        }
    }

    fn metrics(complete: bool, outcome: &Outcome) -> RunMetrics<'_> {
        RunMetrics {
            finished_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            duration: Duration::from_millis(2500),
            exit_code: if complete { 0 } else { 3 },
            complete,
            last_success: Some(DateTime::from_timestamp(1_799_000_000, 0).unwrap()),
            accounts: Some((45, 42)),
            outcome: Some(outcome),
        }
    }

    #[test]
    fn a_complete_run_exports_findings_by_kind_and_leaves_unevaluated_kinds_out() {
        let outcome = outcome();
        let text = render(&metrics(true, &outcome));
        assert!(
            text.contains("hubreview_findings{kind=\"shadow\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("hubreview_findings{kind=\"terminated_active\"} 0\n"));
        assert!(
            !text.contains("hubreview_findings{kind=\"idle_seat\"}"),
            "{text}"
        );
        assert!(text.contains("hubreview_finding_kind_evaluated{kind=\"idle_seat\"} 0\n"));
        assert!(text.contains("hubreview_snapshot_accounts 45\n"));
        assert!(text.contains("hubreview_seats_in_use 42\n"));
        assert!(text.contains("hubreview_seats_purchased 50\n"));
        assert!(text.contains("hubreview_seats_reclaimable 4\n"));
        assert!(text.contains("hubreview_last_run_duration_seconds 2.5\n"));
        assert!(text.contains("hubreview_last_success_timestamp_seconds 1799000000\n"));
        assert!(text.contains("hubreview_last_run_timestamp_seconds 1800000000\n"));
    }

    #[test]
    fn an_incomplete_run_exports_no_counts_that_could_read_as_all_clear() {
        let outcome = outcome();
        let text = render(&metrics(false, &outcome));
        assert!(text.contains("hubreview_last_run_complete 0\n"), "{text}");
        assert!(text.contains("hubreview_last_run_exit_code 3\n"));
        assert!(!text.contains("hubreview_findings"), "{text}");
        assert!(!text.contains("hubreview_seats"), "{text}");
        assert!(!text.contains("hubreview_snapshot_accounts"), "{text}");
        assert!(text.contains("hubreview_last_success_timestamp_seconds"));
    }

    #[test]
    fn every_sample_line_is_valid_exposition_format() {
        let outcome = outcome();
        let text = render(&metrics(true, &outcome));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            assert!(value.parse::<f64>().is_ok(), "value of {line}");
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert!(
                text.contains(&format!("# TYPE {name} gauge")),
                "{name} has no TYPE line"
            );
        }
    }

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hubreview.prom");
        std::fs::write(&path, "old").unwrap();
        let outcome = outcome();
        write(&path, &metrics(true, &outcome)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# HELP hubreview_info"), "{text}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["hubreview.prom"]);
    }

    #[test]
    fn a_missing_folder_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics/hubreview.prom");
        let outcome = outcome();
        write(&path, &metrics(true, &outcome)).unwrap();
        assert!(path.is_file());
    }

    #[test]
    fn an_unwritable_place_is_an_error_naming_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let path = dir.path().join("file/hubreview.prom");
        let outcome = outcome();
        let err = write(&path, &metrics(true, &outcome))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hubreview.prom"), "{err}");
        assert!(err.contains("metrics.textfile"), "{err}");
    }

    // Regression: a kind checked only in part exported evaluated 1 and a count of 0, which
    // an alert read as all clear.
    #[test]
    fn a_kind_checked_in_part_is_not_exported_as_evaluated() {
        let mut outcome = outcome();
        outcome
            .partial
            .insert(Kind::TerminatedActive, "the members list failed".into());
        let text = render(&metrics(true, &outcome));
        assert!(
            text.contains("hubreview_finding_kind_evaluated{kind=\"terminated_active\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("hubreview_finding_kind_evaluated{kind=\"shadow\"} 1\n"));
    }
}
