//! `hubreview verify DIR`: re-checks a report directory against its `manifest.json`.
//!
//! Every file the manifest lists must be there with the same SHA-256 and size, and no
//! other file may have joined it. The recorded configuration must match its hash. When
//! the store that wrote the report is at hand, `manifest.json` itself must be the one
//! the store recorded for that run, and its link to the previous report must match the
//! store's record of that report: so a report whose files and manifest were both
//! rewritten still fails, and the chain survives the pruning of old directories.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::instrument;

use crate::report::{SCHEMA_VERSION, config_sha256};
use crate::store::Store;

/// Why a directory could not be verified at all (as opposed to: verified, and found
/// changed).
#[derive(Debug, Error)]
pub enum VerifyError {
    #[error(
        "cannot read `{}`: {cause}; pass the directory of one run's report, the one holding \
         `manifest.json` and `report.html`",
        path.display()
    )]
    Unreadable { path: PathBuf, cause: io::Error },
    #[error("`{}` is not a hubreview manifest: {cause}", path.display())]
    NotAManifest { path: PathBuf, cause: String },
    #[error(
        "`{}` has schema version {found}, newer than this hubreview ({SCHEMA_VERSION}); verify \
         it with a newer hubreview",
        path.display()
    )]
    TooNew { path: PathBuf, found: u32 },
}

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The check passed.
    Ok,
    /// A file's content differs from what was recorded.
    Changed,
    /// A listed file is gone.
    Missing,
    /// A file is in the directory but not in the manifest.
    Unlisted,
    /// The manifest says something impossible or inconsistent.
    Invalid,
    /// The check could not be made (no store at hand); says nothing either way.
    Unchecked,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Changed => "CHANGED",
            Verdict::Missing => "MISSING",
            Verdict::Unlisted => "UNLISTED",
            Verdict::Invalid => "INVALID",
            Verdict::Unchecked => "unchecked",
        }
    }

    /// Whether this verdict means the directory is not what was written.
    pub fn is_problem(self) -> bool {
        !matches!(self, Verdict::Ok | Verdict::Unchecked)
    }
}

/// One line of the verification: a verdict on a subject, with the detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub verdict: Verdict,
    /// A file name, or `manifest.json`, `config` or `chain`.
    pub subject: String,
    pub detail: String,
}

/// The result of verifying one report directory.
#[derive(Debug, Clone)]
pub struct Verification {
    pub dir: PathBuf,
    pub run_id: i64,
    pub version: String,
    pub checks: Vec<Check>,
}

impl Verification {
    /// No file changed, went missing or joined, nothing recorded disagrees, and the
    /// manifest itself was checked against the store: hashes that only agree with a
    /// manifest anyone could rewrite prove nothing.
    pub fn is_clean(&self) -> bool {
        !self.checks.iter().any(|c| c.verdict.is_problem()) && !self.manifest_unchecked()
    }

    /// Whether the manifest could not be checked against a store.
    pub fn manifest_unchecked(&self) -> bool {
        self.checks
            .iter()
            .any(|c| c.verdict == Verdict::Unchecked && c.subject == "manifest.json")
    }

    /// The checks that failed.
    pub fn problems(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.verdict.is_problem())
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "verify `{}`: report of run {}, written by hubreview {}",
            self.dir.display(),
            self.run_id,
            self.version
        )?;
        for check in &self.checks {
            write!(f, "  {:<9} {}", check.verdict.label(), check.subject)?;
            if check.detail.is_empty() {
                writeln!(f)?;
            } else {
                writeln!(f, ": {}", check.detail)?;
            }
        }
        let problems = self.problems().count();
        if problems == 0 && self.manifest_unchecked() {
            writeln!(
                f,
                "NOT VERIFIED: the files match manifest.json, but manifest.json itself was not \
                 checked against the store that recorded it, so a rewritten report would pass \
                 too; run verify with the configuration (`store.path`) of the run"
            )
        } else if problems == 0 {
            writeln!(
                f,
                "the directory matches its manifest and the store's record of it"
            )
        } else {
            writeln!(
                f,
                "the directory does NOT match its manifest: {problems} {}",
                if problems == 1 { "problem" } else { "problems" }
            )
        }
    }
}

/// `manifest.json` as `verify` reads it: only the fields it checks.
#[derive(Deserialize)]
struct Manifest {
    schema_version: u32,
    tool: String,
    version: String,
    run_id: i64,
    files: Vec<ManifestFile>,
    #[serde(default)]
    config: Option<ManifestConfig>,
    #[serde(default)]
    previous_manifest: Option<ManifestLink>,
}

