//! A synthetic organization for the benchmark: SCIM accounts, the previous snapshot, an
//! IdP export and a Hub members export, with the overlaps a real organization has.
//!
//! Deterministic (a fixed-seed SplitMix64), so two runs reconcile the same data. Of the
//! accounts: about 90 % match a person by `userName` (5 % of them with other case or
//! spaces, 1 % in NFD), 3 % only by employee id after a rename, 1 % by a secondary email,
//! 1 % by an IdP alias, 2 % belong to leavers, 2 % match nobody (a third of those are near
//! misses: `+tag`, another domain, guest `#EXT#` form) and 1 % have no email at all. Of
//! the people, a few percent have no account and 0.1 % are listed twice. The previous
//! snapshot differs by additions, removals, deactivations and role and team changes; the
//! members export lists every active account, 5 % idle, plus a few members SCIM lacks.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use hubreview::activity::{Member, Seen};
use hubreview::idp::Person;
use hubreview::scim::{Account, Email};

/// The review date every generated date is relative to.
pub fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 30).expect("a valid date")
}

/// SplitMix64: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A whole number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `per_mille` times in a thousand.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// What one generated organization holds.
pub struct Organization {
    pub accounts: Vec<Account>,
    pub previous: Vec<Account>,
    pub people: Vec<Person>,
    pub members: Vec<Member>,
}

/// How an account relates to the IdP, drawn per account.
#[derive(Clone, Copy, PartialEq)]
enum Link {
    UserName,
    Renamed,
    Secondary,
    Alias,
    Leaver,
    Shadow,
    NearMiss,
    NoEmail,
}

fn link(rng: &mut Rng) -> Link {
    match rng.below(1000) {
        0..900 => Link::UserName,
        900..930 => Link::Renamed,
        930..940 => Link::Secondary,
        940..950 => Link::Alias,
        950..970 => Link::Leaver,
        970..983 => Link::Shadow,
        983..990 => Link::NearMiss,
        _ => Link::NoEmail,
    }
}

fn at(days_before: i64) -> DateTime<Utc> {
    let review = Utc
        .with_ymd_and_hms(2026, 11, 30, 9, 0, 0)
        .single()
        .expect("a valid time");
    review - Duration::days(days_before)
}

fn blank_account(i: usize) -> Account {
    Account {
        id: format!("{:08x}-0000-4000-8000-{:012x}", i, i),
        user_name: None,
        external_id: None,
        employee_number: None,
        display_name: Some(format!("docker{i}")),
        given_name: Some(format!("Given{i}")),
        family_name: Some("Family".into()),
        active: true,
        emails: Vec::new(),
        groups: Vec::new(),
        role: Some("member".into()),
        team: Some(format!("team{}", i % 40)),
        org: Some("benchorg".into()),
        created: Some(at(400 + (i % 300) as i64)),
        last_modified: None,
    }
}

fn blank_person(row: usize, email: Option<String>) -> Person {
    Person {
        row,
        email,
        employee_id: None,
        aliases: Vec::new(),
        name: Some(format!("Person {row}")),
        department: Some("Engineering".into()),
        status: Some("ACTIVE".into()),
        status_terminated: false,
        termination_date: None,
        termination_text: None,
        guest: false,
        last_sign_in: None,
    }
}

fn email(value: String) -> Email {
    Email {
        value,
        primary: true,
        kind: Some("work".into()),
    }
}

