//! The reconcile step: joins the SCIM snapshot with the IdP export (and the Hub members
//! export when there is one) in polars and turns the differences into findings.
//!
//! Keys are normalized the same way on both sides (NFC, trimmed, lowercased, empty is
//! null) and null keys never join.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a finding is about. One kind per event; a person can carry several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    TerminatedActive,
    Shadow,
    NotProvisioned,
    IdleSeat,
    PendingInvite,
    Privileged,
    Drift,
    IdentifierChanged,
    DataQuality,
}

impl Kind {
    /// Every kind, most severe first: the order of report sections.
    pub const ALL: [Kind; 9] = [
        Kind::TerminatedActive,
        Kind::Shadow,
        Kind::NotProvisioned,
        Kind::IdentifierChanged,
        Kind::IdleSeat,
        Kind::PendingInvite,
        Kind::Drift,
        Kind::Privileged,
        Kind::DataQuality,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TerminatedActive => "terminated_active",
            Kind::Shadow => "shadow",
            Kind::NotProvisioned => "not_provisioned",
            Kind::IdleSeat => "idle_seat",
            Kind::PendingInvite => "pending_invite",
            Kind::Privileged => "privileged",
            Kind::Drift => "drift",
            Kind::IdentifierChanged => "identifier_changed",
            Kind::DataQuality => "data_quality",
        }
    }

    /// The heading a reviewer reads.
    pub fn title(self) -> &'static str {
        match self {
            Kind::TerminatedActive => "Leavers with active Docker access",
            Kind::Shadow => "Shadow accounts",
            Kind::NotProvisioned => "Members not provisioned by SCIM",
            Kind::IdleSeat => "Idle seats",
            Kind::PendingInvite => "Pending invites",
            Kind::Privileged => "Owners and editors",
            Kind::Drift => "Changes since the previous snapshot",
            Kind::IdentifierChanged => "Changed identifiers",
            Kind::DataQuality => "Data quality",
        }
    }

    /// What the reviewer is expected to do.
    pub fn action(self) -> &'static str {
        match self {
            Kind::TerminatedActive => "revoke now",
            Kind::Shadow => "find an owner or revoke",
            Kind::NotProvisioned => "bring under SCIM or remove",
            Kind::IdleSeat => "reclaim the seat",
            Kind::PendingInvite => "cancel the invite",
            Kind::Privileged => "confirm or downgrade",
            Kind::Drift => "review",
            Kind::IdentifierChanged => "fix the account",
            Kind::DataQuality => "fix the source",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Info,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// One finding, with the evidence behind it.
///
/// `key` is stable across runs: the kind plus the SCIM id (else the Hub username, else the
/// normalized email), plus the change for drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    pub key: String,
    /// The SCIM id, when the finding is about a SCIM account.
    pub account_id: Option<String>,
    /// The Docker ID (`displayName`, or the Hub username).
    pub docker_id: Option<String>,
    /// The Docker-side email (`userName`).
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
    pub team: Option<String>,
    /// The IdP-side email of the matched person.
    pub person_email: Option<String>,
    /// The IdP status of the matched person, as written in the export.
    pub person_status: Option<String>,
    /// Which key matched the account to the person, or what was tried.
    pub match_basis: String,
    /// One sentence saying why this is a finding.
    pub reason: String,
    /// The fields and dates behind the finding.
    pub evidence: BTreeMap<String, String>,
    /// The exception that names this finding, in force or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<Acceptance>,
    /// The review date of the first run that found it open (kept by the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<NaiveDate>,
    /// Whole days from `first_seen` to this run's review date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_open: Option<i64>,
}

impl Finding {
    /// A finding about nobody yet: every account and person field empty.
    pub fn new(kind: Kind, severity: Severity, key: String) -> Finding {
        Finding {
            kind,
            severity,
            key,
            account_id: None,
            docker_id: None,
            email: None,
            name: None,
            role: None,
            team: None,
            person_email: None,
            person_status: None,
            match_basis: String::new(),
            reason: String::new(),
            evidence: BTreeMap::new(),
            exception: None,
            first_seen: None,
            days_open: None,
        }
    }

    /// Accepted by an exception still in force: shown, but not counted, and never a
    /// reason to fail the run.
    pub fn is_accepted(&self) -> bool {
        self.exception.as_ref().is_some_and(|e| !e.expired)
    }
}

/// The counts of one run: open findings per kind, `None` for a kind not evaluated.
pub type Counts = BTreeMap<Kind, Option<usize>>;

/// Seats purchased, in use and reclaimable, and what reclaiming them saves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeatSummary {
    pub purchased: Option<u64>,
    pub in_use: u64,
    /// Reclaimable seats by reason, each person counted once, under the first reason.
    pub reclaimable: BTreeMap<String, u64>,
    pub reclaimable_total: u64,
    pub seat_price: Option<f64>,
    pub monthly_saving: Option<f64>,
    pub yearly_saving: Option<f64>,
    /// When `in_use` could not be counted from the organization's members (the members
    /// list failed to read), what it was counted from instead and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use_note: Option<String>,
}

/// What reconciliation produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub counts: Counts,
    pub seats: SeatSummary,
    /// Why a kind was not evaluated, for the report.
    pub not_evaluated: BTreeMap<Kind, String>,
    /// Kinds evaluated from part of their sources only, with what could not be checked.
    /// Their count is what was found, never a clearance: `--fail-on` treats them as not
    /// evaluated, and the store resolves none of their findings.
    #[serde(default)]
    pub partial: BTreeMap<Kind, String>,
    /// Findings this run found resolved, filled in from the store's history.
    #[serde(default)]
    pub resolved: Vec<Resolved>,
}

impl Outcome {
    /// A kind's count as a reader sees it: the number, `none` when the kind was not
    /// evaluated, and the number "(checked in part)" when only part of its sources could
    /// be read (what was found, never a clearance).
    pub fn count_text(&self, kind: Kind, none: &str) -> String {
        let count = match self.not_evaluated.contains_key(&kind) {
            true => None,
            false => self.counts.get(&kind).copied().flatten(),
        };
        match count {
            Some(n) if self.partial.contains_key(&kind) => format!("{n} (checked in part)"),
            Some(n) => n.to_string(),
            None => none.to_owned(),
        }
    }
}

/// `Resolved::account_now` of a leaver whose SCIM account is gone or deactivated while
/// the person is still a member of the organization (a `not_provisioned` finding).
pub const STILL_A_MEMBER: &str = "still a member";

/// A finding that was open in an earlier run and is gone in this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    pub key: String,
    pub kind: Kind,
    /// The finding as the last run that saw it recorded it.
    pub finding: Option<Finding>,
    pub first_seen: Option<NaiveDate>,
    /// The review date of the last run that saw it open.
    pub last_seen: Option<NaiveDate>,
    /// The review date of the run that found it gone.
    pub resolved_on: Option<NaiveDate>,
    /// Whole days from `first_seen` to `resolved_on`.
    pub days_open: Option<i64>,
    /// For a leaver: whole days from the termination date (else from `first_seen`) to
    /// `resolved_on`.
    pub days_to_deprovision: Option<i64>,
    /// What `days_to_deprovision` counts from: `termination date` or `first seen`.
    pub deprovision_counted_from: Option<String>,
    /// For a leaver: the account in this run's snapshot, `deactivated`, `removed` or
    /// `active` (then the IdP, not a deprovisioning, closed the finding), or
    /// [`STILL_A_MEMBER`] (out of SCIM, but not out of the organization).
    pub account_now: Option<String>,
}

/// Hash maps keyed by normalized emails and ids: foldhash is several times faster than
/// SipHash on short keys, and nothing here hashes input an attacker could aim at one map.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use chrono::NaiveDate;
use polars::prelude::*;
use thiserror::Error;
use unicode_normalization::UnicodeNormalization;

use crate::activity::{Member, Seen};
use crate::config::ReviewConfig;
use crate::exceptions::{Acceptance, ExceptionFile};
use crate::hub::Invite;
use crate::idp::Person;
use crate::scim::Account;

mod keys;
use keys::{KeyId, Keys};

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("reconciliation failed in polars: {0}")]
    Polars(#[from] PolarsError),
}

/// Everything one reconciliation reads.
pub struct Inputs<'a> {
    pub accounts: &'a [Account],
    /// The accounts of the previous complete snapshot, for drift.
    pub previous: Option<&'a [Account]>,
    /// Which snapshot `previous` is ("snapshot 4 taken 2026-11-23T06:00:00Z"), for the
    /// evidence of drift findings.
    pub previous_snapshot: Option<String>,
    pub people: &'a [Person],
    /// The organization's members (Hub members API or export), for activity and members
    /// SCIM does not know.
    pub members: Option<&'a [Member]>,
    /// The pending invites from the Hub API, when they were read completely.
    pub invites: Option<&'a [Invite]>,
    /// Kinds whose source failed in this run (an incomplete Hub read), with why. They
    /// are not evaluated, whatever else was given.
    pub unavailable: Vec<(Kind, String)>,
    pub review: &'a ReviewConfig,
    /// Accepted findings (`review.exceptions`).
    pub exceptions: Option<&'a ExceptionFile>,
    pub as_of: NaiveDate,
}

/// A match key, normalized the same way on both sides: NFC, trimmed, lowercased; an
/// empty key is `None` and never joins.
pub fn normalize(value: &str) -> Option<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return None;
    }
    // ASCII is already in NFC: skip the composition pass for the common case.
    if trimmed.is_ascii() {
        return Some(trimmed.to_ascii_lowercase());
    }
    let mut key: String = trimmed.nfc().collect::<String>().trim().to_lowercase();
    // Lowercasing writes a word-final capital sigma as final sigma (ς), so `ΟΔΟΣ` and
    // `οδοσ` would differ: fold it to σ, as case folding does.
    if key.contains('ς') {
        key = key.replace('ς', "σ");
    }
    (!key.is_empty()).then_some(key)
}

fn normalize_opt(value: Option<&str>) -> Option<String> {
    value.and_then(normalize)
}

/// [`normalize`] without copying a value that is already normalized (trimmed, ASCII,
/// lowercase), as most emails are: for the large lookup maps.
fn normalize_ref(value: &str) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return None;
    }
    if trimmed.is_ascii() && !trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(Cow::Borrowed(trimmed));
    }
    normalize(trimmed).map(Cow::Owned)
}

fn normalize_ref_opt(value: Option<&str>) -> Option<std::borrow::Cow<'_, str>> {
    value.and_then(normalize_ref)
}

/// How an account was matched to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Basis {
    EmployeeId,
    UserName,
    UserNameAlias,
    SecondaryEmail,
    SecondaryEmailAlias,
}

impl Basis {
    fn describe(self) -> &'static str {
        match self {
            Basis::EmployeeId => "employee id (externalId/employeeNumber = IdP employee id)",
            Basis::UserName => "userName = IdP email",
            Basis::UserNameAlias => "userName = IdP alias",
            Basis::SecondaryEmail => "secondary email = IdP email",
            Basis::SecondaryEmailAlias => "secondary email = IdP alias",
        }
    }
}