#[derive(Deserialize)]
struct ManifestFile {
    name: String,
    sha256: String,
    bytes: u64,
}

#[derive(Deserialize)]
struct ManifestConfig {
    sha256: String,
    effective: serde_json::Value,
}

#[derive(Deserialize)]
struct ManifestLink {
    run_id: i64,
    sha256: String,
}

/// Verifies the report in `dir`, against the store at `store_path` when one is there.
/// The store is only read; a missing one is not created.
pub fn run(dir: &Path, store_path: &Path) -> Result<Verification, VerifyError> {
    let store = if store_path.is_file() {
        Some(Store::open_existing(store_path).map_err(|e| e.to_string()))
    } else {
        None
    };
    match store {
        Some(Ok(store)) => verify(dir, Some((&store, store_path))),
        Some(Err(cause)) => {
            let mut verification = verify(dir, None)?;
            replace_store_note(
                &mut verification,
                format!(
                    "the store could not be opened ({cause}): manifest.json was checked against nothing but itself"
                ),
            );
            Ok(verification)
        }
        None => {
            let mut verification = verify(dir, None)?;
            replace_store_note(
                &mut verification,
                format!(
                    "no store at `{}` (`store.path`): manifest.json was checked against nothing \
                     but itself; run verify where the store is to check it and its chain",
                    store_path.display()
                ),
            );
            Ok(verification)
        }
    }
}

fn replace_store_note(verification: &mut Verification, detail: String) {
    for check in &mut verification.checks {
        if check.verdict == Verdict::Unchecked && check.subject == "manifest.json" {
            check.detail = detail.clone();
        }
    }
}

/// Verifies the report in `dir`; with a store (and its path, for messages), also checks
/// `manifest.json` and its chain link against the store's records.
#[instrument(skip(store))]
pub fn verify(dir: &Path, store: Option<(&Store, &Path)>) -> Result<Verification, VerifyError> {
    let manifest_path = dir.join("manifest.json");
    let manifest_bytes = fs::read(&manifest_path).map_err(|cause| VerifyError::Unreadable {
        path: manifest_path.clone(),
        cause,
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| VerifyError::NotAManifest {
            path: manifest_path.clone(),
            cause: e.to_string(),
        })?;
    if manifest.tool != "hubreview" {
        return Err(VerifyError::NotAManifest {
            path: manifest_path,
            cause: format!("its tool is `{}`, not `hubreview`", manifest.tool),
        });
    }
    if manifest.schema_version > SCHEMA_VERSION {
        return Err(VerifyError::TooNew {
            path: manifest_path,
            found: manifest.schema_version,
        });
    }

    let mut checks = Vec::new();
    let mut listed = BTreeSet::new();
    for file in &manifest.files {
        checks.push(check_file(dir, file, &mut listed));
    }
    checks.extend(unlisted_files(dir, &listed)?);

    if let Some(config) = &manifest.config {
        let actual = config_sha256(&config.effective);
        checks.push(if actual == config.sha256 {
            ok("config", "the recorded configuration matches its SHA-256")
        } else {
            problem(
                Verdict::Changed,
                "config",
                format!(
                    "the recorded configuration hashes to {actual}, but the manifest says {}",
                    config.sha256
                ),
            )
        });
    }

    let manifest_sha256 = hex(&Sha256::digest(&manifest_bytes));
    match store {
        Some((store, path)) => {
            checks.extend(store_checks(dir, &manifest, &manifest_sha256, store, path))
        }
        None => checks.push(Check {
            verdict: Verdict::Unchecked,
            subject: "manifest.json".to_string(),
            detail: "no store given: manifest.json was checked against nothing but itself"
                .to_string(),
        }),
    }

    Ok(Verification {
        dir: dir.to_path_buf(),
        run_id: manifest.run_id,
        version: manifest.version,
        checks,
    })
}

fn ok(subject: &str, detail: &str) -> Check {
    Check {
        verdict: Verdict::Ok,
        subject: subject.to_string(),
        detail: detail.to_string(),
    }
}

fn problem(verdict: Verdict, subject: &str, detail: String) -> Check {
    Check {
        verdict,
        subject: subject.to_string(),
        detail,
    }
}

/// A manifest entry must name a plain file of the directory itself.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name != "manifest.json"
        && !name.contains(['/', '\\', '\0'])
}

