//! Every match key of one reconciliation, normalized once and numbered.
//!
//! At a million accounts, normalizing and hashing keys is most of what reconciliation
//! costs, and every finding kind looks keys up its own way. So each key of each input is
//! normalized and hashed exactly once, here, and given a number. The polars joins then run
//! on numbers, and each kind's lookup is an array indexed by key number instead of a map
//! of strings of its own.

use std::borrow::Cow;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::normalize_ref;
use crate::activity::Member;
use crate::idp::Person;
use crate::scim::Account;

/// A normalized key's number; equal numbers are equal keys.
pub(super) type KeyId = u32;

/// The keys of one reconciliation's inputs, by number.
pub(super) struct Keys<'a> {
    /// The normalized text of each key number, borrowed from the inputs where the value
    /// was already normalized (as most emails are).
    texts: Vec<Cow<'a, str>>,
    /// Key numbers, found by the hash of their text.
    table: HashTable<KeyId>,
    hasher: foldhash::fast::RandomState,
    pub account: AccountKeys,
    pub person: PersonKeys,
    pub member: MemberKeys,
}

/// Each SCIM account's keys, by the account's position.
#[derive(Default)]
pub(super) struct AccountKeys {
    /// `externalId`, else the enterprise `employeeNumber`.
    pub employee: Vec<Option<KeyId>>,
    pub user: Vec<Option<KeyId>>,
    /// `displayName`, the Docker ID.
    pub docker: Vec<Option<KeyId>>,
    /// Where each account's emails start in `emails`; one more entry than accounts.
    email_start: Vec<u32>,
    emails: Vec<KeyId>,
}

impl AccountKeys {
    /// The account's `emails`, in their order, without the empty ones.
    pub fn emails(&self, account: usize) -> &[KeyId] {
        &self.emails[self.email_start[account] as usize..self.email_start[account + 1] as usize]
    }

    /// Every key an account can be found by as an email: `userName`, then `emails`.
    pub fn email_like(&self, account: usize) -> impl Iterator<Item = KeyId> + '_ {
        self.user[account]
            .into_iter()
            .chain(self.emails(account).iter().copied())
    }
}

/// Each IdP person's keys, by the person's position.
#[derive(Default)]
pub(super) struct PersonKeys {
    pub employee: Vec<Option<KeyId>>,
    pub email: Vec<Option<KeyId>>,
    /// Where each person's aliases start in `aliases`; one more entry than people.
    alias_start: Vec<u32>,
    aliases: Vec<KeyId>,
}

impl PersonKeys {
    pub fn aliases(&self, person: usize) -> &[KeyId] {
        &self.aliases[self.alias_start[person] as usize..self.alias_start[person + 1] as usize]
    }

    /// The person's email, then the aliases: every key matching can find them by.
    pub fn email_like(&self, person: usize) -> impl Iterator<Item = (KeyId, bool)> + '_ {
        self.email[person]
            .map(|k| (k, false))
            .into_iter()
            .chain(self.aliases(person).iter().map(|k| (*k, true)))
    }
}

/// Each Hub member's keys, by the member's position.
#[derive(Default)]
pub(super) struct MemberKeys {
    pub email: Vec<Option<KeyId>>,
    pub username: Vec<Option<KeyId>>,
}

impl<'a> Keys<'a> {
    /// Normalizes and numbers every key of the accounts, the people and the members.
    pub fn new(accounts: &'a [Account], people: &'a [Person], members: &'a [Member]) -> Self {
        let mut keys = Keys {
            texts: Vec::with_capacity(accounts.len() * 2 + people.len()),
            table: HashTable::with_capacity(accounts.len() * 2 + people.len()),
            hasher: foldhash::fast::RandomState::default(),
            account: AccountKeys::default(),
            person: PersonKeys::default(),
            member: MemberKeys::default(),
        };

        let mut account = AccountKeys {
            employee: Vec::with_capacity(accounts.len()),
            user: Vec::with_capacity(accounts.len()),
            docker: Vec::with_capacity(accounts.len()),
            email_start: Vec::with_capacity(accounts.len() + 1),
            emails: Vec::with_capacity(accounts.len()),
        };
        account.email_start.push(0);
        for a in accounts {
            let employee = keys
                .intern_opt(a.external_id.as_deref())
                .or_else(|| keys.intern_opt(a.employee_number.as_deref()));
            account.employee.push(employee);
            account.user.push(keys.intern_opt(a.user_name.as_deref()));
            account
                .docker
                .push(keys.intern_opt(a.display_name.as_deref()));
            for e in &a.emails {
                if let Some(k) = keys.intern(&e.value) {
                    account.emails.push(k);
                }
            }
            account.email_start.push(offset(account.emails.len()));
        }

        let mut person = PersonKeys {
            employee: Vec::with_capacity(people.len()),
            email: Vec::with_capacity(people.len()),
            alias_start: Vec::with_capacity(people.len() + 1),
            aliases: Vec::new(),
        };
        person.alias_start.push(0);
        for p in people {
            person
                .employee
                .push(keys.intern_opt(p.employee_id.as_deref()));
            person.email.push(keys.intern_opt(p.email.as_deref()));
            for alias in &p.aliases {
                if let Some(k) = keys.intern(alias) {
                    person.aliases.push(k);
                }
            }
            person.alias_start.push(offset(person.aliases.len()));
        }

        let mut member = MemberKeys {
            email: Vec::with_capacity(members.len()),
            username: Vec::with_capacity(members.len()),
        };
        for m in members {
            member.email.push(keys.intern_opt(m.email.as_deref()));
            member.username.push(keys.intern_opt(m.username.as_deref()));
        }

        keys.account = account;
        keys.person = person;
        keys.member = member;
        keys
    }

