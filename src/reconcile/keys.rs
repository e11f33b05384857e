//! Every match key of one reconciliation, normalized once and numbered.
//!
//! At a million accounts, normalizing and hashing keys is most of what reconciliation
//! costs, and every finding kind looks keys up its own way. So each key of each input is
//! normalized and hashed exactly once, here, and given a number. The polars joins then run
//! on numbers, and each kind's lookup is an array indexed by key number instead of a map
//! of strings of its own.
//!
//! The numbering takes both cores: the keys fall into two shards by one bit of their hash,
//! and each of two threads reads every input but numbers only the keys of its own shard.
//! Both write into the same arrays of slots (each slot is written by the one thread whose
//! shard its key is in), and the second shard's numbers follow the first's at the end.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};

use hashbrown::HashTable;

use super::normalize_ref;
use crate::activity::Member;
use crate::idp::Person;
use crate::scim::Account;

/// A normalized key's number; equal numbers are equal keys.
pub(super) type KeyId = u32;

/// The slot of a value that has no key (absent, or nothing left after normalizing).
const NONE: u32 = u32::MAX;

/// Marks a number given by the second shard until the numbers are joined.
const SECOND: u32 = 1 << 31;

/// The keys of one reconciliation's inputs, by number.
pub(super) struct Keys<'a> {
    /// The normalized text of each key number: the first shard's, then the second's;
    /// borrowed from the inputs where the value was already normalized (as most emails
    /// are).
    texts: [Vec<Cow<'a, str>>; 2],
    pub account: AccountKeys,
    pub person: PersonKeys,
    pub member: MemberKeys,
}

/// Each SCIM account's keys, by the account's position.
pub(super) struct AccountKeys {
    /// `externalId`, else the enterprise `employeeNumber`.
    employee: Vec<u32>,
    user: Vec<u32>,
    /// `displayName`, the Docker ID.
    docker: Vec<u32>,
    /// Where each account's emails start in `emails`; one more entry than accounts.
    email_start: Vec<u32>,
    /// One slot per listed email, `NONE` for an empty one.
    emails: Vec<u32>,
}

impl AccountKeys {
    pub fn len(&self) -> usize {
        self.user.len()
    }

    #[cfg(test)]
    pub fn employee(&self, account: usize) -> Option<KeyId> {
        key(self.employee[account])
    }

    pub fn user(&self, account: usize) -> Option<KeyId> {
        key(self.user[account])
    }

    pub fn docker(&self, account: usize) -> Option<KeyId> {
        key(self.docker[account])
    }

    /// The account's `emails`, in their order, without the empty ones.
    pub fn emails(&self, account: usize) -> impl Iterator<Item = KeyId> + '_ {
        let slots = &self.emails
            [self.email_start[account] as usize..self.email_start[account + 1] as usize];
        slots.iter().filter_map(|k| key(*k))
    }

    /// Every key an account can be found by as an email: `userName`, then `emails`.
    pub fn email_like(&self, account: usize) -> impl Iterator<Item = KeyId> + '_ {
        self.user(account).into_iter().chain(self.emails(account))
    }

    /// Each account's employee key, for a polars column (null for none).
    pub fn employee_column(&self) -> impl Iterator<Item = Option<KeyId>> + '_ {
        self.employee.iter().map(|k| key(*k))
    }

    /// Each account's `userName` key, for a polars column (null for none).
    pub fn user_column(&self) -> impl Iterator<Item = Option<KeyId>> + '_ {
        self.user.iter().map(|k| key(*k))
    }
}

/// Each IdP person's keys, by the person's position.
pub(super) struct PersonKeys {
    employee: Vec<u32>,
    email: Vec<u32>,
    /// Where each person's aliases start in `aliases`; one more entry than people.
    alias_start: Vec<u32>,
    aliases: Vec<u32>,
}

impl PersonKeys {
    pub fn len(&self) -> usize {
        self.email.len()
    }