fn check_file(dir: &Path, file: &ManifestFile, listed: &mut BTreeSet<String>) -> Check {
    if !is_plain_name(&file.name) {
        return problem(
            Verdict::Invalid,
            &file.name,
            "the manifest names something that is not a file of this directory".to_string(),
        );
    }
    if !listed.insert(file.name.clone()) {
        return problem(
            Verdict::Invalid,
            &file.name,
            "the manifest lists this file twice".to_string(),
        );
    }
    let path = dir.join(&file.name);
    match hash_file(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => problem(
            Verdict::Missing,
            &file.name,
            format!(
                "listed with SHA-256 {}, but not in the directory",
                file.sha256
            ),
        ),
        Err(e) => problem(Verdict::Missing, &file.name, format!("cannot read it: {e}")),
        Ok((sha256, bytes)) if sha256 == file.sha256 && bytes == file.bytes => ok(&file.name, ""),
        Ok((sha256, bytes)) => problem(
            Verdict::Changed,
            &file.name,
            format!(
                "SHA-256 is {sha256} ({bytes} bytes), but the manifest says {} ({} bytes)",
                file.sha256, file.bytes
            ),
        ),
    }
}

/// Files and folders of `dir` that the manifest does not list.
fn unlisted_files(dir: &Path, listed: &BTreeSet<String>) -> Result<Vec<Check>, VerifyError> {
    let entries = fs::read_dir(dir).map_err(|cause| VerifyError::Unreadable {
        path: dir.to_path_buf(),
        cause,
    })?;
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|cause| VerifyError::Unreadable {
            path: dir.to_path_buf(),
            cause,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "manifest.json" && !listed.contains(&name) {
            names.insert(name);
        }
    }
    Ok(names
        .into_iter()
        .map(|name| {
            problem(
                Verdict::Unlisted,
                &name,
                "in the directory but not in the manifest: it was added after the report \
                 was written"
                    .to_string(),
            )
        })
        .collect())
}

/// `manifest.json` against the store: the store must have recorded this very manifest
/// for this directory, and the previous report's manifest must be the one linked.
fn store_checks(
    dir: &Path,
    manifest: &Manifest,
    manifest_sha256: &str,
    store: &Store,
    store_path: &Path,
) -> Vec<Check> {
    let shown = store_path.display();
    // The directory's own record first; a copy or a moved directory is found by the run
    // the manifest names, whose recorded manifest must then be this very one.
    let record = store.report_record(dir).and_then(|by_dir| match by_dir {
        Some(found) => Ok(Some((found, false))),
        None => Ok(store
            .manifest_record(manifest.run_id)?
            .map(|(_, sha256)| ((manifest.run_id, sha256), true))),
    });
    let record = match record {
        Ok(record) => record,
        Err(e) => {
            return vec![problem(
                Verdict::Unchecked,
                "manifest.json",
                format!("cannot read the store `{shown}`: {e}"),
            )];
        }
    };
    let Some(((run_id, recorded), elsewhere)) = record else {
        return vec![problem(
            Verdict::Unchecked,
            "manifest.json",
            format!(
                "the store `{shown}` records no report of run {} (another store?): \
                 manifest.json was checked against nothing but itself",
                manifest.run_id
            ),
        )];
    };

    let mut checks = Vec::new();
    if elsewhere && recorded == manifest_sha256 {
        checks.push(ok(
            "manifest.json",
            &format!(
                "the one the store recorded for run {run_id} (this directory is a copy of \
                 its report)"
            ),
        ));
    } else if run_id != manifest.run_id {
        checks.push(problem(
            Verdict::Invalid,
            "manifest.json",
            format!(
                "the store `{shown}` says run {run_id} wrote this directory, but the manifest \
                 says run {}",
                manifest.run_id
            ),
        ));
    } else if recorded != manifest_sha256 {
        checks.push(problem(
            Verdict::Changed,
            "manifest.json",
            format!(
                "SHA-256 is {manifest_sha256}, but the store `{shown}` recorded {recorded} for \
                 run {run_id}"
            ),
        ));
    } else {
        checks.push(ok(
            "manifest.json",
            &format!("the one the store recorded for run {run_id}"),
        ));
    }

    let previous = store.previous_manifest(manifest.run_id);
    checks.push(match (&manifest.previous_manifest, previous) {
        (_, Err(e)) => problem(
            Verdict::Unchecked,
            "chain",
            format!("cannot read the store `{shown}`: {e}"),
        ),
        (None, Ok(None)) => ok("chain", "the first report of the store: nothing to link"),
        (Some(link), Ok(Some((run, sha256)))) if link.run_id == run && link.sha256 == sha256 => ok(
            "chain",
            &format!("links run {run}'s manifest, as the store recorded it"),
        ),
        (Some(link), Ok(Some((run, sha256)))) => problem(
            Verdict::Changed,
            "chain",
            format!(
                "links run {}'s manifest {}, but the store holds run {run}'s as {sha256}: the \
                 previous report was written again after this one, or the link was altered",
                link.run_id, link.sha256
            ),
        ),
        (Some(link), Ok(None)) => problem(
            Verdict::Invalid,
            "chain",
            format!(
                "links run {}'s manifest, but the store holds no earlier report",
                link.run_id
            ),
        ),
        (None, Ok(Some((run, _)))) => problem(
            Verdict::Invalid,
            "chain",
            format!("links no previous report, but the store holds run {run}'s"),
        ),
    });
    checks
}