/// Reconciles one snapshot with the IdP export and, where given, the members export.
///
/// The work is split over two threads (see [`Keys`] for the numbering of keys); the
/// findings come out in the same order as on one.
pub fn reconcile(inputs: &Inputs<'_>) -> Result<Outcome, ReconcileError> {
    let mut not_evaluated = BTreeMap::new();
    // What the sources can tell. A kind they cannot decide is "not evaluated", never 0.
    let members = inputs.members.filter(|m| !m.is_empty());
    let activity_known = members.is_some_and(|m| {
        m.iter()
            .any(|member| member.last_activity().0 != Seen::Unknown)
    });

    // Both cores: the keys are numbered by two threads; then what needs only the
    // accounts (roles, drift) and data quality run beside the matching.
    let keys = Keys::new(
        inputs.accounts,
        inputs.people,
        inputs.members.unwrap_or_default(),
    );
    let ((roles, drifted, quality), matched, provisioned) = std::thread::scope(|s| {
        let beside = s.spawn(|| {
            let roles = role_findings(inputs.accounts);
            let drifted = inputs.previous.map(|previous| {
                drift(
                    previous,
                    inputs.accounts,
                    inputs
                        .previous_snapshot
                        .as_deref()
                        .unwrap_or("the previous complete snapshot"),
                )
            });
            let quality = data_quality(&keys, inputs.accounts, inputs.people, inputs.as_of);
            (roles, drifted, quality)
        });
        let matched = matched_findings(&keys, inputs, members.filter(|_| activity_known));
        let provisioned = members.map(|m| not_provisioned(m, &keys, inputs));
        (joined(beside), matched, provisioned)
    });
    let (per_account, aliases) = matched?;

    let mut findings = per_account;
    findings.extend(roles);
    if inputs.accounts.iter().any(|a| a.active)
        && !inputs.accounts.iter().any(|a| a.active && a.role.is_some())
    {
        not_evaluated.insert(
            Kind::Privileged,
            "no active SCIM account carries a Docker role (`dockerRole` in the Docker \
             extension), so owners and editors cannot be told from members"
                .into(),
        );
    }
    let account_ids = inputs
        .accounts
        .iter()
        .any(|a| a.external_id.is_some() || a.employee_number.is_some());
    let person_ids = inputs.people.iter().any(|p| p.employee_id.is_some());
    if !account_ids || !person_ids {
        not_evaluated.insert(
            Kind::IdentifierChanged,
            if account_ids {
                "the IdP export gives nobody an employee id, so no account can be matched by \
                 id: map `idp.columns.employee_id`"
            } else {
                "no SCIM account carries an `externalId` or enterprise `employeeNumber`, so \
                 no account can be matched by id"
            }
            .into(),
        );
    }

    match drifted {
        Some(drifted) => findings.extend(drifted),
        None => {
            not_evaluated.insert(
                Kind::Drift,
                "no previous complete snapshot to compare with (this is the first)".into(),
            );
        }
    }

    match (inputs.members, provisioned) {
        (_, Some(provisioned)) => findings.extend(provisioned),
        (Some(_), None) => {
            let why = "the members list (Hub members API or export) holds nobody, and an \
                       organization has at least its owner: check `hub.org`, or that the \
                       export finished";
            not_evaluated.insert(Kind::IdleSeat, why.into());
            not_evaluated.insert(Kind::NotProvisioned, why.into());
        }
        (None, _) => {
            let why = "no member data: set `hub.org` and `hub.username` (the Hub members API) \
                       or `activity.file` (Docker Hub's members export)";
            not_evaluated.insert(Kind::IdleSeat, why.into());
            not_evaluated.insert(Kind::NotProvisioned, why.into());
        }
    }
    if let Some(listed) = members.filter(|_| !activity_known) {
        let from_api = listed
            .iter()
            .all(|m| m.source == crate::activity::MemberSource::HubApi);
        not_evaluated.insert(
            Kind::IdleSeat,
            match from_api {
                true => {
                    "the Docker Hub members API gave no member any activity (no \
                     last_logged_in_at or last_seen_at, as for an organization without \
                     Insights): add `activity.file` with Docker Hub's Insights export"
                }
                false => {
                    "the members export has no activity (no Last Logged-In Date or Last Seen \
                     Date column): use Docker Hub's Insights export"
                }
            }
            .into(),
        );
    }
    let status_known = inputs
        .people
        .iter()
        .any(|p| p.status.is_some() || p.termination_date.is_some());
    if !status_known {
        not_evaluated.insert(
            Kind::TerminatedActive,
            "the IdP export gives nobody a status or a termination date, so leavers cannot \
             be told apart: map `idp.columns.status` or `idp.columns.termination_date`"
                .into(),
        );
    }
    match inputs.invites {
        Some(invites) => findings.extend(pending_invites(invites, inputs)),
        None => {
            not_evaluated.insert(
                Kind::PendingInvite,
                "no invite data: invites come from the Docker Hub API; set `hub.org` and \
                 `hub.username`"
                    .into(),
            );
        }
    }
    for (kind, why) in &inputs.unavailable {
        not_evaluated.insert(*kind, why.clone());
    }
    // A members list that failed to read (or read as nobody) also hides the leavers who are
    // still members without an active SCIM account: the leavers found are not all of them.
    let members_failed = inputs
        .unavailable
        .iter()
        .find(|(kind, _)| *kind == Kind::NotProvisioned)
        .map(|(_, why)| why.as_str())
        .or_else(|| {
            inputs
                .members
                .is_some_and(|m| m.is_empty())
                .then_some("the members list holds nobody")
        });
    let mut partial = BTreeMap::new();
    if let Some(why) = members_failed
        && !not_evaluated.contains_key(&Kind::TerminatedActive)
    {
        partial.insert(
            Kind::TerminatedActive,
            format!(
                "only leavers with an active SCIM account were checked; leavers still members \
                 of the organization without one cannot be found, because {why}"
            ),
        );
    }

    findings.extend(quality);
    findings.extend(aliases);

    // One finding per key: the first (most specific) wins.
    let mut seen = HashSet::with_capacity_and_hasher(findings.len(), Default::default());
    let first: Vec<bool> = findings
        .iter()
        .map(|f| seen.insert(f.key.as_str()))
        .collect();
    drop(seen);
    let mut first = first.into_iter();
    findings.retain(|_| first.next().unwrap_or(false));

    if let Some(file) = inputs.exceptions {
        crate::exceptions::apply(&mut findings, file, inputs.as_of);
    }

    // Accepted findings stay in the list but are not counted.
    let mut counts: Counts = Kind::ALL.iter().map(|k| (*k, Some(0))).collect();
    for f in findings.iter().filter(|f| !f.is_accepted()) {
        if let Some(Some(n)) = counts.get_mut(&f.kind) {
            *n += 1;
        }
    }
    for kind in not_evaluated.keys() {
        counts.insert(*kind, None);
    }
    let seats = seats(&findings, &not_evaluated, members_failed, inputs);

    Ok(Outcome {
        findings,
        counts,
        seats,
        not_evaluated,
        partial,
        resolved: Vec::new(),
    })
}

/// A scoped thread's result; a panic in it goes on in the caller.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// What matching finds, account by account (shadow, terminated_active,
/// identifier_changed, idle_seat), and the possible aliases of the unmatched, in the
/// accounts' order. `members` is given when they carry activity.
fn matched_findings(
    keys: &Keys<'_>,
    inputs: &Inputs<'_>,
    members: Option<&[Member]>,
) -> Result<(Vec<Finding>, Vec<Finding>), ReconcileError> {
    let matches = match_accounts(keys, inputs.people, inputs.as_of)?;
    let member_index = members.map(|m| MemberIndex::new(m, keys));
    let near = near_misses(keys, inputs.accounts, &matches)?;

    let mut findings = Vec::new();
    for (i, (account, matched)) in inputs.accounts.iter().zip(&matches).enumerate() {
        if !account.active {
            continue;
        }
        let Some((person_idx, basis)) = matched else {
            let mut f = shadow(account);
            if let Some(candidates) = near.get(&i) {
                f.evidence.insert(
                    "possible_alias".into(),
                    describe_candidates(candidates, inputs.people),
                );
            }
            findings.push(f);
            continue;
        };
        let person = &inputs.people[*person_idx];
        if person.is_terminated(inputs.as_of) {
            findings.push(terminated_active(account, person, *basis, inputs.as_of));
            continue;
        }
        if *basis == Basis::EmployeeId
            && normalize_opt(account.email()) != normalize_opt(person.email.as_deref())
        {
            findings.push(identifier_changed(account, person));
        }
        if let Some(index) = &member_index
            && let Some(finding) = idle_seat((i, account), person, *basis, (index, keys), inputs)
        {
            findings.push(finding);
        }
    }

    let mut aliased: Vec<usize> = near.keys().copied().collect();
    aliased.sort_unstable();
    let aliases = aliased
        .into_iter()
        .map(|i| possible_alias(&inputs.accounts[i], &near[&i], inputs.people, inputs.as_of))
        .collect();
    Ok((findings, aliases))
}

/// privileged, unknown roles, and active accounts without a role beside others with one.
fn role_findings(accounts: &[Account]) -> Vec<Finding> {
    let mut findings = privileged(accounts);
    findings.extend(unknown_roles(accounts));
    let active = || accounts.iter().filter(|a| a.active);
    let without_role: Vec<&Account> = active().filter(|a| a.role.is_none()).collect();
    if !without_role.is_empty() && without_role.len() < active().count() {
        // Some accounts carry a role and these do not: owners among them would be missed.
        let mut f = base(
            Kind::DataQuality,
            Severity::Medium,
            "data_quality:accounts_without_role".into(),
            without_role[0],
        );
        f.account_id = None;
        f.docker_id = None;
        f.email = None;
        f.name = None;
        f.role = None;
        f.team = None;
        f.reason = format!(
            "{} active SCIM accounts carry no Docker role (`dockerRole`) while the others \
             do: any owner or editor among them is missing from privileged; check them in \
             Docker Hub",
            without_role.len()
        );
        let shown: Vec<&str> = without_role
            .iter()
            .take(20)
            .map(|a| a.id.as_str())
            .collect();
        f.evidence.insert("accounts".into(), shown.join(", "));
        f.evidence
            .insert("count".into(), without_role.len().to_string());
        findings.push(f);
    }
    findings
}

/// One way an unmatched account looks like an unmatched person.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NearMiss {
    person: usize,
    account_key: String,
    person_key: String,
    /// What differs: `+tag`, `guest #EXT# form`, `another domain`.
    how: Vec<&'static str>,
}

/// The most look-alike people listed for one account.
const MAX_NEAR_MISSES: usize = 5;

/// A match key taken apart for near-miss comparison: the local part without a `+tag`
/// and, for a guest `local_domain#EXT#@tenant` form, the guest's own address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    local: String,
    domain: String,
    tagged: bool,
    guest: bool,
}

fn shape(key: &str) -> Option<Shape> {
    let (mut local, mut domain) = key.rsplit_once('@')?;
    let mut guest = false;
    if let Some(pos) = local.find("#ext#")
        && let Some((l, d)) = local[..pos].rsplit_once('_')
    {
        (local, domain, guest) = (l, d, true);
    }
    let mut tagged = false;
    if let Some(pos) = local.find('+').filter(|p| *p > 0) {
        local = &local[..pos];
        tagged = true;
    }
    (!local.is_empty() && !domain.is_empty()).then(|| Shape {
        local: local.to_owned(),
        domain: domain.to_owned(),
        tagged,
        guest,
    })
}

/// Near misses: active accounts that matched nobody, compared with people nobody matched,
/// by local part (without `+tag`, guest forms decoded). They are reported as possible
/// aliases, never taken as matches. Only the unmatched are compared, so this stays cheap.
fn near_misses(
    keys: &Keys<'_>,
    accounts: &[Account],
    matches: &[Option<(usize, Basis)>],
) -> Result<HashMap<usize, Vec<NearMiss>>, ReconcileError> {
    let mut account_shapes: Vec<(usize, &str, Shape)> = Vec::new();
    for (i, a) in accounts.iter().enumerate() {
        if !a.active || matches[i].is_some() {
            continue;
        }
        let mut ids: Vec<KeyId> = keys.account.email_like(i).collect();
        ids.dedup();
        for k in ids {
            let text = keys.text(k);
            if let Some(sh) = shape(text) {
                account_shapes.push((i, text, sh));
            }
        }
    }
    if account_shapes.is_empty() {
        return Ok(HashMap::default());
    }
    let mut matched_people = vec![false; keys.person.len()];
    for (p, _) in matches.iter().flatten() {
        matched_people[*p] = true;
    }
    let mut person_shapes: Vec<(usize, &str, Shape)> = Vec::new();
    for (i, matched) in matched_people.iter().enumerate() {
        if *matched {
            continue;
        }
        for (k, _) in keys.person.email_like(i) {
            let text = keys.text(k);
            if let Some(sh) = shape(text) {
                person_shapes.push((i, text, sh));
            }
        }
    }

    // The unmatched people's shapes by local part, in their order. Each account takes the
    // first few look-alikes and stops: a local part shared by thousands (bot+1, bot+2, ...)
    // costs a few comparisons per account, never every pair.
    let mut by_local: HashMap<&str, Vec<usize>> = HashMap::default();
    for (j, (_, _, sh)) in person_shapes.iter().enumerate() {
        by_local.entry(sh.local.as_str()).or_default().push(j);
    }
    let mut out: HashMap<usize, Vec<NearMiss>> = HashMap::default();
    for (account, account_key, a_shape) in &account_shapes {
        let Some(candidates) = by_local.get(a_shape.local.as_str()) else {
            continue;
        };
        for &j in candidates {
            let (person, person_key, p_shape) = &person_shapes[j];
            let mut how = Vec::new();
            if a_shape.tagged || p_shape.tagged {
                how.push("+tag");
            }
            if a_shape.guest || p_shape.guest {
                how.push("guest #EXT# form");
            }
            if a_shape.domain != p_shape.domain {
                how.push("another domain");
            }
            if how.is_empty() {
                continue;
            }
            let list = out.entry(*account).or_default();
            if list.len() >= MAX_NEAR_MISSES {
                break;
            }
            if list.iter().all(|n| n.person != *person) {
                list.push(NearMiss {
                    person: *person,
                    account_key: (*account_key).to_owned(),
                    person_key: (*person_key).to_owned(),
                    how,
                });
            }
        }
    }
    Ok(out)
}