    pub fn employee(&self, person: usize) -> Option<KeyId> {
        key(self.employee[person])
    }

    pub fn email(&self, person: usize) -> Option<KeyId> {
        key(self.email[person])
    }

    /// The person's email, then the aliases (`true`): every key matching can find them
    /// by.
    pub fn email_like(&self, person: usize) -> impl Iterator<Item = (KeyId, bool)> + '_ {
        let aliases =
            &self.aliases[self.alias_start[person] as usize..self.alias_start[person + 1] as usize];
        self.email(person)
            .map(|k| (k, false))
            .into_iter()
            .chain(aliases.iter().filter_map(|k| key(*k).map(|k| (k, true))))
    }

    /// Each person's employee key, for a polars column (null for none).
    pub fn employee_column(&self) -> impl Iterator<Item = Option<KeyId>> + '_ {
        self.employee.iter().map(|k| key(*k))
    }
}

/// Each Hub member's keys, by the member's position.
pub(super) struct MemberKeys {
    email: Vec<u32>,
    username: Vec<u32>,
}

impl MemberKeys {
    pub fn email(&self, member: usize) -> Option<KeyId> {
        key(self.email[member])
    }

    pub fn username(&self, member: usize) -> Option<KeyId> {
        key(self.username[member])
    }
}

fn key(slot: u32) -> Option<KeyId> {
    (slot != NONE).then_some(slot)
}

impl<'a> Keys<'a> {
    /// Normalizes and numbers every key of the accounts, the people and the members.
    pub fn new(accounts: &'a [Account], people: &'a [Person], members: &'a [Member]) -> Self {
        let slots = Slots::new(accounts, people, members);
        let hasher = foldhash::fast::RandomState::default();
        let (first, second) = std::thread::scope(|s| {
            let second = s.spawn(|| Shard::fill(1, &hasher, &slots, accounts, people, members));
            let first = Shard::fill(0, &hasher, &slots, accounts, people, members);
            let second = second
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (first, second)
        });
        let offset = offset(first.len());
        let join = |column: Vec<AtomicU32>| -> Vec<u32> {
            column
                .into_iter()
                .map(|slot| match slot.into_inner() {
                    NONE => NONE,
                    n if n & SECOND != 0 => offset + (n & !SECOND),
                    n => n,
                })
                .collect()
        };
        Keys {
            texts: [first, second],
            account: AccountKeys {
                employee: join(slots.account_employee),
                user: join(slots.account_user),
                docker: join(slots.account_docker),
                email_start: slots.account_email_start,
                emails: join(slots.account_emails),
            },
            person: PersonKeys {
                employee: join(slots.person_employee),
                email: join(slots.person_email),
                alias_start: slots.person_alias_start,
                aliases: join(slots.person_aliases),
            },
            member: MemberKeys {
                email: join(slots.member_email),
                username: join(slots.member_username),
            },
        }
    }

    /// How many distinct keys there are: the length of an array indexed by key number.
    pub fn len(&self) -> usize {
        self.texts[0].len() + self.texts[1].len()
    }

    /// A key's normalized text.
    pub fn text(&self, key: KeyId) -> &str {
        let key = key as usize;
        match self.texts[0].get(key) {
            Some(text) => text,
            None => &self.texts[1][key - self.texts[0].len()],
        }
    }

    /// An array with one `value` per key number.
    pub fn per_key<T: Clone>(&self, value: T) -> Vec<T> {
        vec![value; self.len()]
    }
}

/// The slots both threads write their numbers into: one per value that can hold a key.
struct Slots {
    account_employee: Vec<AtomicU32>,
    account_user: Vec<AtomicU32>,
    account_docker: Vec<AtomicU32>,
    account_email_start: Vec<u32>,
    account_emails: Vec<AtomicU32>,
    person_employee: Vec<AtomicU32>,
    person_email: Vec<AtomicU32>,
    person_alias_start: Vec<u32>,
    person_aliases: Vec<AtomicU32>,
    member_email: Vec<AtomicU32>,
    member_username: Vec<AtomicU32>,
}