/// SHA-256 and size of a file, read in blocks.
fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((hex(&hasher.finalize()), bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::tests::complete_input;
    use crate::report::{self, ManifestLink as Link};

    /// A report of run 42 written into `dir/run`, with the store recording it as
    /// `record` would.
    fn written(dir: &Path) -> (PathBuf, Store) {
        let store = Store::open_in_memory().unwrap();
        for _ in 0..42 {
            store.begin_run("run", None).unwrap();
        }
        store
            .set_report(41, &dir.join("previous"), &"c3".repeat(32))
            .unwrap();
        let out = dir.join("run");
        let written = report::write(&out, &complete_input(), 500).unwrap();
        let manifest = written.file("manifest.json").unwrap();
        store.set_report(42, &out, &manifest.sha256).unwrap();
        (out, store)
    }

    fn verdicts(verification: &Verification) -> Vec<(Verdict, &str)> {
        verification
            .problems()
            .map(|c| (c.verdict, c.subject.as_str()))
            .collect()
    }

    #[test]
    fn an_untouched_report_verifies_against_its_manifest_and_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (out, store) = written(dir.path());

        let verification = verify(&out, Some((&store, Path::new("hubreview.db")))).unwrap();

        assert!(verification.is_clean(), "{verification}");
        assert_eq!(verification.run_id, 42);
        let text = verification.to_string();
        assert!(text.contains("  ok        findings.csv\n"), "{text}");
        assert!(text.contains("ok        manifest.json: the one the store recorded for run 42"));
        assert!(
            text.contains("ok        chain: links run 41's manifest"),
            "{text}"
        );
        assert!(
            text.ends_with("the directory matches its manifest and the store's record of it\n"),
            "{text}"
        );
    }

    #[test]
    fn a_changed_file_is_named_with_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let (out, store) = written(dir.path());
        let path = out.join("terminated_active.csv");
        let text = fs::read_to_string(&path).unwrap().replace("dana", "dina");
        fs::write(&path, text).unwrap();

        let verification = verify(&out, Some((&store, Path::new("s.db")))).unwrap();

        assert!(!verification.is_clean());
        assert_eq!(
            verdicts(&verification),
            [(Verdict::Changed, "terminated_active.csv")]
        );
        let line = verification.problems().next().unwrap().detail.clone();
        assert!(line.starts_with("SHA-256 is "), "{line}");
        assert!(line.contains("but the manifest says "), "{line}");
        assert!(
            verification
                .to_string()
                .contains("the directory does NOT match its manifest: 1 problem")
        );
    }

    #[test]
    fn a_missing_file_and_an_added_file_are_both_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (out, store) = written(dir.path());
        fs::remove_file(out.join("shadow.csv")).unwrap();
        fs::write(out.join("notes.txt"), "looks fine").unwrap();

        let verification = verify(&out, Some((&store, Path::new("s.db")))).unwrap();

        assert_eq!(
            verdicts(&verification),
            [
                (Verdict::Missing, "shadow.csv"),
                (Verdict::Unlisted, "notes.txt")
            ]
        );
    }

    #[test]
    fn a_file_rewritten_with_its_manifest_entry_is_caught_by_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (out, store) = written(dir.path());
        let csv = out.join("findings.csv");
        fs::write(&csv, "kind\n").unwrap();
        let (sha256, bytes) = hash_file(&csv).unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
        for file in manifest["files"].as_array_mut().unwrap() {
            if file["name"] == "findings.csv" {
                file["sha256"] = sha256.clone().into();
                file["bytes"] = bytes.into();
            }
        }
        fs::write(out.join("manifest.json"), manifest.to_string()).unwrap();

        let with_store = verify(&out, Some((&store, Path::new("s.db")))).unwrap();
        let without = verify(&out, None).unwrap();

        assert_eq!(verdicts(&with_store), [(Verdict::Changed, "manifest.json")]);
        // Without the store the files agree with the rewritten manifest, which proves
        // nothing: the verification is not clean, and says so.
        assert!(verdicts(&without).is_empty());
        assert!(without.manifest_unchecked());
        assert!(!without.is_clean());
        assert!(without.to_string().contains("NOT VERIFIED"), "{without}");
    }

    #[test]
    fn a_previous_report_written_again_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (out, store) = written(dir.path());
        store
            .set_report(41, &dir.path().join("previous"), &"d4".repeat(32))
            .unwrap();

        let verification = verify(&out, Some((&store, Path::new("s.db")))).unwrap();

        assert_eq!(verdicts(&verification), [(Verdict::Changed, "chain")]);
        let detail = &verification.problems().next().unwrap().detail;
        assert!(detail.contains(&"d4".repeat(32)), "{detail}");
    }

    #[test]
    fn an_altered_configuration_no_longer_matches_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _) = written(dir.path());
        let path = out.join("manifest.json");
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        manifest["config"]["effective"]["review"]["idle_days"] = 9999.into();
        fs::write(&path, manifest.to_string()).unwrap();

        let verification = verify(&out, None).unwrap();

        assert_eq!(verdicts(&verification), [(Verdict::Changed, "config")]);
    }

    #[test]
    fn a_manifest_naming_a_path_outside_the_directory_is_invalid_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _) = written(dir.path());
        let path = out.join("manifest.json");
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        manifest["files"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "../previous/x", "sha256": "00", "bytes": 0}));
        fs::write(&path, manifest.to_string()).unwrap();

        let verification = verify(&out, None).unwrap();

        assert_eq!(
            verdicts(&verification),
            [(Verdict::Invalid, "../previous/x")]
        );
    }

    #[test]
    fn a_directory_without_a_readable_manifest_is_an_error_that_says_what_to_pass() {
        let dir = tempfile::tempdir().unwrap();

        let error = verify(dir.path(), None).unwrap_err().to_string();
        assert!(error.starts_with("cannot read `"), "{error}");
        assert!(error.contains("manifest.json"), "{error}");
        assert!(
            error.contains("pass the directory of one run's report"),
            "{error}"
        );

        fs::write(dir.path().join("manifest.json"), "{\"files\": 3}").unwrap();
        let error = verify(dir.path(), None).unwrap_err().to_string();
        assert!(error.contains("is not a hubreview manifest"), "{error}");
    }

    // Regression: a copy of a report, rewritten together with its manifest, verified
    // clean because the store was only asked about the directory's path.
    #[test]
    fn a_copy_of_the_directory_is_checked_against_the_run_its_manifest_names() {
        let dir = tempfile::tempdir().unwrap();
        let (out, store) = written(dir.path());
        let copy = dir.path().join("copy");
        fs::create_dir(&copy).unwrap();
        for entry in fs::read_dir(&out).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }

        let verification = verify(&copy, Some((&store, Path::new("s.db")))).unwrap();
        assert!(verification.is_clean(), "{verification}");
        assert!(verification.to_string().contains("is a copy of"));

        let csv = copy.join("findings.csv");
        fs::write(&csv, "kind\n").unwrap();
        let (sha256, bytes) = hash_file(&csv).unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(copy.join("manifest.json")).unwrap()).unwrap();
        for file in manifest["files"].as_array_mut().unwrap() {
            if file["name"] == "findings.csv" {
                file["sha256"] = sha256.clone().into();
                file["bytes"] = bytes.into();
            }
        }
        fs::write(copy.join("manifest.json"), manifest.to_string()).unwrap();
        let verification = verify(&copy, Some((&store, Path::new("s.db")))).unwrap();
        assert_eq!(
            verdicts(&verification),
            [(Verdict::Changed, "manifest.json")],
            "{verification}"
        );
    }

    #[test]
    fn a_report_the_store_has_no_record_of_is_not_verified() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _) = written(dir.path());
        let other = Store::open_in_memory().unwrap();
        let verification = verify(&out, Some((&other, Path::new("other.db")))).unwrap();
        assert!(verification.manifest_unchecked());
        assert!(!verification.is_clean());
    }

    #[test]
    fn the_link_type_the_report_writes_is_the_one_verify_reads() {
        let link = Link {
            run_id: 3,
            sha256: "ab".into(),
        };
        let read: ManifestLink =
            serde_json::from_value(serde_json::to_value(&link).unwrap()).unwrap();
        assert_eq!((read.run_id, read.sha256.as_str()), (3, "ab"));
    }
}