fn describe_candidates(candidates: &[NearMiss], people: &[Person]) -> String {
    candidates
        .iter()
        .map(|n| {
            format!(
                "`{}` ~ IdP row {} `{}` ({})",
                n.account_key,
                people[n.person].row,
                n.person_key,
                n.how.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn possible_alias(
    account: &Account,
    candidates: &[NearMiss],
    people: &[Person],
    as_of: NaiveDate,
) -> Finding {
    let key = format!("data_quality:possible_alias:{}", account.id);
    let mut f = base(Kind::DataQuality, Severity::Medium, key, account);
    let first = &candidates[0];
    let person = &people[first.person];
    f.person_email = person.email.clone();
    f.person_status = person.status.clone();
    f.match_basis = "not matched: near miss only (possible alias), never taken as a match".into();
    let leaver = candidates
        .iter()
        .any(|n| people[n.person].is_terminated(as_of));
    f.reason = format!(
        "possible alias: \"{}\" looks like \"{}\" of IdP row {} ({}){}; confirm and add the \
         address to the IdP as an alias, or fix the account",
        first.account_key,
        first.person_key,
        person.row,
        first.how.join(", "),
        match candidates.len() {
            1 => String::new(),
            n => format!(", and {} other look-alike(s)", n - 1),
        }
    );
    if leaver {
        f.severity = Severity::High;
        f.reason
            .push_str("; a look-alike person is terminated: check this account first");
    }
    f.evidence
        .insert("candidates".into(), describe_candidates(candidates, people));
    f.evidence.insert(
        "idp_rows".into(),
        candidates
            .iter()
            .map(|n| people[n.person].row.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    f
}

/// Matches every account to at most one person, in the order of the rules: employee id,
/// then `userName`, then any other email; IdP aliases count as emails. Among several
/// people on the same rule, a terminated one wins, so a duplicate cannot hide a leaver.
/// The joins run on key numbers ([`Keys`]): equal numbers are equal normalized keys.
fn match_accounts(
    keys: &Keys<'_>,
    people: &[Person],
    as_of: NaiveDate,
) -> Result<Vec<Option<(usize, Basis)>>, ReconcileError> {
    let accounts = keys.account.len();
    let account_ids: Vec<u32> = (0..accounts as u32).collect();
    let (email_account, email_key): (Vec<u32>, Vec<KeyId>) = (0..accounts)
        .flat_map(|i| keys.account.emails(i).map(move |k| (i as u32, k)))
        .unzip();

    let person_ids: Vec<u32> = (0..people.len() as u32).collect();
    let mut key_person = Vec::with_capacity(people.len());
    let mut key_value = Vec::with_capacity(people.len());
    let mut key_alias = Vec::with_capacity(people.len());
    for i in 0..people.len() {
        for (k, alias) in keys.person.email_like(i) {
            key_person.push(i as u32);
            key_value.push(k);
            key_alias.push(alias);
        }
    }

    let column = |name: &str, values: &mut dyn Iterator<Item = Option<KeyId>>| -> Column {
        UInt32Chunked::from_iter_options(name.into(), values)
            .into_series()
            .into()
    };
    let accounts_df = DataFrame::new(
        accounts,
        vec![
            Column::new("account".into(), account_ids),
            column("ext", &mut keys.account.employee_column()),
            column("user", &mut keys.account.user_column()),
        ],
    )?;
    let emails_df = df!("account" => email_account, "email" => email_key)?;
    let people_df = DataFrame::new(
        people.len(),
        vec![
            Column::new("person".into(), person_ids),
            column("emp", &mut keys.person.employee_column()),
        ],
    )?;
    let keys_df = df!("person" => key_person, "key" => key_value, "alias" => key_alias)?;

    // Null keys never join: said explicitly, whatever the library's default.
    let inner = || {
        let mut args = JoinArgs::new(JoinType::Inner);
        args.nulls_equal = false;
        args
    };
    let by_id = accounts_df
        .clone()
        .lazy()
        .select([col("account"), col("ext")])
        .join(people_df.lazy(), [col("ext")], [col("emp")], inner())
        .select([col("account"), col("person"), lit(false).alias("alias")])
        .collect()?;
    let by_user = accounts_df
        .lazy()
        .select([col("account"), col("user")])
        .join(keys_df.clone().lazy(), [col("user")], [col("key")], inner())
        .select([col("account"), col("person"), col("alias")])
        .collect()?;
    let by_email = emails_df
        .lazy()
        .join(keys_df.lazy(), [col("email")], [col("key")], inner())
        .select([col("account"), col("person"), col("alias")])
        .collect()?;

    // The best candidate per account: a terminated person beats an active one whatever
    // rule found them (so a duplicate row can never hide a leaver); then the earlier rule;
    // then the earlier row.
    let mut best: Vec<Option<(usize, Basis, bool, usize)>> = vec![None; accounts];
    let rules = [
        (by_id, Basis::EmployeeId, Basis::EmployeeId),
        (by_user, Basis::UserName, Basis::UserNameAlias),
        (by_email, Basis::SecondaryEmail, Basis::SecondaryEmailAlias),
    ];
    for (rank, (frame, direct, via_alias)) in rules.into_iter().enumerate() {
        let account = frame.column("account")?.u32()?.clone();
        let person = frame.column("person")?.u32()?.clone();
        let alias = frame.column("alias")?.bool()?.clone();
        for ((a, p), al) in account.iter().zip(person.iter()).zip(alias.iter()) {
            let (Some(a), Some(p)) = (a, p) else { continue };
            let (a, p) = (a as usize, p as usize);
            let basis = if al.unwrap_or(false) {
                via_alias
            } else {
                direct
            };
            let terminated = people[p].is_terminated(as_of);
            let better = match best[a] {
                None => true,
                Some((q, _, q_terminated, q_rank)) => {
                    (terminated, std::cmp::Reverse(rank), std::cmp::Reverse(p))
                        > (
                            q_terminated,
                            std::cmp::Reverse(q_rank),
                            std::cmp::Reverse(q),
                        )
                }
            };
            if better {
                best[a] = Some((p, basis, terminated, rank));
            }
        }
    }
    Ok(best
        .into_iter()
        .map(|b| b.map(|(p, basis, _, _)| (p, basis)))
        .collect())
}

fn base(kind: Kind, severity: Severity, key: String, account: &Account) -> Finding {
    Finding {
        account_id: Some(account.id.clone()),
        docker_id: account.display_name.clone(),
        email: account.email().map(str::to_owned),
        name: account.full_name(),
        role: account.role.clone(),
        team: account.team.clone(),
        ..Finding::new(kind, severity, key)
    }
}

fn with_person(mut f: Finding, person: &Person, basis: Basis) -> Finding {
    f.person_email = person.email.clone();
    f.person_status = person.status.clone();
    f.match_basis = basis.describe().to_owned();
    f.evidence.insert("idp_row".into(), person.row.to_string());
    if let Some(name) = &person.name {
        f.evidence.insert("idp_name".into(), name.clone());
    }
    if let Some(id) = &person.employee_id {
        f.evidence.insert("idp_employee_id".into(), id.clone());
    }
    if let Some(text) = &person.termination_text {
        f.evidence.insert("idp_termination".into(), text.clone());
    }
    if person.guest {
        f.evidence.insert("idp_guest".into(), "true".into());
    }
    if let Some(at) = person.last_sign_in {
        f.evidence.insert(
            "idp_last_sign_in".into(),
            at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    }
    f
}

fn account_key(kind: Kind, account: &Account) -> String {
    format!("{kind}:{}", account.id)
}

fn shadow(account: &Account) -> Finding {
    let mut f = base(
        Kind::Shadow,
        Severity::High,
        account_key(Kind::Shadow, account),
        account,
    );
    let mut tried = Vec::new();
    if let Some(id) = account
        .external_id
        .as_deref()
        .or(account.employee_number.as_deref())
    {
        tried.push(format!("employee id \"{id}\""));
    }
    if let Some(user) = &account.user_name {
        tried.push(format!("userName \"{user}\""));
    }
    for e in &account.emails {
        if Some(&e.value) != account.user_name.as_ref() {
            tried.push(format!("email \"{}\"", e.value));
        }
    }
    f.match_basis = if tried.is_empty() {
        "unmatched: the account has no key to try".into()
    } else {
        format!("unmatched: tried {}", tried.join(", "))
    };
    f.reason = "active Docker account that matches nobody in the IdP export".into();
    if let Some(created) = account.created {
        f.evidence.insert("created".into(), created.to_rfc3339());
    }
    f
}

fn terminated_active(
    account: &Account,
    person: &Person,
    basis: Basis,
    as_of: NaiveDate,
) -> Finding {
    let key = account_key(Kind::TerminatedActive, account);
    let mut f = with_person(
        base(Kind::TerminatedActive, Severity::Critical, key, account),
        person,
        basis,
    );
    f.reason = match (person.status_terminated, person.termination_date) {
        (true, _) => format!(
            "the IdP says \"{}\", but the Docker account is active",
            person.status.as_deref().unwrap_or("terminated")
        ),
        (false, Some(d)) => format!(
            "terminated on {d} ({} days before the review), but the Docker account is active",
            (as_of - d).num_days()
        ),
        (false, None) => "terminated, but the Docker account is active".into(),
    };
    if let Some(d) = person.termination_date {
        f.evidence.insert("termination_date".into(), d.to_string());
    }
    f
}

fn identifier_changed(account: &Account, person: &Person) -> Finding {
    let key = account_key(Kind::IdentifierChanged, account);
    let mut f = with_person(
        base(Kind::IdentifierChanged, Severity::Medium, key, account),
        person,
        Basis::EmployeeId,
    );
    f.reason = format!(
        "matched by employee id, but the IdP email \"{}\" differs from the Docker email \"{}\"",
        person.email.as_deref().unwrap_or("(none)"),
        account.email().unwrap_or("(none)")
    );
    f
}

/// The members, by key number: the first member with each email and each Docker ID.
struct MemberIndex<'a> {
    members: &'a [Member],
    by_email: Vec<u32>,
    by_username: Vec<u32>,
}

/// No member for this key.
const NO_MEMBER: u32 = u32::MAX;

impl<'a> MemberIndex<'a> {
    fn new(members: &'a [Member], keys: &Keys<'_>) -> Self {
        let mut by_email = keys.per_key(NO_MEMBER);
        let mut by_username = keys.per_key(NO_MEMBER);
        // Backwards, so the first member with a key is the one left in its slot.
        for m in (0..members.len()).rev() {
            if let Some(k) = keys.member.email(m) {
                by_email[k as usize] = m as u32;
            }
            if let Some(k) = keys.member.username(m) {
                by_username[k as usize] = m as u32;
            }
        }
        MemberIndex {
            members,
            by_email,
            by_username,
        }
    }

    fn get(&self, slots: &[u32], key: KeyId) -> Option<&'a Member> {
        let m = *slots.get(key as usize)?;
        (m != NO_MEMBER).then(|| &self.members[m as usize])
    }

    /// The member of the account at `account`: by email first, then by Docker ID.
    fn find(&self, keys: &Keys<'_>, account: usize) -> Option<(&'a Member, &'static str)> {
        keys.account
            .email_like(account)
            .find_map(|k| self.get(&self.by_email, k).map(|m| (m, "email")))
            .or_else(|| {
                keys.account
                    .docker(account)
                    .and_then(|k| self.get(&self.by_username, k).map(|m| (m, "Docker ID")))
            })
    }
}

fn idle_seat(
    (position, account): (usize, &Account),
    person: &Person,
    basis: Basis,
    (index, keys): (&MemberIndex<'_>, &Keys<'_>),
    inputs: &Inputs<'_>,
) -> Option<Finding> {
    let (member, joined_by) = index.find(keys, position)?;
    let idle_days = i64::from(inputs.review.idle_days);
    let (seen, field) = member.last_activity();
    // Decide first: most members are not idle, and a finding is built only for those that are.
    let (reason, evidence) = match seen {
        Seen::Unknown => return None,
        Seen::At(at) => {
            let days = (inputs.as_of - at.date_naive()).num_days();
            if days <= idle_days {
                return None;
            }
            (
                format!("no activity for {days} days (more than {idle_days})"),
                [
                    ("last_activity", at.to_rfc3339()),
                    (
                        "decided_by",
                        format!("{field} ({})", member.activity_source.label()),
                    ),
                ],
            )
        }
        Seen::Never => {
            let (joined, source) = match (member.date_joined, account.created) {
                (Some(d), _) => (
                    d,
                    format!("{} ({})", member.joined_field(), member.source.label()),
                ),
                (None, Some(d)) => (d, "meta.created (SCIM)".to_owned()),
                (None, None) => return None,
            };
            let days = (inputs.as_of - joined.date_naive()).num_days();
            if days <= idle_days {
                return None;
            }
            (
                format!("never signed in; joined {days} days ago (more than {idle_days})"),
                [("joined", joined.to_rfc3339()), ("decided_by", source)],
            )
        }
    };
    let key = account_key(Kind::IdleSeat, account);
    let mut f = with_person(
        base(Kind::IdleSeat, Severity::Low, key, account),
        person,
        basis,
    );
    member_evidence(&mut f, member);
    f.evidence
        .insert("member_matched_by".into(), joined_by.into());
    f.reason = reason;
    for (k, v) in evidence {
        f.evidence.insert(k.into(), v);
    }
    Some(f)
}

/// Where a member was read, for the evidence: the export's row or the API's position,
/// and whether the member is a guest.
fn member_evidence(f: &mut Finding, member: &Member) {
    let key = match member.source {
        crate::activity::MemberSource::Export => "member_row",
        crate::activity::MemberSource::HubApi => "hub_member_position",
    };
    f.evidence.insert(key.into(), member.row.to_string());
    f.evidence
        .insert("member_source".into(), member.source.label().into());
    if member.is_guest() {
        f.evidence.insert("guest".into(), "true".into());
    }
    if let Some(v) = &member.desktop_version {
        f.evidence.insert("desktop_version".into(), v.clone());
    }
}

/// Invites older than `review.invite_days` whole UTC days; exactly that many is not old.
fn pending_invites(invites: &[Invite], inputs: &Inputs<'_>) -> Vec<Finding> {
    let limit = i64::from(inputs.review.invite_days);
    let mut out = Vec::new();
    for invite in invites {
        let Some(created) = invite.created_at else {
            continue;
        };
        let days = (inputs.as_of - created.date_naive()).num_days();
        if days <= limit {
            continue;
        }
        let subject = invite
            .id
            .clone()
            .or_else(|| normalize_opt(invite.invitee.as_deref()))
            .unwrap_or_else(|| format!("position{}", invite.position));
        let mut evidence = BTreeMap::new();
        evidence.insert("invited_at".into(), created.to_rfc3339());
        evidence.insert("decided_by".into(), "created_at (Hub invites API)".into());
        evidence.insert("hub_invite_position".into(), invite.position.to_string());
        if let Some(id) = &invite.id {
            evidence.insert("invite_id".into(), id.clone());
        }
        if let Some(inviter) = &invite.inviter {
            evidence.insert("inviter".into(), inviter.clone());
        }
        out.push(Finding {
            docker_id: invite.docker_id().map(str::to_owned),
            email: invite.email().map(str::to_owned),
            role: invite.role.clone(),
            team: invite.team.clone(),
            match_basis: "an invite, not yet accepted".into(),
            reason: format!(
                "invited {days} days ago (more than {limit}) and not accepted; the invite \
                 holds a seat"
            ),
            evidence,
            ..Finding::new(
                Kind::PendingInvite,
                Severity::Low,
                format!("pending_invite:{subject}"),
            )
        });
    }
    out
}

fn is_privileged(role: Option<&str>) -> bool {
    matches!(
        role.map(str::to_ascii_lowercase).as_deref(),
        Some("owner" | "editor")
    )
}

/// A role that is none of Docker's (`owner`, `editor`, `member`): the account's rights are
/// unknown, so it is neither privileged nor cleared.
fn unknown_roles(accounts: &[Account]) -> Vec<Finding> {
    accounts
        .iter()
        .filter(|a| a.active)
        .filter_map(|a| {
            let role = a.role.as_deref()?;
            let known = matches!(
                role.trim().to_ascii_lowercase().as_str(),
                "owner" | "editor" | "member"
            );
            (!known).then(|| {
                let mut f = base(
                    Kind::DataQuality,
                    Severity::Medium,
                    format!("data_quality:unknown_role:{}", a.id),
                    a,
                );
                f.reason = format!(
                    "the Docker role \"{role}\" is none of owner, editor or member: check the \
                     account's rights in Docker Hub"
                );
                f.evidence.insert("role".into(), role.into());
                f
            })
        })
        .collect()
}

fn privileged(accounts: &[Account]) -> Vec<Finding> {
    accounts
        .iter()
        .filter(|a| a.active && is_privileged(a.role.as_deref()))
        .map(|a| {
            let mut f = base(
                Kind::Privileged,
                Severity::Info,
                account_key(Kind::Privileged, a),
                a,
            );
            f.reason = format!("current {}", a.role.as_deref().unwrap_or_default());
            f.match_basis = "role in the Docker extension (dockerRole)".into();
            f
        })
        .collect()
}

/// Every change between two snapshots' accounts, as drift findings.
pub fn drift(previous: &[Account], current: &[Account], compared_with: &str) -> Vec<Finding> {
    // The previous accounts by SCIM id (the last of an id listed twice, as a map would
    // keep), and which of them this snapshot still has: one table of positions, no map of
    // strings per side.
    use std::hash::BuildHasher;
    let hasher = foldhash::fast::RandomState::default();
    let id_hash = |id: &str| hasher.hash_one(id);
    let mut before: hashbrown::HashTable<u32> = hashbrown::HashTable::with_capacity(previous.len());
    for (i, b) in previous.iter().enumerate() {
        let entry = before.entry(
            id_hash(&b.id),
            |j| previous[*j as usize].id == b.id,
            |j| id_hash(&previous[*j as usize].id),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(mut slot) => *slot.get_mut() = i as u32,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(i as u32);
            }
        }
    }
    let find = |id: &str| {
        before
            .find(id_hash(id), |j| previous[*j as usize].id == id)
            .map(|j| *j as usize)
    };
    let mut still_here = vec![false; previous.len()];
    let mut out = Vec::new();
    let mut push = |account: &Account, change: String, severity: Severity, reason: String| {
        let mut f = base(
            Kind::Drift,
            severity,
            format!("drift:{}:{change}", account.id),
            account,
        );
        f.match_basis = match change.as_str() {
            "added" => "SCIM id absent from the previous snapshot",
            "removed" => "SCIM id absent from this snapshot",
            _ => "same SCIM id in both snapshots",
        }
        .into();
        f.evidence
            .insert("compared_with".into(), compared_with.to_owned());
        f.evidence.insert("change".into(), change);
        f.reason = reason;
        out.push(f);
    };

    for a in current {
        let Some(j) = find(&a.id) else {
            let severity = if is_privileged(a.role.as_deref()) {
                Severity::High
            } else {
                Severity::Info
            };
            push(
                a,
                "added".into(),
                severity,
                "account added since the previous snapshot".into(),
            );
            continue;
        };
        still_here[j] = true;
        let b = &previous[j];
        if b.active && !a.active {
            push(
                a,
                "deactivated".into(),
                Severity::Info,
                "account deactivated".into(),
            );
        }
        if !b.active && a.active {
            push(
                a,
                "reactivated".into(),
                Severity::Medium,
                "account reactivated".into(),
            );
        }
        if !b
            .role
            .as_deref()
            .unwrap_or("member")
            .eq_ignore_ascii_case(a.role.as_deref().unwrap_or("member"))
        {
            let (old, new) = (role_text(b), role_text(a));
            let escalation = is_privileged(Some(&new)) && rank(&new) > rank(&old);
            let (severity, reason) = if escalation {
                (
                    Severity::High,
                    format!("role escalated from {old} to {new}"),
                )
            } else {
                (
                    Severity::Medium,
                    format!("role changed from {old} to {new}"),
                )
            };
            push(a, format!("role:{old}->{new}"), severity, reason);
        }
        if b.team.as_deref().unwrap_or_default() != a.team.as_deref().unwrap_or_default() {
            let (old, new) = (
                b.team.clone().unwrap_or_default(),
                a.team.clone().unwrap_or_default(),
            );
            push(
                a,
                format!("team:{old}->{new}"),
                Severity::Low,
                format!("team changed from \"{old}\" to \"{new}\""),
            );
        }
        // Normalize only when the raw values differ: most accounts did not change.
        let (old, new) = match b.email() == a.email() {
            true => (None, None),
            false => (normalize_opt(b.email()), normalize_opt(a.email())),
        };
        if old != new {
            let (old, new) = (old.unwrap_or_default(), new.unwrap_or_default());
            push(
                a,
                format!("email:{old}->{new}"),
                Severity::Medium,
                format!("email changed from \"{old}\" to \"{new}\""),
            );
        }
    }
    for b in previous {
        if find(&b.id).is_none_or(|j| !still_here[j]) {
            push(
                b,
                "removed".into(),
                Severity::Info,
                "account removed since the previous snapshot".into(),
            );
        }
    }
    out
}

fn role_text(a: &Account) -> String {
    a.role
        .clone()
        .unwrap_or_else(|| "member".into())
        .to_ascii_lowercase()
}

fn rank(role: &str) -> u8 {
    match role {
        "owner" => 3,
        "editor" => 2,
        _ => 1,
    }
}

/// Key flags for not_provisioned: which SCIM accounts hold a key, as an email
/// (`userName` or `emails`) or as a Docker ID (`displayName`), and whether any of them
/// is active.
const SCIM_EMAIL: u8 = 1;
const SCIM_EMAIL_ACTIVE: u8 = 2;
const SCIM_DOCKER_ID: u8 = 4;
const SCIM_DOCKER_ID_ACTIVE: u8 = 8;

/// No person for this key.
const NO_PERSON: u32 = u32::MAX;

fn not_provisioned(members: &[Member], keys: &Keys<'_>, inputs: &Inputs<'_>) -> Vec<Finding> {
    // Each key of a SCIM account, and whether any account holding it is active: a member
    // whose only SCIM account is deactivated still holds access.
    let mut scim = keys.per_key(0u8);
    for (i, a) in inputs.accounts.iter().enumerate() {
        let (email, docker) = match a.active {
            true => (
                SCIM_EMAIL | SCIM_EMAIL_ACTIVE,
                SCIM_DOCKER_ID | SCIM_DOCKER_ID_ACTIVE,
            ),
            false => (SCIM_EMAIL, SCIM_DOCKER_ID),
        };
        for k in keys.account.email_like(i) {
            scim[k as usize] |= email;
        }
        if let Some(k) = keys.account.docker(i) {
            scim[k as usize] |= docker;
        }
    }
    // The person of each email or alias; terminated wins, as in matching.
    let mut person_of = keys.per_key(NO_PERSON);
    for (i, p) in inputs.people.iter().enumerate() {
        for (k, _) in keys.person.email_like(i) {
            let slot = &mut person_of[k as usize];
            if *slot == NO_PERSON
                || (p.is_terminated(inputs.as_of)
                    && !inputs.people[*slot as usize].is_terminated(inputs.as_of))
            {
                *slot = i as u32;
            }
        }
    }

    let mut out = Vec::new();
    for (j, m) in members.iter().enumerate() {
        if m.kind
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case("invitee"))
        {
            continue;
        }
        let (email, username) = (keys.member.email(j), keys.member.username(j));
        let flags = email.map_or(0, |k| scim[k as usize] & (SCIM_EMAIL | SCIM_EMAIL_ACTIVE))
            | username.map_or(0, |k| {
                scim[k as usize] & (SCIM_DOCKER_ID | SCIM_DOCKER_ID_ACTIVE)
            });
        if flags & (SCIM_EMAIL_ACTIVE | SCIM_DOCKER_ID_ACTIVE) != 0 {
            continue;
        }
        let deactivated = flags != 0;
        let subject = username
            .or(email)
            .map(|k| keys.text(k).to_owned())
            .unwrap_or_else(|| format!("row{}", m.row));
        let person = email
            .map(|k| person_of[k as usize])
            .filter(|p| *p != NO_PERSON)
            .map(|p| &inputs.people[p as usize]);
        let what = if deactivated {
            "Hub member whose SCIM account is deactivated (still a member)"
        } else {
            "Hub member with no SCIM account"
        };
        let (severity, reason) = match person {
            Some(p) if p.is_terminated(inputs.as_of) => (
                Severity::Critical,
                format!(
                    "{what}; the IdP says \"{}\"",
                    p.status.as_deref().unwrap_or("terminated")
                ),
            ),
            Some(p) => (
                Severity::High,
                format!(
                    "{what}; the IdP knows the person (\"{}\")",
                    p.status.as_deref().unwrap_or("active")
                ),
            ),
            None => (Severity::High, format!("{what}, unknown to the IdP")),
        };
        let reason = if m.is_guest() {
            format!("{reason} (a guest member)")
        } else {
            reason
        };
        let mut f = Finding {
            docker_id: m.username.clone(),
            email: m.email.clone(),
            name: m.name.clone(),
            role: m.permission.clone(),
            team: m.teams.clone(),
            person_email: person.and_then(|p| p.email.clone()),
            person_status: person.and_then(|p| p.status.clone()),
            match_basis: format!(
                "no {}SCIM account by email or Docker ID; {}",
                if deactivated { "active " } else { "" },
                if person.is_some() {
                    "IdP email matched"
                } else {
                    "no IdP email matched"
                }
            ),
            reason,
            ..Finding::new(
                Kind::NotProvisioned,
                severity,
                format!("not_provisioned:{subject}"),
            )
        };
        member_evidence(&mut f, m);
        if let Some(d) = m.date_joined {
            f.evidence.insert("date_joined".into(), d.to_rfc3339());
        }
        out.push(f);
        // A leaver who is still a member has access as surely as one with an active SCIM
        // account: a leaver too, so the headline count of leavers never reads 0 for them.
        if let Some(p) = person.filter(|p| p.is_terminated(inputs.as_of)) {
            let mut leaver = out[out.len() - 1].clone();
            leaver.kind = Kind::TerminatedActive;
            leaver.severity = Severity::Critical;
            leaver.key = format!("terminated_active:{subject}");
            leaver.reason = format!(
                "the IdP says \"{}\", but the person is still a member of the organization \
                 ({})",
                p.status.as_deref().unwrap_or("terminated"),
                if deactivated {
                    "the SCIM account is deactivated"
                } else {
                    "no SCIM account"
                }
            );
            leaver.match_basis = "Hub member's email = IdP email".into();
            out.push(leaver);
        }
    }
    out
}

fn data_quality(
    keys: &Keys<'_>,
    accounts: &[Account],
    people: &[Person],
    as_of: NaiveDate,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let finding = |key: String, reason: String, evidence: BTreeMap<String, String>| Finding {
        reason,
        evidence,
        ..Finding::new(Kind::DataQuality, Severity::Medium, key)
    };

    // The first row of each email, and the later rows of the few emails listed twice: no
    // list per person.
    let mut first_by_email = keys.per_key(NO_PERSON);
    let mut repeats: HashMap<KeyId, Vec<&Person>> = HashMap::default();
    for (i, p) in people.iter().enumerate() {
        match keys.person.email(i) {
            Some(k) => match first_by_email[k as usize] {
                NO_PERSON => first_by_email[k as usize] = i as u32,
                first => repeats
                    .entry(k)
                    .or_insert_with(|| vec![&people[first as usize]])
                    .push(p),
            },
            None if p.aliases.is_empty() && keys.person.employee(i).is_none() => {
                let mut f = finding(
                    format!("data_quality:person_without_key:row{}", p.row),
                    format!(
                        "IdP row {} has no email, alias or employee id: it can match nobody",
                        p.row
                    ),
                    BTreeMap::from([("idp_row".to_string(), p.row.to_string())]),
                );
                f.name = p.name.clone();
                out.push(f);
            }
            None => {}
        }
    }
    let mut duplicates: Vec<(String, Vec<&Person>)> = repeats
        .into_iter()
        .map(|(email, rows)| (keys.text(email).to_owned(), rows))
        .collect();
    duplicates.sort_by(|x, y| x.0.cmp(&y.0));
    for (email, rows) in duplicates {
        let listed: Vec<String> = rows.iter().map(|p| p.row.to_string()).collect();
        let terminated = rows.iter().any(|p| p.is_terminated(as_of));
        let mut f = finding(
            format!("data_quality:duplicate_person:{email}"),
            format!(
                "the IdP lists \"{email}\" {} times (rows {}){}",
                rows.len(),
                listed.join(", "),
                if terminated {
                    "; one is terminated, so terminated wins"
                } else {
                    ""
                }
            ),
            BTreeMap::from([("idp_rows".to_string(), listed.join(","))]),
        );
        f.person_email = Some(email);
        f.match_basis = "duplicate IdP email".into();
        out.push(f);
    }
    for a in accounts {
        let text = |v: Option<&str>| v.is_some_and(|v| !v.trim().is_empty());
        let has_key = text(a.user_name.as_deref())
            || a.emails.iter().any(|e| text(Some(&e.value)))
            || text(a.external_id.as_deref())
            || text(a.employee_number.as_deref());
        if !has_key {
            let mut f = finding(
                format!("data_quality:account_without_key:{}", a.id),
                "the SCIM account has no userName, email or external id: it can match nobody"
                    .into(),
                BTreeMap::new(),
            );
            f.account_id = Some(a.id.clone());
            f.docker_id = a.display_name.clone();
            out.push(f);
        }
        let primaries = a.emails.iter().filter(|e| e.primary).count();
        if primaries > 1 {
            let mut f = finding(
                format!("data_quality:several_primary_emails:{}", a.id),
                format!("the SCIM account has {primaries} primary emails"),
                BTreeMap::new(),
            );
            f.account_id = Some(a.id.clone());
            f.email = a.email().map(str::to_owned);
            out.push(f);
        }
    }
    out
}

/// Seats in use and reclaimable; each account is counted once, under its first reason.
/// `members_failed` says why the members list could not be used, when it was expected.
fn seats(
    findings: &[Finding],
    not_evaluated: &BTreeMap<Kind, String>,
    members_failed: Option<&str>,
    inputs: &Inputs<'_>,
) -> SeatSummary {
    let members = match inputs.members.filter(|m| !m.is_empty()) {
        Some(members) => members.len() as u64,
        None => inputs.accounts.iter().filter(|a| a.active).count() as u64,
    };
    // Counted from SCIM because the members list failed, or without the invitees because
    // the invites did: say so rather than give the lower figure as the whole.
    let mut notes = Vec::new();
    if let Some(why) = members_failed {
        notes.push(format!(
            "counted from active SCIM accounts, so members without one are missing ({why})"
        ));
    }
    if inputs.invites.is_none()
        && let Some((_, why)) = inputs
            .unavailable
            .iter()
            .find(|(kind, _)| *kind == Kind::PendingInvite)
    {
        notes.push(format!(
            "pending invites, which hold seats too, are not counted ({why})"
        ));
    }
    let in_use_note = (!notes.is_empty()).then(|| notes.join("; "));
    // Invitees hold seats too; one the members list already shows as an invitee counts once.
    let invited = inputs.invites.map_or(0, |invites| {
        let listed: HashSet<std::borrow::Cow<'_, str>> = inputs
            .members
            .unwrap_or_default()
            .iter()
            .flat_map(|m| [m.email.as_deref(), m.username.as_deref()])
            .filter_map(normalize_ref_opt)
            .collect();
        invites
            .iter()
            .filter(|i| {
                normalize_ref_opt(i.invitee.as_deref()).is_none_or(|k| !listed.contains(k.as_ref()))
            })
            .count() as u64
    });
    let in_use = members + invited;
    let mut counted = HashSet::default();
    let mut reclaimable = BTreeMap::new();
    // Reasons a seat can be taken back, most certain first; a kind that was not evaluated
    // is left out rather than counted as zero.
    for kind in [
        Kind::TerminatedActive,
        Kind::Shadow,
        Kind::IdleSeat,
        Kind::PendingInvite,
    ]
    .into_iter()
    .filter(|k| !not_evaluated.contains_key(k))
    {
        let n = findings
            .iter()
            .filter(|f| f.kind == kind && !f.is_accepted())
            .filter(|f| {
                let who = f
                    .account_id
                    .clone()
                    .or_else(|| f.docker_id.clone())
                    .or_else(|| f.email.clone());
                who.is_none_or(|w| counted.insert(w))
            })
            .count() as u64;
        reclaimable.insert(kind.as_str().to_owned(), n);
    }
    let reclaimable_total = reclaimable.values().sum();
    let price = inputs.review.seat_price;
    SeatSummary {
        purchased: inputs.review.seats_purchased,
        in_use,
        reclaimable,
        reclaimable_total,
        seat_price: price,
        monthly_saving: price.map(|p| p * reclaimable_total as f64),
        yearly_saving: price.map(|p| p * reclaimable_total as f64 * 12.0),
        in_use_note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::{Member, Seen};
    use crate::exceptions::ExceptionFile;
    use crate::scim::{Account, Email};
    use chrono::{DateTime, Utc};

    fn as_of() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
    }

    fn account(id: &str, email: Option<&str>) -> Account {
        Account {
            id: id.into(),
            user_name: email.map(str::to_owned),
            external_id: None,
            employee_number: None,
            display_name: Some(format!("docker-{id}")),
            given_name: None,
            family_name: None,
            active: true,
            emails: email
                .map(|e| {
                    vec![Email {
                        value: e.into(),
                        primary: true,
                        kind: None,
                    }]
                })
                .unwrap_or_default(),
            groups: vec![],
            role: Some("member".into()),
            team: None,
            org: None,
            created: None,
            last_modified: None,
        }
    }

    fn person(row: usize, email: Option<&str>, terminated: bool) -> Person {
        Person {
            row,
            email: email.map(str::to_owned),
            employee_id: None,
            aliases: vec![],
            name: None,
            department: None,
            status: Some(if terminated { "SUSPENDED" } else { "ACTIVE" }.into()),
            status_terminated: terminated,
            termination_date: None,
            termination_text: None,
            guest: false,
            last_sign_in: None,
        }
    }

    fn member(email: &str, logged_in: Seen, joined: Option<&str>) -> Member {
        Member {
            row: 2,
            name: None,
            username: None,
            email: Some(email.into()),
            kind: Some("member".into()),
            permission: None,
            teams: None,
            date_joined: joined.map(at),
            last_logged_in: logged_in,
            last_seen: Seen::Unknown,
            desktop_version: None,
            source: crate::activity::MemberSource::Export,
            activity_source: crate::activity::MemberSource::Export,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn run(
        accounts: &[Account],
        people: &[Person],
        members: Option<&[Member]>,
        previous: Option<&[Account]>,
    ) -> Outcome {
        let review = ReviewConfig::default();
        reconcile(&Inputs {
            accounts,
            previous,
            previous_snapshot: None,
            people,
            members,
            invites: None,
            unavailable: Vec::new(),
            review: &review,
            exceptions: None,
            as_of: as_of(),
        })
        .unwrap()
    }

    fn keys(outcome: &Outcome, kind: Kind) -> Vec<String> {
        outcome
            .findings
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.key.clone())
            .collect()
    }

    #[test]
    fn keys_normalize_case_space_and_unicode_form() {
        assert_eq!(
            normalize(" Jane.Doe@Example.COM "),
            normalize("jane.doe@example.com")
        );
        let nfd = "jose\u{301}@example.com";
        let nfc = "jos\u{e9}@example.com";
        assert_eq!(normalize(nfd), normalize(nfc));
        assert_eq!(normalize("   "), None);
        // Regression: a final capital sigma lowercased to ς and never matched σ.
        assert_eq!(
            normalize("ΟΔΟΣ@acme.example"),
            normalize("οδοσ@acme.example")
        );
        assert_eq!(
            normalize("οδος@acme.example"),
            normalize("ΟΔΟΣ@acme.example")
        );
    }

    /// What one account should come to: matched to a person (by index) on a rule, or
    /// unmatched, with or without a possible alias (the `how` it must name).
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Expect {
        Matched(usize, Basis),
        Unmatched,
        Alias(&'static str),
    }

    #[test]
    fn matching_rules_decide_each_account_in_order() {
        struct Case {
            name: &'static str,
            accounts: Vec<Account>,
            people: Vec<Person>,
            expect: Vec<Expect>,
        }
        let mut by_id = account("a", Some("new.name@example.com"));
        by_id.external_id = Some("00042".into());
        let mut renamed = person(2, Some("old.name@example.com"), false);
        renamed.employee_id = Some("00042".into());
        let mut by_number = account("a", Some("x@example.com"));
        by_number.employee_number = Some(" 7 ".into());
        let mut numbered = person(2, Some("y@example.com"), false);
        numbered.employee_id = Some("7".into());
        let mut id_beats_email = account("a", Some("jane@example.com"));
        id_beats_email.external_id = Some("E1".into());
        let mut id_person = person(3, Some("j.doe@example.com"), false);
        id_person.employee_id = Some("e1".into());
        let mut secondary = account("a", Some("x@other.example"));
        secondary.emails.push(Email {
            value: "jane@example.com".into(),
            primary: false,
            kind: None,
        });
        let mut aliased = person(2, Some("jane.doe@example.com"), false);
        aliased.aliases = vec!["JDoe@Example.com".into()];
        let mut empty_id = account("a", Some("a@example.com"));
        empty_id.external_id = Some("  ".into());
        let mut no_id = person(2, Some("b@example.com"), false);
        no_id.employee_id = Some("".into());
        let guest = "jane.doe_gmail.example#EXT#@acme.onmicrosoft.example";

        let cases = [
            Case {
                name: "Jane.Doe@Example.COM against jane.doe@example.com",
                accounts: vec![account("a", Some("Jane.Doe@Example.COM"))],
                people: vec![person(2, Some("jane.doe@example.com"), false)],
                expect: vec![Expect::Matched(0, Basis::UserName)],
            },
            Case {
                name: "spaces around the IdP email",
                accounts: vec![account("a", Some("jane@example.com"))],
                people: vec![person(2, Some("  jane@example.com "), false)],
                expect: vec![Expect::Matched(0, Basis::UserName)],
            },
            Case {
                name: "NFD against NFC",
                accounts: vec![account("a", Some("jose\u{301}@example.com"))],
                people: vec![person(2, Some("jos\u{e9}@example.com"), false)],
                expect: vec![Expect::Matched(0, Basis::UserName)],
            },
            Case {
                name: "a renamed person matched by employee id",
                accounts: vec![by_id],
                people: vec![renamed],
                expect: vec![Expect::Matched(0, Basis::EmployeeId)],
            },
            Case {
                name: "enterprise employeeNumber, trimmed",
                accounts: vec![by_number],
                people: vec![numbered],
                expect: vec![Expect::Matched(0, Basis::EmployeeId)],
            },
            Case {
                name: "employee id wins over userName",
                accounts: vec![id_beats_email],
                people: vec![person(2, Some("jane@example.com"), false), id_person],
                expect: vec![Expect::Matched(1, Basis::EmployeeId)],
            },
            Case {
                name: "an empty employee id joins nothing",
                accounts: vec![empty_id],
                people: vec![no_id],
                expect: vec![Expect::Unmatched],
            },
            Case {
                name: "secondary SCIM email",
                accounts: vec![secondary],
                people: vec![person(2, Some("jane@example.com"), false)],
                expect: vec![Expect::Matched(0, Basis::SecondaryEmail)],
            },
            Case {
                name: "IdP alias",
                accounts: vec![account("a", Some("jdoe@example.com"))],
                people: vec![aliased],
                expect: vec![Expect::Matched(0, Basis::UserNameAlias)],
            },
            Case {
                name: "two service accounts without email against an HR row without email",
                accounts: vec![account("svc1", None), account("svc2", None)],
                people: vec![person(2, None, false)],
                expect: vec![Expect::Unmatched, Expect::Unmatched],
            },
            Case {
                name: "a person listed twice: the terminated row wins",
                accounts: vec![account("a", Some("a@example.com"))],
                people: vec![
                    person(2, Some("a@example.com"), false),
                    person(3, Some("A@Example.com"), true),
                ],
                expect: vec![Expect::Matched(1, Basis::UserName)],
            },
            Case {
                name: "a +tag address is a possible alias, not a match",
                accounts: vec![account("a", Some("jane+docker@example.com"))],
                people: vec![person(2, Some("jane@example.com"), false)],
                expect: vec![Expect::Alias("+tag")],
            },
            Case {
                name: "the same local part on another domain is a possible alias",
                accounts: vec![account("a", Some("jane.doe@gmail.example"))],
                people: vec![person(2, Some("jane.doe@example.com"), false)],
                expect: vec![Expect::Alias("another domain")],
            },
            Case {
                name: "a guest #EXT# form is a possible alias",
                accounts: vec![account("a", Some(guest))],
                people: vec![person(2, Some("Jane.Doe@gmail.example"), false)],
                expect: vec![Expect::Alias("guest #EXT# form")],
            },
            Case {
                name: "a look-alike of a person someone else matched is no alias",
                accounts: vec![
                    account("a", Some("jane@example.com")),
                    account("b", Some("jane+ci@example.com")),
                ],
                people: vec![person(2, Some("jane@example.com"), false)],
                expect: vec![Expect::Matched(0, Basis::UserName), Expect::Unmatched],
            },
            Case {
                name: "different local parts are no alias",
                accounts: vec![account("a", Some("janet@example.com"))],
                people: vec![person(2, Some("jane@example.com"), false)],
                expect: vec![Expect::Unmatched],
            },
        ];
        for case in cases {
            let numbered = Keys::new(&case.accounts, &case.people, &[]);
            let matches = match_accounts(&numbered, &case.people, as_of()).unwrap();
            let near = near_misses(&numbered, &case.accounts, &matches).unwrap();
            let got: Vec<Expect> = matches
                .iter()
                .enumerate()
                .map(|(i, m)| match (m, near.get(&i)) {
                    (Some((p, basis)), _) => Expect::Matched(*p, *basis),
                    (None, None) => Expect::Unmatched,
                    (None, Some(n)) => {
                        let how = n[0].how.join(", ");
                        match case.expect[i] {
                            Expect::Alias(want) if how.contains(want) => Expect::Alias(want),
                            _ => Expect::Alias("a near miss of another kind"),
                        }
                    }
                })
                .collect();
            assert_eq!(got, case.expect, "{}", case.name);

            // The outcome agrees: every unmatched active account is a shadow, and only a
            // near miss is a possible alias.
            let outcome = run(&case.accounts, &case.people, None, None);
            let unmatched = case
                .expect
                .iter()
                .filter(|e| !matches!(e, Expect::Matched(..)))
                .count();
            assert_eq!(
                keys(&outcome, Kind::Shadow).len(),
                unmatched,
                "{}",
                case.name
            );
            let aliases = case
                .expect
                .iter()
                .filter(|e| matches!(e, Expect::Alias(_)))
                .count();
            let found = keys(&outcome, Kind::DataQuality)
                .iter()
                .filter(|k| k.contains(":possible_alias:"))
                .count();
            assert_eq!(found, aliases, "{}", case.name);
        }
    }

    #[test]
    fn a_possible_alias_names_the_person_and_is_high_when_that_person_left() {
        let accounts = [account("a", Some("jane+docker@example.com"))];
        let people = [person(7, Some("jane@example.com"), true)];
        let outcome = run(&accounts, &people, None, None);
        let alias = outcome
            .findings
            .iter()
            .find(|f| f.key == "data_quality:possible_alias:a")
            .expect("a possible alias");
        assert_eq!(alias.severity, Severity::High);
        assert_eq!(alias.person_email.as_deref(), Some("jane@example.com"));
        assert!(alias.reason.contains("IdP row 7"), "{}", alias.reason);
        assert!(alias.reason.contains("terminated"), "{}", alias.reason);
        assert!(alias.match_basis.contains("never taken as a match"));
        assert_eq!(alias.evidence["idp_rows"], "7");
        let shadow = outcome
            .findings
            .iter()
            .find(|f| f.kind == Kind::Shadow)
            .unwrap();
        assert!(shadow.evidence["possible_alias"].contains("IdP row 7"));
        // Not a match: the leaver is not reported as terminated_active.
        assert!(keys(&outcome, Kind::TerminatedActive).is_empty());
    }

    #[test]
    fn near_misses_list_at_most_a_few_look_alikes_per_account() {
        let accounts = [account("a", Some("ops@example.com"))];
        let people: Vec<Person> = (0..20)
            .map(|i| person(i + 2, Some(&format!("ops@team{i}.example")), false))
            .collect();
        let numbered = Keys::new(&accounts, &people, &[]);
        let matches = match_accounts(&numbered, &people, as_of()).unwrap();
        let near = near_misses(&numbered, &accounts, &matches).unwrap();
        assert_eq!(near[&0].len(), MAX_NEAR_MISSES);
    }

    #[test]
    fn accounts_without_email_never_match_a_row_without_email() {
        let accounts = [account("svc1", None), account("svc2", None)];
        let people = [person(2, None, false)];
        let outcome = run(&accounts, &people, None, None);
        assert_eq!(keys(&outcome, Kind::Shadow), ["shadow:svc1", "shadow:svc2"]);
        let quality = keys(&outcome, Kind::DataQuality);
        assert!(quality.contains(&"data_quality:person_without_key:row2".to_string()));
        assert!(quality.contains(&"data_quality:account_without_key:svc1".to_string()));
    }

    #[test]
    fn a_leaver_with_an_active_account_is_terminated_active_and_an_inactive_one_is_not() {
        let mut gone = account("b", Some("b@example.com"));
        gone.active = false;
        let accounts = [account("a", Some("a@example.com")), gone];
        let people = [
            person(2, Some("a@example.com"), true),
            person(3, Some("b@example.com"), true),
        ];
        let outcome = run(&accounts, &people, None, None);
        assert_eq!(
            keys(&outcome, Kind::TerminatedActive),
            ["terminated_active:a"]
        );
        assert!(keys(&outcome, Kind::Shadow).is_empty());
        let f = &outcome.findings[0];
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.match_basis, "userName = IdP email");
    }

    #[test]
    fn a_termination_date_on_or_before_the_review_date_makes_a_leaver() {
        let mut leaving = person(2, Some("a@example.com"), false);
        leaving.termination_date = Some(as_of());
        let outcome = run(
            &[account("a", Some("a@example.com"))],
            &[leaving.clone()],
            None,
            None,
        );
        assert_eq!(keys(&outcome, Kind::TerminatedActive).len(), 1);
        leaving.termination_date = as_of().succ_opt();
        let outcome = run(
            &[account("a", Some("a@example.com"))],
            &[leaving],
            None,
            None,
        );
        assert!(keys(&outcome, Kind::TerminatedActive).is_empty());
    }

    #[test]
    fn a_person_listed_twice_is_data_quality_and_terminated_wins() {
        let people = [
            person(2, Some("a@example.com"), false),
            person(3, Some("A@example.com"), true),
        ];
        let outcome = run(&[account("a", Some("a@example.com"))], &people, None, None);
        assert_eq!(
            keys(&outcome, Kind::TerminatedActive),
            ["terminated_active:a"]
        );
        assert_eq!(
            keys(&outcome, Kind::DataQuality),
            ["data_quality:duplicate_person:a@example.com"]
        );
    }

    #[test]
    fn a_renamed_person_matched_by_employee_id_is_identifier_changed() {
        let mut a = account("a", Some("new@example.com"));
        a.external_id = Some("00042".into());
        let mut p = person(2, Some("old@example.com"), false);
        p.employee_id = Some("00042".into());
        let outcome = run(&[a], &[p], None, None);
        assert_eq!(
            keys(&outcome, Kind::IdentifierChanged),
            ["identifier_changed:a"]
        );
        assert!(keys(&outcome, Kind::Shadow).is_empty());
    }

    #[test]
    fn idle_is_more_than_idle_days_and_exactly_idle_days_is_not() {
        let cases = [
            ("2026-09-01T23:59:59Z", false), // 90 days
            ("2026-08-31T00:00:00Z", true),  // 91 days
            ("2026-11-29T10:00:00Z", false),
        ];
        for (last, idle) in cases {
            let accounts = [account("a", Some("a@example.com"))];
            let people = [person(2, Some("a@example.com"), false)];
            let members = [member("a@example.com", Seen::At(at(last)), None)];
            let outcome = run(&accounts, &people, Some(&members), None);
            assert_eq!(
                keys(&outcome, Kind::IdleSeat).len(),
                usize::from(idle),
                "{last}"
            );
        }
    }

    #[test]
    fn never_signed_in_is_idle_only_after_idle_days_of_membership_and_unknown_is_never_idle() {
        let cases = [
            (Seen::Never, Some("2026-08-01T00:00:00Z"), true),
            (Seen::Never, Some("2026-11-20T00:00:00Z"), false),
            (Seen::Unknown, Some("2020-01-01T00:00:00Z"), false),
        ];
        for (seen, joined, idle) in cases {
            let accounts = [account("a", Some("a@example.com"))];
            let people = [person(2, Some("a@example.com"), false)];
            let members = [member("a@example.com", seen, joined)];
            let outcome = run(&accounts, &people, Some(&members), None);
            assert_eq!(
                keys(&outcome, Kind::IdleSeat).len(),
                usize::from(idle),
                "{seen:?}"
            );
        }
    }

    #[test]
    fn owners_and_editors_of_active_accounts_are_privileged() {
        let mut owner = account("o", Some("o@example.com"));
        owner.role = Some("owner".into());
        let mut editor = account("e", Some("e@example.com"));
        editor.role = Some("Editor".into());
        let mut former = account("f", Some("f@example.com"));
        former.role = Some("owner".into());
        former.active = false;
        let outcome = run(
            &[owner, editor, former, account("m", None)],
            &[],
            None,
            None,
        );
        assert_eq!(
            keys(&outcome, Kind::Privileged),
            ["privileged:o", "privileged:e"]
        );
    }

    #[test]
    fn drift_names_every_change_and_flags_an_escalation() {
        let before = [
            account("same", Some("s@example.com")),
            account("gone", Some("g@example.com")),
            account("off", Some("off@example.com")),
            {
                let mut a = account("back", Some("b@example.com"));
                a.active = false;
                a
            },
            account("up", Some("u@example.com")),
            account("moved", Some("m@example.com")),
        ];
        let mut after = vec![
            before[0].clone(),
            account("new", Some("n@example.com")),
            {
                let mut a = before[2].clone();
                a.active = false;
                a
            },
            {
                let mut a = before[3].clone();
                a.active = true;
                a
            },
            {
                let mut a = before[4].clone();
                a.role = Some("owner".into());
                a
            },
        ];
        let mut moved = before[5].clone();
        moved.team = Some("platform".into());
        after.push(moved);
        let outcome = run(&after, &[], None, Some(&before));
        let mut drift = keys(&outcome, Kind::Drift);
        drift.sort();
        assert_eq!(
            drift,
            [
                "drift:back:reactivated",
                "drift:gone:removed",
                "drift:moved:team:->platform",
                "drift:new:added",
                "drift:off:deactivated",
                "drift:up:role:member->owner",
            ]
        );
        let escalation = outcome
            .findings
            .iter()
            .find(|f| f.key.contains("role"))
            .unwrap();
        assert_eq!(escalation.severity, Severity::High);
        assert!(escalation.reason.contains("escalated"));
    }

    #[test]
    fn kinds_without_their_source_are_not_evaluated_rather_than_zero() {
        let people = [person(2, Some("b@example.com"), false)];
        let outcome = run(&[account("a", Some("a@example.com"))], &people, None, None);
        for kind in [
            Kind::Drift,
            Kind::IdleSeat,
            Kind::NotProvisioned,
            Kind::PendingInvite,
        ] {
            assert_eq!(outcome.counts[&kind], None, "{kind}");
            assert!(outcome.not_evaluated.contains_key(&kind), "{kind}");
        }
        assert_eq!(outcome.counts[&Kind::Shadow], Some(1));
        assert_eq!(outcome.counts[&Kind::TerminatedActive], Some(0));
        assert!(!outcome.seats.reclaimable.contains_key("idle_seat"));
    }

    #[test]
    fn a_hub_member_without_a_scim_account_is_not_provisioned_and_says_what_the_idp_knows() {
        let accounts = [account("a", Some("a@example.com"))];
        let people = [
            person(2, Some("a@example.com"), false),
            person(3, Some("hand@example.com"), true),
        ];
        let mut by_hand = member("hand@example.com", Seen::Never, None);
        by_hand.username = Some("handmade".into());
        let members = [
            member("a@example.com", Seen::At(at("2026-11-29T00:00:00Z")), None),
            by_hand,
            member("stranger@example.com", Seen::Never, None),
        ];
        let outcome = run(&accounts, &people, Some(&members), None);
        let found: Vec<_> = outcome
            .findings
            .iter()
            .filter(|f| f.kind == Kind::NotProvisioned)
            .map(|f| (f.key.as_str(), f.severity, f.person_status.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "not_provisioned:handmade",
                    Severity::Critical,
                    Some("SUSPENDED")
                ),
                ("not_provisioned:stranger@example.com", Severity::High, None),
            ]
        );
    }

    #[test]
    fn each_account_counts_once_among_reclaimable_seats() {
        let accounts = [
            account("a", Some("a@example.com")),
            account("s", Some("s@example.com")),
        ];
        let people = [person(2, Some("a@example.com"), true)];
        let members = [
            member("a@example.com", Seen::Never, Some("2020-01-01T00:00:00Z")),
            member("s@example.com", Seen::Never, Some("2020-01-01T00:00:00Z")),
        ];
        let mut review = ReviewConfig {
            seat_price: Some(10.0),
            ..ReviewConfig::default()
        };
        review.seats_purchased = Some(5);
        let outcome = reconcile(&Inputs {
            accounts: &accounts,
            previous: None,
            previous_snapshot: None,
            people: &people,
            members: Some(&members),
            invites: None,
            unavailable: Vec::new(),
            review: &review,
            exceptions: None,
            as_of: as_of(),
        })
        .unwrap();
        assert_eq!(outcome.seats.reclaimable_total, 2);
        assert_eq!(outcome.seats.monthly_saving, Some(20.0));
        assert_eq!(outcome.seats.yearly_saving, Some(240.0));
        assert_eq!(outcome.seats.in_use, 2);
    }

    fn invite(id: &str, created: &str) -> Invite {
        Invite {
            position: 1,
            id: Some(id.into()),
            invitee: Some(format!("{id}@example.com")),
            inviter: Some("owner".into()),
            team: None,
            role: Some("member".into()),
            created_at: Some(at(created)),
        }
    }

    fn run_with_hub(
        accounts: &[Account],
        members: Option<&[Member]>,
        invites: Option<&[Invite]>,
        unavailable: Vec<(Kind, String)>,
    ) -> Outcome {
        let review = ReviewConfig {
            seat_price: Some(10.0),
            ..ReviewConfig::default()
        };
        let people = [person(2, Some("a@example.com"), false)];
        reconcile(&Inputs {
            accounts,
            previous: None,
            previous_snapshot: None,
            people: &people,
            members,
            invites,
            unavailable,
            review: &review,
            exceptions: None,
            as_of: as_of(),
        })
        .unwrap()
    }

    #[test]
    fn an_invite_older_than_invite_days_is_pending_and_exactly_invite_days_is_not() {
        let invites = [
            invite("year", "2025-11-30T00:00:00Z"),
            invite("fifteen", "2026-11-15T23:00:00Z"),
            invite("fourteen", "2026-11-16T00:00:01Z"),
            invite("new", "2026-11-29T00:00:00Z"),
            Invite {
                created_at: None,
                ..invite("undated", "2020-01-01T00:00:00Z")
            },
        ];
        let accounts = [account("a", Some("a@example.com"))];
        let outcome = run_with_hub(&accounts, None, Some(&invites), Vec::new());
        let mut pending = keys(&outcome, Kind::PendingInvite);
        pending.sort();
        assert_eq!(
            pending,
            ["pending_invite:fifteen", "pending_invite:year"],
            "15 and 365 days are pending; 14 days, 1 day and no date are not"
        );
        assert_eq!(outcome.counts[&Kind::PendingInvite], Some(2));
        let year = outcome
            .findings
            .iter()
            .find(|f| f.key == "pending_invite:year")
            .unwrap();
        assert!(year.reason.contains("365 days"), "{}", year.reason);
        assert_eq!(year.evidence["decided_by"], "created_at (Hub invites API)");
        assert_eq!(year.email.as_deref(), Some("year@example.com"));
        // Invites hold seats: one active account and five invites.
        assert_eq!(outcome.seats.in_use, 6);
        // An invitee the members list shows already holds one seat, not two.
        let listed = [Member {
            kind: Some("invitee".into()),
            ..member("year@example.com", Seen::Unknown, None)
        }];
        let outcome = run_with_hub(&accounts, Some(&listed), Some(&invites), Vec::new());
        assert_eq!(outcome.seats.in_use, 5);
        assert_eq!(outcome.seats.reclaimable["pending_invite"], 2);
        assert_eq!(outcome.seats.monthly_saving, Some(20.0));
    }

    #[test]
    fn without_invite_data_pending_invite_is_not_evaluated_and_a_failed_read_says_why() {
        let accounts = [account("a", Some("a@example.com"))];
        let outcome = run_with_hub(&accounts, None, None, Vec::new());
        assert_eq!(outcome.counts[&Kind::PendingInvite], None);
        assert!(outcome.not_evaluated[&Kind::PendingInvite].contains("hub.org"));

        let members = [member(
            "a@example.com",
            Seen::Never,
            Some("2020-01-01T00:00:00Z"),
        )];
        let why = "the Hub read was incomplete: page 2 failed".to_owned();
        let outcome = run_with_hub(
            &accounts,
            Some(&members),
            Some(&[]),
            vec![
                (Kind::IdleSeat, why.clone()),
                (Kind::NotProvisioned, why.clone()),
            ],
        );
        assert_eq!(outcome.counts[&Kind::IdleSeat], None);
        assert_eq!(outcome.counts[&Kind::NotProvisioned], None);
        assert_eq!(outcome.not_evaluated[&Kind::IdleSeat], why);
        assert_eq!(outcome.counts[&Kind::PendingInvite], Some(0));
        assert!(!outcome.seats.reclaimable.contains_key("idle_seat"));
    }

    #[test]
    fn a_hub_api_member_says_which_api_field_decided_and_is_joined_by_docker_id() {
        let mut a = account("a", Some("a@example.com"));
        a.display_name = Some("adoe".into());
        let api = |seen: Seen, joined: Option<&str>| Member {
            email: None,
            username: Some("ADoe".into()),
            source: crate::activity::MemberSource::HubApi,
            activity_source: crate::activity::MemberSource::HubApi,
            row: 7,
            ..member("other@example.com", seen, joined)
        };
        let members = [api(Seen::At(at("2026-01-01T00:00:00Z")), None)];
        let outcome = run_with_hub(std::slice::from_ref(&a), Some(&members), None, Vec::new());
        let f = &outcome.findings[0];
        assert_eq!(f.kind, Kind::IdleSeat);
        assert_eq!(
            f.evidence["decided_by"],
            "last_logged_in_at (Hub members API)"
        );
        assert_eq!(f.evidence["member_matched_by"], "Docker ID");
        assert_eq!(f.evidence["hub_member_position"], "7");

        let members = [api(Seen::Never, Some("2026-01-01T00:00:00Z"))];
        let outcome = run_with_hub(std::slice::from_ref(&a), Some(&members), None, Vec::new());
        assert_eq!(
            outcome.findings[0].evidence["decided_by"],
            "date_joined (Hub members API)"
        );

        // Never signed in and no join date anywhere but SCIM's meta.created.
        a.created = Some(at("2026-01-01T00:00:00Z"));
        let members = [api(Seen::Never, None)];
        let outcome = run_with_hub(std::slice::from_ref(&a), Some(&members), None, Vec::new());
        assert_eq!(
            outcome.findings[0].evidence["decided_by"],
            "meta.created (SCIM)"
        );
        a.created = Some(at("2026-11-01T00:00:00Z"));
        let outcome = run_with_hub(&[a], Some(&members), None, Vec::new());
        assert!(keys(&outcome, Kind::IdleSeat).is_empty());
    }

    #[test]
    fn a_guest_member_only_in_hub_is_not_provisioned_and_marked_a_guest() {
        let accounts = [account("a", Some("a@example.com"))];
        let guest = Member {
            kind: Some("guest".into()),
            username: Some("contractor".into()),
            source: crate::activity::MemberSource::HubApi,
            ..member("contractor@partner.example", Seen::Never, None)
        };
        let members = [member("a@example.com", Seen::Unknown, None), guest];
        let outcome = run_with_hub(&accounts, Some(&members), None, Vec::new());
        let f = outcome
            .findings
            .iter()
            .find(|f| f.kind == Kind::NotProvisioned)
            .unwrap();
        assert_eq!(f.key, "not_provisioned:contractor");
        assert!(f.reason.contains("guest"), "{}", f.reason);
        assert!(f.reason.contains("unknown to the IdP"), "{}", f.reason);
        assert_eq!(f.evidence["guest"], "true");
        assert_eq!(f.evidence["member_source"], "Hub members API");
    }

    // Regression: the employee-id rule matched an ACTIVE row while a SUSPENDED row with the
    // same email stood further down; the leaver was missed.
    #[test]
    fn a_terminated_duplicate_wins_even_when_another_rule_matched_an_active_row() {
        let mut a = account("id-3", Some("u3@x.test"));
        a.external_id = Some("E3".into());
        let mut active = person(2, Some("u3@x.test"), false);
        active.employee_id = Some("E3".into());
        let suspended = person(3, Some("u3@x.test"), true);
        let outcome = run(&[a], &[active, suspended], None, None);
        assert_eq!(
            keys(&outcome, Kind::TerminatedActive),
            ["terminated_active:id-3"]
        );
    }

    // Regression: a member whose SCIM account was deactivated, but who is still an owner
    // in the organization, produced no finding.
    #[test]
    fn a_member_whose_only_scim_account_is_deactivated_is_not_provisioned() {
        let mut gone = account("id-3", Some("u3@x.test"));
        gone.active = false;
        let people = [person(2, Some("u3@x.test"), true)];
        let mut still_there = member("u3@x.test", Seen::At(at("2026-11-29T00:00:00Z")), None);
        still_there.username = Some("docker3".into());
        let outcome = run(&[gone], &people, Some(&[still_there]), None);
        let found: Vec<_> = outcome
            .findings
            .iter()
            .filter(|f| f.kind == Kind::NotProvisioned)
            .collect();
        assert_eq!(found.len(), 1, "{:?}", outcome.findings);
        assert_eq!(found[0].severity, Severity::Critical);
        assert!(
            found[0].reason.contains("deactivated"),
            "{}",
            found[0].reason
        );
    }

    // Regression: a members export with only its header, or without activity columns,
    // counted idle seats and unprovisioned members as checked and zero.
    #[test]
    fn an_empty_members_export_or_one_without_activity_is_not_evaluated() {
        let accounts = [account("a", Some("a@example.com"))];
        let people = [person(2, Some("a@example.com"), false)];
        let outcome = run(&accounts, &people, Some(&[]), None);
        assert_eq!(outcome.counts[&Kind::IdleSeat], None);
        assert_eq!(outcome.counts[&Kind::NotProvisioned], None);

        let no_activity = [Member {
            last_logged_in: Seen::Unknown,
            last_seen: Seen::Unknown,
            ..member("a@example.com", Seen::Unknown, Some("2020-01-01T00:00:00Z"))
        }];
        let outcome = run(&accounts, &people, Some(&no_activity), None);
        assert_eq!(outcome.counts[&Kind::IdleSeat], None);
        assert!(outcome.not_evaluated[&Kind::IdleSeat].contains("Insights"));
        assert_eq!(outcome.counts[&Kind::NotProvisioned], Some(0));
    }

    // Regression: a generic export without status or termination date reported leavers as
    // checked and zero.
    #[test]
    fn an_export_without_any_status_leaves_leavers_not_evaluated() {
        let mut p = person(2, Some("a@example.com"), false);
        p.status = None;
        let outcome = run(&[account("a", Some("a@example.com"))], &[p], None, None);
        assert_eq!(outcome.counts[&Kind::TerminatedActive], None);
        assert!(outcome.not_evaluated[&Kind::TerminatedActive].contains("idp.columns.status"));
    }

    #[test]
    fn drift_evidence_names_the_snapshot_it_was_compared_with() {
        let before = [account("gone", Some("g@example.com"))];
        let review = ReviewConfig::default();
        let outcome = reconcile(&Inputs {
            accounts: &[],
            previous: Some(&before),
            previous_snapshot: Some("snapshot 4 taken 2026-11-23T06:00:00Z".into()),
            people: &[],
            members: None,
            invites: None,
            unavailable: Vec::new(),
            review: &review,
            exceptions: None,
            as_of: as_of(),
        })
        .unwrap();
        let f = &outcome.findings[0];
        assert_eq!(f.match_basis, "SCIM id absent from this snapshot");
        assert_eq!(
            f.evidence["compared_with"],
            "snapshot 4 taken 2026-11-23T06:00:00Z"
        );
    }

    fn exception_file(rows: &str) -> (tempfile::TempDir, ExceptionFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exceptions.csv");
        std::fs::write(&path, format!("kind,account,owner,reason,expires\n{rows}")).unwrap();
        let file = crate::exceptions::read(&path).unwrap();
        (dir, file)
    }

    /// `accounts` reconciled against nobody, with the exceptions of `file`.
    fn with_exceptions(accounts: &[Account], file: &ExceptionFile) -> Outcome {
        let review = ReviewConfig::default();
        reconcile(&Inputs {
            accounts,
            previous: None,
            previous_snapshot: None,
            people: &[],
            members: None,
            invites: None,
            unavailable: Vec::new(),
            review: &review,
            exceptions: Some(file),
            as_of: as_of(),
        })
        .unwrap()
    }

    #[test]
    fn an_accepted_finding_is_listed_marked_accepted_but_not_counted_nor_reclaimable() {
        let accounts = [
            account("svc", Some("ci-bot@example.com")),
            account("x", Some("x@example.com")),
        ];
        let (_d, file) = exception_file("shadow,ci-bot@example.com,platform,CI bot,2027-01-01\n");
        let outcome = with_exceptions(&accounts, &file);
        assert_eq!(keys(&outcome, Kind::Shadow), ["shadow:svc", "shadow:x"]);
        let svc = &outcome.findings[0];
        assert!(svc.is_accepted());
        assert_eq!(svc.exception.as_ref().unwrap().owner, "platform");
        assert_eq!(outcome.counts[&Kind::Shadow], Some(1));
        assert_eq!(outcome.seats.reclaimable["shadow"], 1);
    }

    #[test]
    fn an_expired_exception_stops_applying_and_the_finding_says_so() {
        let accounts = [account("svc", Some("ci-bot@example.com"))];
        let (_d, file) = exception_file("shadow,svc,platform,CI bot,2026-11-29\n");
        let outcome = with_exceptions(&accounts, &file);
        let f = &outcome.findings[0];
        assert!(!f.is_accepted());
        assert!(f.exception.as_ref().unwrap().expired);
        assert_eq!(outcome.counts[&Kind::Shadow], Some(1));
    }

    // Regression: accounts without a Docker role, or without any id on either side,
    // reported privileged and identifier_changed as checked and zero.
    #[test]
    fn privileged_and_identifier_changed_without_their_data_are_not_evaluated() {
        let mut owner = account("a", Some("a@example.com"));
        owner.role = None;
        let people = [person(2, Some("a@example.com"), false)];
        let outcome = run(&[owner.clone()], &people, None, None);
        assert_eq!(outcome.counts[&Kind::Privileged], None);
        assert!(outcome.not_evaluated[&Kind::Privileged].contains("dockerRole"));
        assert_eq!(outcome.counts[&Kind::IdentifierChanged], None);
        assert!(outcome.not_evaluated[&Kind::IdentifierChanged].contains("externalId"));

        owner.role = Some("owner".into());
        owner.external_id = Some("E1".into());
        let outcome = run(&[owner.clone()], &people, None, None);
        assert_eq!(outcome.counts[&Kind::Privileged], Some(1));
        assert!(outcome.not_evaluated[&Kind::IdentifierChanged].contains("employee_id"));

        let mut with_id = person(2, Some("a@example.com"), false);
        with_id.employee_id = Some("E1".into());
        let outcome = run(&[owner], &[with_id], None, None);
        assert_eq!(outcome.counts[&Kind::IdentifierChanged], Some(0));
    }

    #[test]
    fn a_role_docker_does_not_have_is_a_data_quality_finding() {
        let mut odd = account("a", Some("a@example.com"));
        odd.role = Some("superadmin".into());
        let people = [person(2, Some("a@example.com"), false)];
        let outcome = run(&[odd], &people, None, None);
        assert_eq!(
            keys(&outcome, Kind::DataQuality),
            ["data_quality:unknown_role:a"]
        );
        assert_eq!(outcome.counts[&Kind::Privileged], Some(0));
    }

    // Regression: an owner whose role came as a list, or accounts without a role beside
    // others with one, left privileged at an evaluated 0.
    #[test]
    fn accounts_without_a_role_beside_others_are_a_data_quality_finding() {
        let member = account("a", Some("a@example.com"));
        let mut bare = account("b", Some("b@example.com"));
        bare.role = None;
        let mut listed = account("c", Some("c@example.com"));
        listed.role = Some(r#"["owner"]"#.into());
        let people = [
            person(2, Some("a@example.com"), false),
            person(3, Some("b@example.com"), false),
            person(4, Some("c@example.com"), false),
        ];
        let outcome = run(&[member, bare, listed], &people, None, None);
        assert_eq!(
            keys(&outcome, Kind::DataQuality),
            [
                "data_quality:unknown_role:c",
                "data_quality:accounts_without_role"
            ]
        );
    }

    // Regression: a leaver removed from SCIM but still a member made the leaver count 0.
    #[test]
    fn a_leaver_who_is_still_a_member_without_a_scim_account_is_a_leaver() {
        let mut gone = account("id-3", Some("u3@x.test"));
        gone.active = false;
        let people = [person(2, Some("u3@x.test"), true)];
        let still_there = member("u3@x.test", Seen::At(at("2026-11-29T00:00:00Z")), None);
        let outcome = run(&[gone], &people, Some(&[still_there]), None);
        assert_eq!(outcome.counts[&Kind::TerminatedActive], Some(1));
        let leaver = outcome
            .findings
            .iter()
            .find(|f| f.kind == Kind::TerminatedActive)
            .unwrap();
        assert!(
            leaver.reason.contains("still a member"),
            "{}",
            leaver.reason
        );
        assert_eq!(outcome.counts[&Kind::NotProvisioned], Some(1));
    }

    #[test]
    fn members_without_activity_say_where_activity_would_come_from() {
        let accounts = [account("a", Some("a@example.com"))];
        let people = [person(2, Some("a@example.com"), false)];
        let mut from_export = member("a@example.com", Seen::Unknown, None);
        from_export.last_seen = Seen::Unknown;
        let outcome = run(&accounts, &people, Some(&[from_export.clone()]), None);
        assert!(outcome.not_evaluated[&Kind::IdleSeat].contains("the members export has"));
        let mut from_api = from_export;
        from_api.source = crate::activity::MemberSource::HubApi;
        from_api.activity_source = crate::activity::MemberSource::HubApi;
        let outcome = run(&accounts, &people, Some(&[from_api]), None);
        let why = &outcome.not_evaluated[&Kind::IdleSeat];
        assert!(
            why.contains("members API gave no member any activity"),
            "{why}"
        );
        assert!(why.contains("`activity.file`"), "{why}");
    }

    // Regression: an empty members list cleared every leaver found only through it, and
    // counted 0 seats in use.
    #[test]
    fn an_empty_members_list_leaves_leavers_checked_in_part_and_seats_counted_from_scim() {
        let accounts = [account("a", Some("a@example.com"))];
        let people = [person(2, Some("a@example.com"), false)];
        let outcome = run(&accounts, &people, Some(&[]), None);
        assert_eq!(outcome.counts[&Kind::NotProvisioned], None);
        assert_eq!(outcome.counts[&Kind::TerminatedActive], Some(0));
        assert!(outcome.partial[&Kind::TerminatedActive].contains("holds nobody"));
        assert_eq!(outcome.seats.in_use, 1);
        let note = outcome.seats.in_use_note.as_deref().unwrap();
        assert!(note.contains("active SCIM accounts"), "{note}");

        // With members, nothing is partial and no note is written.
        let members = [member("a@example.com", Seen::Never, None)];
        let outcome = run(&accounts, &people, Some(&members), None);
        assert!(outcome.partial.is_empty());
        assert!(outcome.seats.in_use_note.is_none());
    }

    // Regression: every unmatched account was joined with every unmatched person of the
    // same local part, so thousands of `bot+N` addresses made millions of pairs. Each
    // account now takes the first look-alikes in the export's order.
    #[test]
    fn a_local_part_shared_by_thousands_gives_each_account_the_first_few_look_alikes() {
        let accounts: Vec<Account> = (0..2000)
            .map(|i| account(&format!("a{i}"), Some(&format!("bot+{i}@acme.example"))))
            .collect();
        let people: Vec<Person> = (0..2000)
            .map(|i| person(i + 2, Some(&format!("bot+p{i}@other.example")), false))
            .collect();
        let numbered = Keys::new(&accounts, &people, &[]);
        let matches = match_accounts(&numbered, &people, as_of()).unwrap();
        let near = near_misses(&numbered, &accounts, &matches).unwrap();
        assert_eq!(near.len(), 2000);
        for list in near.values() {
            let rows: Vec<usize> = list.iter().map(|n| people[n.person].row).collect();
            assert_eq!(rows, [2, 3, 4, 5, 6]);
            assert_eq!(list[0].how, ["+tag", "another domain"]);
        }
    }

    // Regression: invites that failed to read left seats in use short of the invitees,
    // with nothing to say so.
    #[test]
    fn seats_in_use_say_when_the_invites_could_not_be_read() {
        let accounts = [account("a", Some("a@example.com"))];
        let people = [person(2, Some("a@example.com"), false)];
        let members = [member("a@example.com", Seen::Never, None)];
        let review = ReviewConfig::default();
        let outcome = reconcile(&Inputs {
            accounts: &accounts,
            previous: None,
            previous_snapshot: None,
            people: &people,
            members: Some(&members),
            invites: None,
            unavailable: vec![(Kind::PendingInvite, "invites: HTTP 500".into())],
            review: &review,
            exceptions: None,
            as_of: as_of(),
        })
        .unwrap();
        let note = outcome.seats.in_use_note.as_deref().unwrap();
        assert!(note.contains("pending invites"), "{note}");
        assert!(note.contains("HTTP 500"), "{note}");
        assert!(!note.contains("active SCIM accounts"), "{note}");
    }
}