    /// How many distinct keys there are: the length of an array indexed by key number.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// A key's normalized text.
    pub fn text(&self, key: KeyId) -> &str {
        &self.texts[key as usize]
    }

    /// An array with one `value` per key number.
    pub fn per_key<T: Clone>(&self, value: T) -> Vec<T> {
        vec![value; self.len()]
    }

    fn intern_opt(&mut self, raw: Option<&'a str>) -> Option<KeyId> {
        raw.and_then(|raw| self.intern(raw))
    }

    /// The number of `raw`'s normalized key, new or already given; `None` for a value
    /// that normalizes to nothing (an empty key never matches).
    fn intern(&mut self, raw: &'a str) -> Option<KeyId> {
        let key = normalize_ref(raw)?;
        let hasher = &self.hasher;
        let texts = &self.texts;
        let hash = hasher.hash_one(key.as_ref());
        let entry = self.table.entry(
            hash,
            |id| texts[*id as usize] == key,
            |id| hasher.hash_one(texts[*id as usize].as_ref()),
        );
        Some(match entry {
            hashbrown::hash_table::Entry::Occupied(found) => *found.get(),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                let id = offset(texts.len());
                slot.insert(id);
                self.texts.push(key);
                id
            }
        })
    }
}

/// A position as a `u32`, the width of every index here. More than four billion keys
/// would not fit in memory first.
fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 keys in one reconciliation")
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

    #[test]
    fn equal_keys_get_one_number_whatever_their_case_space_or_form() {
        let accounts = [
            account(
                Some(" Jane.Doe@Example.COM "),
                &["jane.doe@example.com", "   ", "JOSÉ@example.com"],
                None,
            ),
            account(
                Some("jane.doe@example.com"),
                &["jose\u{301}@example.com"],
                Some(" "),
            ),
        ];
        let keys = Keys::new(&accounts, &[], &[]);
        let (first, second) = (keys.account.user[0], keys.account.user[1]);
        assert!(first.is_some());
        assert_eq!(first, second);
        assert_eq!(keys.text(first.unwrap()), "jane.doe@example.com");
        // The blank email is left out, not numbered.
        assert_eq!(keys.account.emails(0).len(), 2);
        assert_eq!(keys.account.emails(0)[0], first.unwrap());
        // NFC against NFD, upper against lower case.
        assert_eq!(keys.account.emails(0)[1], keys.account.emails(1)[0]);
        assert_eq!(keys.text(keys.account.emails(1)[0]), "josé@example.com");
        // A blank externalId gives way to the employeeNumber.
        assert_eq!(keys.account.employee[0], keys.account.employee[1]);
        assert_eq!(keys.text(keys.account.employee[1].unwrap()), "e-9");
        assert_eq!(keys.text(keys.account.docker[0].unwrap()), "jdoe");
        let user_then_emails: Vec<KeyId> = keys.account.email_like(1).collect();
        assert_eq!(
            user_then_emails,
            [first.unwrap(), keys.account.emails(1)[0]]
        );
        // jane.doe, josé, e-9, jdoe: four distinct keys.
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn people_and_members_share_the_numbers_of_accounts() {
        let accounts = [account(Some("jane@example.com"), &[], None)];
        let people = [Person {
            row: 2,
            email: Some("JANE@example.com".into()),
            employee_id: Some("e-9".into()),
            aliases: vec!["".into(), "j.doe@example.com".into()],
            name: None,
            department: None,
            status: None,
            status_terminated: false,
            termination_date: None,
            termination_text: None,
            guest: false,
            last_sign_in: None,
        }];
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
        let jane = keys.account.user[0].unwrap();
        assert_eq!(keys.person.email[0], Some(jane));
        assert_eq!(keys.member.email[0], Some(jane));
        assert_eq!(keys.person.employee[0], keys.account.employee[0]);
        assert_eq!(keys.member.username[0], keys.account.docker[0]);
        let person_keys: Vec<(KeyId, bool)> = keys.person.email_like(0).collect();
        assert_eq!(person_keys.len(), 2);
        assert_eq!(person_keys[0], (jane, false));
        assert_eq!(keys.text(person_keys[1].0), "j.doe@example.com");
        assert!(person_keys[1].1);
    }
}