impl Slots {
    fn new(accounts: &[Account], people: &[Person], members: &[Member]) -> Self {
        let empty = |n: usize| -> Vec<AtomicU32> { (0..n).map(|_| AtomicU32::new(NONE)).collect() };
        let starts = |lengths: &mut dyn Iterator<Item = usize>| -> Vec<u32> {
            let mut starts = vec![0u32];
            let mut at = 0usize;
            for n in lengths {
                at += n;
                starts.push(offset(at));
            }
            starts
        };
        let account_email_start = starts(&mut accounts.iter().map(|a| a.emails.len()));
        let person_alias_start = starts(&mut people.iter().map(|p| p.aliases.len()));
        Slots {
            account_employee: empty(accounts.len()),
            account_user: empty(accounts.len()),
            account_docker: empty(accounts.len()),
            account_emails: empty(account_email_start[accounts.len()] as usize),
            account_email_start,
            person_employee: empty(people.len()),
            person_email: empty(people.len()),
            person_aliases: empty(person_alias_start[people.len()] as usize),
            person_alias_start,
            member_email: empty(members.len()),
            member_username: empty(members.len()),
        }
    }
}

/// The keys of one shard, numbered by one thread.
struct Shard<'a, 'h> {
    index: u64,
    hasher: &'h foldhash::fast::RandomState,
    texts: Vec<Cow<'a, str>>,
    /// Numbers, found by the hash of their text.
    table: HashTable<u32>,
}

impl<'a, 'h> Shard<'a, 'h> {
    /// Reads every input and writes the number of each key of shard `index` into its slot;
    /// the texts of the shard's keys, in number order.
    fn fill(
        index: u64,
        hasher: &'h foldhash::fast::RandomState,
        slots: &Slots,
        accounts: &'a [Account],
        people: &'a [Person],
        members: &'a [Member],
    ) -> Vec<Cow<'a, str>> {
        // About half the keys are this shard's; most people's emails are accounts' too.
        let expected = accounts.len() * 3 / 2 + people.len() / 2;
        let mut shard = Shard {
            index,
            hasher,
            texts: Vec::with_capacity(expected),
            table: HashTable::with_capacity(expected),
        };
        let put = |slot: &AtomicU32, number: Option<u32>| {
            if let Some(n) = number {
                slot.store(n, Ordering::Relaxed);
            }
        };
        let mut email = 0;
        for (i, a) in accounts.iter().enumerate() {
            let employee = match normalize_ref_opt(a.external_id.as_deref()) {
                Some(k) => Some(k),
                None => normalize_ref_opt(a.employee_number.as_deref()),
            };
            put(
                &slots.account_employee[i],
                employee.and_then(|k| shard.number(k)),
            );
            let user = normalize_ref_opt(a.user_name.as_deref()).and_then(|k| shard.number(k));
            put(&slots.account_user[i], user);
            put(
                &slots.account_docker[i],
                normalize_ref_opt(a.display_name.as_deref()).and_then(|k| shard.number(k)),
            );
            for e in &a.emails {
                // Most accounts list their userName among their emails, written the same:
                // the same key, so the same number (or the other shard's, as the userName).
                let number = match a.user_name.as_deref() == Some(e.value.as_str()) {
                    true => user,
                    false => normalize_ref(&e.value).and_then(|k| shard.number(k)),
                };
                put(&slots.account_emails[email], number);
                email += 1;
            }
        }
        let mut alias = 0;
        for (i, p) in people.iter().enumerate() {
            put(
                &slots.person_employee[i],
                normalize_ref_opt(p.employee_id.as_deref()).and_then(|k| shard.number(k)),
            );
            put(
                &slots.person_email[i],
                normalize_ref_opt(p.email.as_deref()).and_then(|k| shard.number(k)),
            );
            for a in &p.aliases {
                put(
                    &slots.person_aliases[alias],
                    normalize_ref(a).and_then(|k| shard.number(k)),
                );
                alias += 1;
            }
        }
        for (i, m) in members.iter().enumerate() {
            put(
                &slots.member_email[i],
                normalize_ref_opt(m.email.as_deref()).and_then(|k| shard.number(k)),
            );
            put(
                &slots.member_username[i],
                normalize_ref_opt(m.username.as_deref()).and_then(|k| shard.number(k)),
            );
        }
        shard.texts
    }

    /// The number of `key` when it is this shard's (new or already given), marked with
    /// [`SECOND`] in the second shard; `None` when it is the other shard's.
    fn number(&mut self, key: Cow<'a, str>) -> Option<u32> {
        let hash = self.hasher.hash_one(key.as_ref());
        // Bit 40: neither the table's bucket index (the low bits) nor its tags (the top
        // seven) use it, so both shards' tables stay evenly spread.
        if (hash >> 40) & 1 != self.index {
            return None;
        }
        let hasher = self.hasher;
        let texts = &self.texts;
        let entry = self.table.entry(
            hash,
            |n| texts[*n as usize] == key,
            |n| hasher.hash_one(texts[*n as usize].as_ref()),
        );
        let n = match entry {
            hashbrown::hash_table::Entry::Occupied(found) => *found.get(),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                let n = offset(texts.len());
                slot.insert(n);
                self.texts.push(key);
                n
            }
        };
        Some(if self.index == 1 { n | SECOND } else { n })
    }
}