/// An organization of `accounts` SCIM accounts against about as many people.
pub fn organization(accounts: usize) -> Organization {
    let mut rng = Rng(0x5EED_0000_0000_0001 ^ accounts as u64);
    let mut out_accounts = Vec::with_capacity(accounts);
    let mut people = Vec::with_capacity(accounts + accounts / 20);
    let mut members = Vec::with_capacity(accounts + accounts / 500);

    for i in 0..accounts {
        let mut account = blank_account(i);
        let address = format!("user{i}@bench.example");
        let row = people.len() + 2;
        let kind = link(&mut rng);
        match kind {
            Link::UserName | Link::Leaver => {
                // Other case or spaces on one side now and then; NFD for a few.
                let shown = match rng.below(100) {
                    0..5 => address.to_uppercase(),
                    5 => format!("  {address} "),
                    _ => address.clone(),
                };
                if rng.chance(10) {
                    let nfd = format!("jose\u{301}{i}@bench.example");
                    let nfc = format!("jos\u{e9}{i}@bench.example");
                    account.user_name = Some(nfd.clone());
                    account.emails.push(email(nfd));
                    people.push(blank_person(row, Some(nfc)));
                } else {
                    account.user_name = Some(address.clone());
                    account.emails.push(email(address.clone()));
                    people.push(blank_person(row, Some(shown)));
                }
                if kind == Link::Leaver {
                    let person = people.last_mut().expect("just pushed");
                    if rng.chance(500) {
                        person.status = Some("DEPROVISIONED".into());
                        person.status_terminated = true;
                    } else {
                        person.termination_date =
                            Some(as_of() - Duration::days(rng.below(60) as i64));
                    }
                }
            }
            Link::Renamed => {
                account.user_name = Some(format!("new.name{i}@bench.example"));
                account
                    .emails
                    .push(email(format!("new.name{i}@bench.example")));
                account.external_id = Some(format!("E{i:07}"));
                let mut person = blank_person(row, Some(format!("old.name{i}@bench.example")));
                person.employee_id = Some(format!("e{i:07}"));
                people.push(person);
            }
            Link::Secondary => {
                account.user_name = Some(format!("login{i}@partner.example"));
                account
                    .emails
                    .push(email(format!("login{i}@partner.example")));
                account.emails.push(Email {
                    value: address.clone(),
                    primary: false,
                    kind: Some("other".into()),
                });
                people.push(blank_person(row, Some(address.clone())));
            }
            Link::Alias => {
                let alias = format!("u{i}@bench.example");
                account.user_name = Some(alias.clone());
                account.emails.push(email(alias.clone()));
                let mut person = blank_person(row, Some(address.clone()));
                person.aliases.push(alias);
                people.push(person);
            }
            Link::Shadow => {
                let stranger = format!("stranger{i}@elsewhere.example");
                account.user_name = Some(stranger.clone());
                account.emails.push(email(stranger));
            }
            Link::NearMiss => {
                let look_alike = match i % 3 {
                    0 => format!("user{i}+docker@bench.example"),
                    1 => format!("user{i}@gmail.example"),
                    _ => format!("user{i}_bench.example#EXT#@tenant.onmicrosoft.example"),
                };
                account.user_name = Some(look_alike.clone());
                account.emails.push(email(look_alike));
                people.push(blank_person(row, Some(address.clone())));
            }
            Link::NoEmail => {
                account.display_name = Some(format!("svc{i}"));
            }
        }
        if rng.chance(5) {
            account.role = Some(if rng.chance(300) { "owner" } else { "editor" }.into());
        }
        if rng.chance(3) {
            account.active = false;
        }

        if account.active {
            let seen = if rng.chance(50) {
                Seen::At(at(91 + rng.below(400) as i64))
            } else if rng.chance(5) {
                Seen::Never
            } else {
                Seen::At(at(rng.below(90) as i64))
            };
            members.push(Member {
                row: members.len() + 2,
                name: account.full_name(),
                username: account.display_name.clone(),
                email: account.user_name.clone(),
                kind: Some("member".into()),
                permission: account.role.clone(),
                teams: account.team.clone(),
                date_joined: account.created,
                last_logged_in: seen,
                last_seen: Seen::Unknown,
                desktop_version: None,
                source: Default::default(),
                activity_source: Default::default(),
            });
        }
        out_accounts.push(account);
    }

    // People without an account, and people listed twice.
    for j in 0..accounts / 25 {
        let row = people.len() + 2;
        people.push(blank_person(
            row,
            Some(format!("noaccount{j}@bench.example")),
        ));
    }
    for j in 0..accounts / 1000 {
        let source = people[(j * 997) % people.len()].clone();
        let row = people.len() + 2;
        people.push(Person { row, ..source });
    }
    // Members SCIM does not know.
    for j in 0..accounts / 500 {
        members.push(Member {
            row: members.len() + 2,
            name: None,
            username: Some(format!("byhand{j}")),
            email: Some(format!("byhand{j}@bench.example")),
            kind: Some("member".into()),
            permission: None,
            teams: None,
            date_joined: Some(at(700)),
            last_logged_in: Seen::At(at(3)),
            last_seen: Seen::Unknown,
            desktop_version: None,
            source: Default::default(),
            activity_source: Default::default(),
        });
    }

    // The previous snapshot: 0.5 % added since, 0.5 % removed since, and a few
    // deactivations, reactivations, role and team changes.
    let mut previous = Vec::with_capacity(accounts);
    for (i, account) in out_accounts.iter().enumerate() {
        match rng.below(1000) {
            0..5 => continue,
            5..8 => {
                let mut before = account.clone();
                before.active = !account.active;
                previous.push(before);
            }
            8..10 => {
                let mut before = account.clone();
                before.role = Some("member".into());
                before.team = Some("team-old".into());
                previous.push(before);
            }
            _ => previous.push(account.clone()),
        }
        if i % 200 == 0 {
            previous.push(blank_account(accounts + i));
        }
    }

    Organization {
        accounts: out_accounts,
        previous,
        people,
        members,
    }
}