fn normalize_ref_opt(value: Option<&str>) -> Option<Cow<'_, str>> {
    value.and_then(normalize_ref)
}

/// A position as a `u32`, the width of every index here. Over two billion keys would not
/// fit in memory first.
fn offset(n: usize) -> u32 {
    u32::try_from(n)
        .ok()
        .filter(|n| n & SECOND == 0)
        .expect("fewer than 2^31 keys in one reconciliation")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::Email;

    fn account(user: Option<&str>, emails: &[&str], external: Option<&str>) -> Account {
        Account {
            id: "a".into(),
            user_name: user.map(str::to_owned),
            external_id: external.map(str::to_owned),
            employee_number: Some("E-9".into()),
            display_name: Some("Jdoe".into()),
            given_name: None,
            family_name: None,
            active: true,
            emails: emails
                .iter()
                .map(|e| Email {
                    value: (*e).to_owned(),
                    primary: false,
                    kind: None,
                })
                .collect(),
            groups: vec![],
            role: None,
            team: None,
            org: None,
            created: None,
            last_modified: None,
        }
    }

    fn person(email: &str, employee_id: &str, aliases: &[&str]) -> Person {
        Person {
            row: 2,
            email: Some(email.into()),
            employee_id: Some(employee_id.into()),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            name: None,
            department: None,
            status: None,
            status_terminated: false,
            termination_date: None,
            termination_text: None,
            guest: false,
            last_sign_in: None,
        }
    }

    #[test]
    fn equal_keys_get_one_number_whatever_their_case_space_or_form() {
        let accounts = [
            account(
                Some(" Jane.Doe@Example.COM "),
                &[" Jane.Doe@Example.COM ", "   ", "JOSÉ@example.com"],
                None,
            ),
            account(
                Some("jane.doe@example.com"),
                &["jose\u{301}@example.com"],
                Some(" "),
            ),
        ];
        let keys = Keys::new(&accounts, &[], &[]);
        let (first, second) = (keys.account.user(0), keys.account.user(1));
        assert!(first.is_some());
        assert_eq!(first, second);
        assert_eq!(keys.text(first.unwrap()), "jane.doe@example.com");
        // The blank email is left out, not numbered; the one written as the userName has
        // the userName's number.
        let emails: Vec<KeyId> = keys.account.emails(0).collect();
        assert_eq!(emails.len(), 2);
        assert_eq!(emails[0], first.unwrap());
        // NFC against NFD, upper against lower case.
        let other: Vec<KeyId> = keys.account.emails(1).collect();
        assert_eq!(emails[1], other[0]);
        assert_eq!(keys.text(other[0]), "josé@example.com");
        // A blank externalId gives way to the employeeNumber.
        assert_eq!(keys.account.employee(0), keys.account.employee(1));
        assert_eq!(keys.text(keys.account.employee(1).unwrap()), "e-9");
        assert_eq!(keys.text(keys.account.docker(0).unwrap()), "jdoe");
        let user_then_emails: Vec<KeyId> = keys.account.email_like(1).collect();
        assert_eq!(user_then_emails, [first.unwrap(), other[0]]);
        // jane.doe, josé, e-9, jdoe: four distinct keys.
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn people_and_members_share_the_numbers_of_accounts() {
        let accounts = [account(Some("jane@example.com"), &[], None)];
        let people = [person(
            "JANE@example.com",
            "e-9",
            &["", "j.doe@example.com"],
        )];
        let members = [Member {
            row: 2,
            name: None,
            username: Some("JDOE".into()),
            email: Some("jane@example.com ".into()),
            kind: None,
            permission: None,
            teams: None,
            date_joined: None,
            last_logged_in: crate::activity::Seen::Unknown,
            last_seen: crate::activity::Seen::Unknown,
            desktop_version: None,
            source: Default::default(),
            activity_source: Default::default(),
        }];
        let keys = Keys::new(&accounts, &people, &members);
        let jane = keys.account.user(0).unwrap();
        assert_eq!(keys.person.email(0), Some(jane));
        assert_eq!(keys.member.email(0), Some(jane));
        assert_eq!(keys.person.employee(0), keys.account.employee(0));
        assert_eq!(keys.member.username(0), keys.account.docker(0));
        let person_keys: Vec<(KeyId, bool)> = keys.person.email_like(0).collect();
        assert_eq!(person_keys.len(), 2);
        assert_eq!(person_keys[0], (jane, false));
        assert_eq!(keys.text(person_keys[1].0), "j.doe@example.com");
        assert!(person_keys[1].1);
    }

    /// Thousands of keys fall into both shards: every number is below `len()`, names one
    /// text, and equal texts have equal numbers, whichever shard numbered them.
    #[test]
    fn both_shards_number_their_keys_into_one_dense_range() {
        let accounts: Vec<Account> = (0..3000)
            .map(|i| {
                account(
                    Some(&format!("User{i}@Example.com")),
                    &[
                        &format!("user{i}@example.com"),
                        &format!("alt{i}@example.com"),
                    ],
                    Some(&format!("ID-{i}")),
                )
            })
            .collect();
        let people: Vec<Person> = (0..3000)
            .map(|i| {
                person(
                    &format!("user{}@example.com", i * 7 % 3000),
                    &format!("id-{i}"),
                    &[&format!("ALT{i}@example.com")],
                )
            })
            .collect();
        let keys = Keys::new(&accounts, &people, &[]);
        // userName/email, alt, id for each account, and one Docker ID for all.
        assert_eq!(keys.len(), 3000 * 3 + 1);
        assert!(!keys.texts[0].is_empty() && !keys.texts[1].is_empty());
        let mut seen = std::collections::HashMap::new();
        for n in 0..keys.len() as KeyId {
            assert!(seen.insert(keys.text(n).to_owned(), n).is_none());
        }
        for i in 0..3000 {
            let user = keys.account.user(i).unwrap();
            assert_eq!(seen[&format!("user{i}@example.com")], user);
            assert_eq!(keys.account.emails(i).next(), Some(user));
            assert_eq!(
                keys.person.email(i),
                Some(seen[&format!("user{}@example.com", i * 7 % 3000)])
            );
            assert_eq!(keys.person.employee(i), keys.account.employee(i));
            let alias = keys.person.email_like(i).nth(1).unwrap();
            assert_eq!(alias, (keys.account.emails(i).nth(1).unwrap(), true));
        }
    }
}
