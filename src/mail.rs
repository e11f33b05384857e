//! The deliver step: builds the review mail (a text and HTML summary with the report
//! attached, or a short failure notice for an incomplete run) and sends it through SMTP
//! with lettre, or writes it as an `.eml` file to the outbox when no relay is configured
//! or sending failed.
//!
//! Names and reasons reach the mail only through lettre's header encoding and the
//! autoescaped `*.html` templates. The SMTP password never reaches a log or an error.
//!
//! Without `mail.to`, the message is addressed `To: undisclosed-recipients:;` (an empty
//! RFC 5322 group): it can go to the outbox, but [`deliver`] refuses to send it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use tera::{Context, Tera};
use thiserror::Error;

use crate::config::{MailConfig, Secrets};
use crate::reconcile::Kind;
use crate::report::{self, ReportInput, Written, count_label, error_chain};

/// The sender when `mail.from` is not set.
pub const DEFAULT_FROM: &str = "hubreview@localhost";

/// The `To` header of a message built without recipients.
pub const NO_RECIPIENTS: &str = "undisclosed-recipients:;";

/// Longest reason shown in the subject of a failure notice, in characters.
const SUBJECT_REASON_CHARS: usize = 80;

const SUBJECT_TEMPLATE: &str = include_str!("../templates/subject.txt");
const EMAIL_TEXT_TEMPLATE: &str = include_str!("../templates/email.txt");
const EMAIL_HTML_TEMPLATE: &str = include_str!("../templates/email.html");
const NOTICE_TEXT_TEMPLATE: &str = include_str!("../templates/notice.txt");
const NOTICE_HTML_TEMPLATE: &str = include_str!("../templates/notice.html");

/// Where a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the relay, `host:port`.
    Sent { relay: String },
    /// Written to the outbox.
    Outbox { path: PathBuf },
}

/// Why a mail could not be built or delivered. Messages name the relay and carry its
/// reply where there is one; they never carry the SMTP password.
#[derive(Debug, Error)]
pub enum MailError {
    #[error("`{field}` = `{value}` is not an email address: {cause}")]
    Address {
        field: &'static str,
        value: String,
        cause: String,
    },
    #[error("cannot render the mail template `{template}`: {cause}")]
    Template {
        template: &'static str,
        cause: String,
    },
    #[error("cannot attach `{}` to the review mail: {cause}", path.display())]
    Attachment { path: PathBuf, cause: String },
    #[error("cannot build the review mail: {cause}")]
    Build { cause: String },
    #[error("cannot write `{}`: {cause}", path.display())]
    Outbox { path: PathBuf, cause: String },
    #[error("`mail.tls` = `{value}` is not one of `starttls`, `implicit`, `none`")]
    TlsMode { value: String },
    #[error("cannot set up tls for the smtp relay `{relay}`: {cause}")]
    Tls { relay: String, cause: String },
    #[error("no recipients for the review mail to `{relay}`; set `mail.to`")]
    NoRecipients { relay: String },
    #[error(
        "refusing to send smtp credentials without tls to `{relay}`, which is not loopback; \
         set `mail.tls` to `starttls` or `implicit`"
    )]
    CredentialsInClear { relay: String },
    #[error("cannot send the review mail through `{relay}`: {cause}")]
    Send {
        relay: String,
        /// The SMTP reply code, when the relay answered with a negative one.
        code: Option<u16>,
        cause: String,
    },
}

/// Builds the review mail of one run.
///
/// A complete run gets a `multipart/mixed` message: a `multipart/alternative` text and
/// HTML summary, then `report.html` and every CSV of `written` as attachments. An
/// incomplete run gets a short failure notice instead, with `summary.json` attached.
pub fn build_message(
    cfg: &MailConfig,
    input: &ReportInput,
    written: &Written,
) -> Result<Message, MailError> {
    let from_text = cfg.from.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let from = parse_mailbox("mail.from", from_text.unwrap_or(DEFAULT_FROM))?;
    let to = cfg
        .to
        .iter()
        .map(|value| parse_mailbox("mail.to", value))
        .collect::<Result<Vec<_>, _>>()?;

    let view = MailView::new(input, written);
    let subject = render("subject.txt", SUBJECT_TEMPLATE, &view)?;
    let subject = one_line(&subject);
    let view = MailView { subject, ..view };
    let complete = input.is_complete();

    let (text, html) = if complete {
        (
            render("email.txt", EMAIL_TEXT_TEMPLATE, &view)?,
            render("email.html", EMAIL_HTML_TEMPLATE, &view)?,
        )
    } else {
        (
            render("notice.txt", NOTICE_TEXT_TEMPLATE, &view)?,
            render("notice.html", NOTICE_HTML_TEMPLATE, &view)?,
        )
    };

    let mut body = MultiPart::mixed().multipart(MultiPart::alternative_plain_html(text, html));
    for (name, path) in attachments(input, written)? {
        let content = std::fs::read(&path).map_err(|e| MailError::Attachment {
            path: path.clone(),
            cause: error_chain(&e),
        })?;
        body = body
            .singlepart(Attachment::new(ascii_file_name(&name)).body(content, content_type(&name)));
    }

    let mut builder = Message::builder()
        .from(from.clone())
        .subject(view.subject.clone())
        .message_id(None)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_string(),
        ));
    if to.is_empty() {
        // lettre derives the envelope from the recipients and refuses none; the sender
        // stands in for the outbox, and `deliver` refuses to send such a message.
        let envelope =
            lettre::address::Envelope::new(Some(from.email.clone()), vec![from.email.clone()])
                .map_err(|e| MailError::Build {
                    cause: error_chain(&e),
                })?;
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("To"),
                NO_RECIPIENTS.to_string(),
            ))
            .envelope(envelope);
    }
    for mailbox in to {
        builder = builder.to(mailbox);
    }

    builder.multipart(body).map_err(|e| MailError::Build {
        cause: error_chain(&e),
    })
}

/// Sends `message` through the configured relay, or writes it to the outbox when no
/// relay is configured.
///
/// TLS follows `mail.tls`; without it, port 465 means implicit TLS and any other port
/// STARTTLS, which is required (a relay that does not offer it is an error, never a
/// fallback to plain text). The port defaults to 465 for implicit TLS, else 587.
#[tracing::instrument(skip_all, fields(run_id = run_id))]
pub async fn deliver(
    cfg: &MailConfig,
    secrets: &Secrets,
    message: &Message,
    run_id: i64,
) -> Result<Delivery, MailError> {
    let Some(host) = cfg
        .smtp_host
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
    else {
        tracing::debug!("no smtp host configured: writing the mail to the outbox");
        let path = write_outbox(&cfg.outbox, message, run_id)?;
        return Ok(Delivery::Outbox { path });
    };

    let settings = RelaySettings::new(cfg, host)?;
    let relay = settings.relay();
    let undisclosed = message.headers().get_raw("To") == Some(NO_RECIPIENTS);
    if cfg.to.is_empty() || undisclosed {
        return Err(MailError::NoRecipients { relay });
    }

    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(settings.port)
        .timeout(Some(Duration::from_secs(cfg.timeout_secs.max(1))));
    builder = match settings.tls {
        TlsMode::None => builder.tls(Tls::None),
        TlsMode::Starttls | TlsMode::Implicit => {
            let parameters = TlsParameters::new(host.to_string()).map_err(|e| MailError::Tls {
                relay: relay.clone(),
                cause: error_chain(&e),
            })?;
            builder.tls(if settings.tls == TlsMode::Implicit {
                Tls::Wrapper(parameters)
            } else {
                Tls::Required(parameters)
            })
        }
    };

    let username = cfg.username.as_deref().filter(|u| !u.is_empty());
    let password = secrets.smtp_password.as_deref().unwrap_or_default();
    if let Some(username) = username {
        if settings.tls == TlsMode::None && !is_loopback(host) {
            return Err(MailError::CredentialsInClear { relay });
        }
        builder = builder.credentials(Credentials::new(username.to_string(), password.to_string()));
    }

    tracing::debug!(
        relay = %relay,
        tls = settings.tls.as_str(),
        authenticated = username.is_some(),
        "sending the review mail"
    );
    let transport = builder.build();
    match transport.send(message.clone()).await {
        Ok(_) => Ok(Delivery::Sent { relay }),
        Err(error) => Err(MailError::Send {
            code: error
                .status()
                .and_then(|code| code.to_string().parse().ok()),
            cause: redact(&error_chain(&error), password),
            relay,
        }),
    }
}

/// Writes `message` to `<outbox>/run-<run_id>-<YYYYMMDDTHHMMSSZ>.eml` (the directory
/// 0700 when created here, the file 0600, atomically) and returns its path. A file of
/// the same name is never replaced: a suffix `-2`, `-3`, ... tells them apart.
pub fn write_outbox(outbox: &Path, message: &Message, run_id: i64) -> Result<PathBuf, MailError> {
    report::create_private_dir(outbox).map_err(|e| MailError::Outbox {
        path: outbox.to_path_buf(),
        cause: error_chain(&e),
    })?;

    let stem = format!("run-{run_id}-{}", Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut path = outbox.join(format!("{stem}.eml"));
    let mut n = 2;
    while path.exists() {
        path = outbox.join(format!("{stem}-{n}.eml"));
        n += 1;
    }

    report::write_private(&path, &message.formatted()).map_err(|e| MailError::Outbox {
        path: path.clone(),
        cause: error_chain(&e),
    })?;
    Ok(path)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    Starttls,
    Implicit,
    None,
}

impl TlsMode {
    fn as_str(self) -> &'static str {
        match self {
            TlsMode::Starttls => "starttls",
            TlsMode::Implicit => "implicit",
            TlsMode::None => "none",
        }
    }
}

/// The relay's port and TLS mode after defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RelaySettings {
    host: String,
    port: u16,
    tls: TlsMode,
}

impl RelaySettings {
    fn new(cfg: &MailConfig, host: &str) -> Result<Self, MailError> {
        let tls = match cfg.tls.as_deref().map(str::trim) {
            None | Some("") => match cfg.smtp_port {
                Some(465) => TlsMode::Implicit,
                _ => TlsMode::Starttls,
            },
            Some("starttls") => TlsMode::Starttls,
            Some("implicit") => TlsMode::Implicit,
            Some("none") => TlsMode::None,
            Some(other) => {
                return Err(MailError::TlsMode {
                    value: other.to_string(),
                });
            }
        };
        let port = cfg.smtp_port.unwrap_or(match tls {
            TlsMode::Implicit => 465,
            _ => 587,
        });
        Ok(RelaySettings {
            host: host.to_string(),
            port,
            tls,
        })
    }

    fn relay(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Replaces every occurrence of the password in `text`.
fn redact(text: &str, password: &str) -> String {
    if password.is_empty() {
        text.to_string()
    } else {
        text.replace(password, "[redacted]")
    }
}

fn parse_mailbox(field: &'static str, value: &str) -> Result<Mailbox, MailError> {
    value
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| MailError::Address {
            field,
            value: value.to_string(),
            cause: error_chain(&e),
        })
}

/// The files attached to the mail, as (name, path).
fn attachments(
    input: &ReportInput,
    written: &Written,
) -> Result<Vec<(String, PathBuf)>, MailError> {
    let wanted: Vec<&str> = if input.is_complete() {
        let mut names = vec!["report.html"];
        names.extend(
            written
                .files
                .iter()
                .map(|file| file.name.as_str())
                .filter(|name| name.ends_with(".csv")),
        );
        names
    } else {
        vec!["summary.json"]
    };
    wanted
        .into_iter()
        .map(|name| match written.file(name) {
            Some(file) => Ok((file.name.clone(), file.path.clone())),
            None => Err(MailError::Attachment {
                path: written.dir.join(name),
                cause: "the report did not write it".to_string(),
            }),
        })
        .collect()
}

/// A file name safe in any mail client: ASCII letters, digits, `.`, `_` and `-`.
fn ascii_file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.').to_string();
    if safe.is_empty() {
        "attachment".to_string()
    } else {
        safe
    }
}

fn content_type(name: &str) -> ContentType {
    let mime = if name.ends_with(".html") {
        "text/html; charset=utf-8"
    } else if name.ends_with(".csv") {
        "text/csv; charset=utf-8"
    } else if name.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    };
    ContentType::parse(mime).unwrap_or(ContentType::TEXT_PLAIN)
}

fn render(template: &'static str, source: &str, view: &MailView) -> Result<String, MailError> {
    let fail = |e: tera::Error| MailError::Template {
        template,
        cause: error_chain(&e),
    };
    let mut tera = Tera::default();
    tera.add_raw_template(template, source).map_err(fail)?;
    let context = Context::from_serialize(view).map_err(fail)?;
    tera.render(template, &context).map_err(fail)
}

/// Control characters (line breaks included) become spaces and runs of spaces one
/// space, so no value can add a header line.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first line of `reason`, cut to `max` characters.
fn short(reason: &str, max: usize) -> String {
    let line = one_line(
        reason
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default(),
    );
    if line.chars().count() <= max {
        line
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What the mail templates show.
#[derive(Serialize)]
struct MailView {
    subject: String,
    organization: String,
    as_of: String,
    run_id: i64,
    generated_at: String,
    version: String,
    complete: bool,
    reason: String,
    short_reason: String,
    leavers_label: String,
    open_label: String,
    not_evaluated_label: Option<String>,
    counts: Vec<CountRow>,
    seats: Option<SeatsLine>,
    accepted_drops: Vec<String>,
    snapshot: String,
    idp: String,
    activity: String,
    attachments: Vec<String>,
    report_dir: String,
}

#[derive(Serialize)]
struct CountRow {
    title: &'static str,
    count_label: String,
    /// The action, or why the kind was not evaluated.
    note: String,
}

#[derive(Serialize)]
struct SeatsLine {
    purchased: String,
    in_use: u64,
    reclaimable_total: u64,
    monthly_saving: Option<String>,
    yearly_saving: Option<String>,
}

impl MailView {
    fn new(input: &ReportInput, written: &Written) -> Self {
        let reason = input.failure_reason().unwrap_or_default();
        let organization = one_line(&input.organization);

        let leavers_label = match input.count(Kind::TerminatedActive) {
            Some(n) => plural(n, "leaver with access", "leavers with access"),
            None => "leavers not evaluated".to_string(),
        };
        let open_label = match input.open_total() {
            Some(n) => plural(n, "open finding", "open findings"),
            None => "no findings: nothing was reconciled".to_string(),
        };
        let not_evaluated = Kind::ALL
            .into_iter()
            .filter(|k| input.count(*k).is_none())
            .count();
        let not_evaluated_label = (input.is_complete() && not_evaluated > 0)
            .then(|| format!("{} not evaluated", plural(not_evaluated, "kind", "kinds")));

        let counts = Kind::ALL
            .into_iter()
            .map(|kind| CountRow {
                title: kind.title(),
                count_label: count_label(input.count(kind)),
                note: input
                    .not_evaluated_reason(kind)
                    .unwrap_or_else(|| kind.action().to_string()),
            })
            .collect();

        let seats = input.outcome().map(|outcome| {
            let seats = &outcome.seats;
            let money = |v: Option<f64>| v.map(|v| format!("{v:.2}"));
            SeatsLine {
                purchased: seats
                    .purchased
                    .map_or_else(|| "not configured".to_string(), |n| n.to_string()),
                in_use: seats.in_use,
                reclaimable_total: seats.reclaimable_total,
                monthly_saving: money(seats.monthly_saving),
                yearly_saving: money(seats.yearly_saving),
            }
        });

        let snapshot = input.snapshot.as_ref().map_or_else(
            || "none".to_string(),
            |s| {
                format!(
                    "{}, taken {}, {}: {} accounts ({} active)",
                    s.id,
                    s.taken_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    s.status,
                    s.accounts,
                    s.active_accounts
                )
            },
        );
        let file_line = |file: &Option<report::InputFile>| {
            file.as_ref().map_or_else(
                || "none".to_string(),
                |f| {
                    let name = f.path.file_name().map_or_else(
                        || f.path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    format!(
                        "{name} ({}, {} rows), SHA-256 {}",
                        f.format, f.rows, f.sha256
                    )
                },
            )
        };

        let attachments = attachments(input, written)
            .map(|list| {
                list.into_iter()
                    .map(|(name, _)| ascii_file_name(&name))
                    .collect()
            })
            .unwrap_or_default();

        MailView {
            subject: String::new(),
            organization,
            as_of: input.as_of.format("%Y-%m-%d").to_string(),
            run_id: input.run_id,
            generated_at: input
                .generated_at
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            version: input.version.clone(),
            complete: input.is_complete(),
            short_reason: short(&reason, SUBJECT_REASON_CHARS),
            reason,
            leavers_label,
            open_label,
            not_evaluated_label,
            counts,
            seats,
            accepted_drops: input
                .accepted_drops
                .iter()
                .map(|name| format!("{} (--accept-drop {name})", report::drop_label(name)))
                .collect(),
            snapshot,
            idp: file_line(&input.idp),
            activity: file_line(&input.activity),
            attachments,
            report_dir: written.dir.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use crate::report::tests::{complete_input, incomplete_input};

    const PASSWORD: &str = "s3cr3t-Pa55word";

    fn config(to: &[&str]) -> MailConfig {
        MailConfig {
            from: Some("Access review <hubreview@acme.example>".to_string()),
            to: to.iter().map(|s| s.to_string()).collect(),
            ..MailConfig::default()
        }
    }

    fn build(cfg: &MailConfig, input: &ReportInput) -> (tempfile::TempDir, Message) {
        let dir = tempfile::tempdir().unwrap();
        let written = report::write(&dir.path().join("run"), input, 500).unwrap();
        let message = build_message(cfg, input, &written).unwrap();
        (dir, message)
    }

    /// A message in parts: header fields (unfolded, in order) and the body.
    struct Parsed {
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Parsed {
        fn new(raw: &str) -> Self {
            let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
            let mut headers: Vec<(String, String)> = Vec::new();
            for line in head.split("\r\n") {
                if line.starts_with([' ', '\t']) {
                    headers.last_mut().unwrap().1.push_str(line);
                } else if let Some((name, value)) = line.split_once(':') {
                    headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
                }
            }
            Parsed {
                headers,
                body: body.to_string(),
            }
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.as_str())
        }

        /// The parts of a multipart body, split on the boundary of its content type.
        fn parts(&self) -> Vec<Parsed> {
            let content_type = self.header("content-type").unwrap();
            let boundary = content_type
                .split("boundary=")
                .nth(1)
                .unwrap()
                .trim_matches('"')
                .to_string();
            let delimiter = format!("--{boundary}");
            self.body
                .split(&delimiter)
                .skip(1)
                .filter(|part| !part.starts_with("--"))
                .map(|part| Parsed::new(part.trim_start_matches("\r\n")))
                .collect()
        }
    }

    fn formatted(message: &Message) -> String {
        String::from_utf8(message.formatted()).unwrap()
    }

    /// Decodes RFC 2047 encoded words (`B` and `Q`), for checking what lettre wrote.
    /// Whitespace between two encoded words is dropped, any other is kept as one space.
    fn decode_words(value: &str) -> String {
        let mut out = String::new();
        let mut previous_was_word = false;
        for token in value.split_whitespace() {
            let word = token
                .strip_prefix("=?")
                .and_then(|t| t.strip_suffix("?="))
                .and_then(|t| {
                    let mut fields = t.splitn(3, '?');
                    Some((fields.next()?, fields.next()?, fields.next()?))
                });
            let adjacent_words = previous_was_word && word.is_some();
            if !(out.is_empty() || adjacent_words) {
                out.push(' ');
            }
            match word {
                Some((_, encoding, text)) => {
                    let bytes = if encoding.eq_ignore_ascii_case("b") {
                        decode_base64(text)
                    } else {
                        decode_q(text)
                    };
                    out.push_str(&String::from_utf8(bytes).unwrap());
                }
                None => out.push_str(token),
            }
            previous_was_word = word.is_some();
        }
        out
    }

    fn decode_base64(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for c in text.bytes().filter(|c| *c != b'=') {
            bits = (bits << 6) | ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
            }
        }
        out
    }

    fn decode_q(text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'_' => out.push(b' '),
                b'=' => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                other => out.push(other),
            }
            i += 1;
        }
        out
    }

    fn attachment_names(message: &Parsed) -> Vec<String> {
        message
            .parts()
            .iter()
            .filter_map(|part| part.header("content-disposition"))
            .filter_map(|value| value.split("filename=").nth(1))
            .map(|name| name.trim_matches('"').to_string())
            .collect()
    }

    #[test]
    fn complete_run_mail_counts_findings_in_the_subject_and_attaches_the_report() {
        let (_dir, message) = build(
            &config(&["Reviewers <reviewers@acme.example>"]),
            &complete_input(),
        );

        let raw = formatted(&message);
        let parsed = Parsed::new(&raw);
        assert_eq!(
            parsed.header("subject").unwrap(),
            "Docker Hub access review acmerobotics 2026-11-30: 2 leavers with access, 4 open \
             findings (1 kind not evaluated)"
        );
        assert_eq!(
            parsed.header("from").unwrap(),
            "\"Access review\" <hubreview@acme.example>"
        );
        assert_eq!(
            parsed.header("to").unwrap(),
            "Reviewers <reviewers@acme.example>"
        );
        assert_eq!(parsed.header("auto-submitted").unwrap(), "auto-generated");
        assert!(parsed.header("message-id").is_some() && parsed.header("date").is_some());
        assert!(
            parsed
                .header("content-type")
                .unwrap()
                .starts_with("multipart/mixed")
        );

        let parts = parsed.parts();
        let alternative = &parts[0];
        assert!(
            alternative
                .header("content-type")
                .unwrap()
                .starts_with("multipart/alternative")
        );
        let bodies: Vec<&str> = alternative
            .parts()
            .iter()
            .map(|part| {
                part.header("content-type")
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
            })
            .map(|kind| if kind == "text/plain" { "text" } else { "html" })
            .collect();
        assert_eq!(bodies, ["text", "html"]);

        let mut expected = vec!["report.html".to_string(), "findings.csv".to_string()];
        expected.extend(
            Kind::ALL
                .into_iter()
                .filter(|kind| *kind != Kind::IdleSeat)
                .map(|kind| format!("{}.csv", kind.as_str())),
        );
        assert_eq!(attachment_names(&parsed), expected);

        for line in raw.split("\r\n") {
            assert!(line.len() <= 998, "line of {} octets", line.len());
        }
    }

    #[test]
    fn summary_parts_are_rendered_with_real_line_breaks() {
        let input = complete_input();
        let dir = tempfile::tempdir().unwrap();
        let written = report::write(dir.path(), &input, 500).unwrap();
        let view = MailView::new(&input, &written);

        let text = render("email.txt", EMAIL_TEXT_TEMPLATE, &view).unwrap();
        let html = render("email.html", EMAIL_HTML_TEMPLATE, &view).unwrap();

        assert!(text.contains("\n  Leavers with active Docker access: 2 (revoke now)\n"));
        assert!(text.contains(
            "\n  Idle seats: not evaluated (no activity export configured (`activity.file`))\n"
        ));
        assert!(text.contains("Reclaiming them saves 63.00 a month, 756.00 a year."));
        assert!(html.lines().count() > 20);
        for line in html.lines().chain(text.lines()) {
            assert!(line.len() <= 200, "{line}");
        }
    }

    #[test]
    fn mail_text_matches_its_snapshot() {
        let input = complete_input();
        let dir = tempfile::tempdir().unwrap();
        let written =
            report::write(Path::new(&dir.path().join("reports/run-42")), &input, 500).unwrap();
        let mut view = MailView::new(&input, &written);
        view.report_dir = "reports/run-42".to_string();

        insta::assert_snapshot!(render("email.txt", EMAIL_TEXT_TEMPLATE, &view).unwrap());
    }

    #[test]
    fn an_overridden_drop_guard_is_named_in_the_summary() {
        let mut input = complete_input();
        input.accepted_drops = vec!["scim".to_string()];
        let dir = tempfile::tempdir().unwrap();
        let written = report::write(dir.path(), &input, 500).unwrap();
        let view = MailView::new(&input, &written);

        let text = render("email.txt", EMAIL_TEXT_TEMPLATE, &view).unwrap();
        let html = std::fs::read_to_string(&written.html).unwrap();

        assert!(text.contains("WARNING: a drop guard was overridden"));
        assert!(text.contains(
            "  - The SCIM snapshot shrank against the last complete one (--accept-drop scim)"
        ));
        assert!(html.contains("<h2>Drop guard overridden</h2>"));
    }

    #[test]
    fn german_subject_is_sent_as_utf8_encoded_words() {
        let mut input = complete_input();
        input.organization = "Prüfung für Müller GmbH".to_string();

        let (_dir, message) = build(&config(&["reviewers@acme.example"]), &input);

        let raw = formatted(&message);
        let subject = Parsed::new(&raw).header("subject").unwrap().to_string();
        assert!(subject.is_ascii(), "{subject}");
        assert!(
            subject.to_ascii_lowercase().contains("=?utf-8?"),
            "{subject}"
        );
        assert!(
            decode_words(&subject)
                .starts_with("Docker Hub access review Prüfung für Müller GmbH 2026-11-30: "),
            "{}",
            decode_words(&subject)
        );
        assert!(
            raw.lines()
                .all(|line| line.is_ascii() || !line.contains("Prüfung"))
        );
    }

    #[test]
    fn line_breaks_in_the_organization_cannot_add_header_lines() {
        let mut input = complete_input();
        input.organization = "acme\r\nBcc: intruder@evil.example\r\n".to_string();

        let (_dir, message) = build(&config(&["reviewers@acme.example"]), &input);

        let raw = formatted(&message);
        let parsed = Parsed::new(&raw);
        assert!(parsed.header("bcc").is_none());
        assert!(
            parsed
                .header("subject")
                .unwrap()
                .starts_with("Docker Hub access review acme Bcc:")
        );
        assert!(
            message
                .envelope()
                .to()
                .iter()
                .all(|a| a.to_string() == "reviewers@acme.example")
        );
    }

    #[test]
    fn html_summary_escapes_the_organization() {
        let mut input = complete_input();
        input.organization = "<img src=x onerror=alert(1)>".to_string();
        let dir = tempfile::tempdir().unwrap();
        let written = report::write(dir.path(), &input, 500).unwrap();

        let html = render(
            "email.html",
            EMAIL_HTML_TEMPLATE,
            &MailView::new(&input, &written),
        )
        .unwrap();

        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }

    #[test]
    fn incomplete_run_mail_is_a_failure_notice_with_summary_json_attached() {
        let (_dir, message) = build(&config(&["reviewers@acme.example"]), &incomplete_input());

        let raw = formatted(&message);
        let parsed = Parsed::new(&raw);
        assert_eq!(
            parsed.header("subject").unwrap(),
            "Docker Hub access review acmerobotics 2026-11-30 could not complete: SCIM returned \
             117 of 131 users (totalResults 131)"
        );
        assert_eq!(attachment_names(&parsed), ["summary.json"]);
        let text = &parsed.parts()[0].parts()[0];
        assert!(text.body.contains("NOTHING WAS RECONCILED"));
        assert!(text.body.contains("What to check:"));
        assert!(!raw.contains("report.html\""));
    }

    #[test]
    fn long_failure_reasons_are_cut_in_the_subject() {
        let mut input = incomplete_input();
        input.reason = Some(format!("{}\nsecond line", "x".repeat(200)));

        let (_dir, message) = build(&config(&["reviewers@acme.example"]), &input);

        let parsed = Parsed::new(&formatted(&message));
        let subject = decode_words(parsed.header("subject").unwrap());
        assert!(
            subject.ends_with(&format!("{}…", "x".repeat(79))),
            "{subject}"
        );
        assert!(!subject.contains("second line"));
    }

    #[test]
    fn message_without_recipients_goes_to_undisclosed_recipients() {
        let mut cfg = config(&[]);
        cfg.from = None;

        let (_dir, message) = build(&cfg, &complete_input());

        let parsed = Parsed::new(&formatted(&message));
        assert_eq!(parsed.header("to").unwrap(), NO_RECIPIENTS);
        assert_eq!(parsed.header("from").unwrap(), DEFAULT_FROM);
    }

    #[test]
    fn an_invalid_recipient_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let input = complete_input();
        let written = report::write(dir.path(), &input, 500).unwrap();

        let error = build_message(&config(&["not an address"]), &input, &written).unwrap_err();

        assert!(
            error
                .to_string()
                .starts_with("`mail.to` = `not an address` is not an email address: "),
            "{error}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn outbox_write_produces_a_0600_file_in_a_0700_directory() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, message) = build(&config(&["reviewers@acme.example"]), &complete_input());
        let outbox = dir.path().join("outbox");

        let first = write_outbox(&outbox, &message, 42).unwrap();
        let second = write_outbox(&outbox, &message, 42).unwrap();

        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&outbox), 0o700);
        assert_eq!(mode(&first), 0o600);
        let name = first.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("run-42-") && name.ends_with("Z.eml"),
            "{name}"
        );
        assert_ne!(first, second);
        assert_eq!(std::fs::read(&first).unwrap(), message.formatted());
    }

    #[tokio::test]
    async fn without_a_relay_the_mail_goes_to_the_outbox() {
        let (dir, message) = build(&config(&["reviewers@acme.example"]), &complete_input());
        let mut cfg = config(&["reviewers@acme.example"]);
        cfg.outbox = dir.path().join("outbox");

        let delivery = deliver(&cfg, &Secrets::default(), &message, 42)
            .await
            .unwrap();

        let Delivery::Outbox { path } = delivery else {
            panic!("expected the outbox, got {delivery:?}");
        };
        assert!(path.starts_with(dir.path().join("outbox")));
    }

    #[test]
    fn relay_port_and_tls_default_from_each_other() {
        let table = [
            (None, None, 587, TlsMode::Starttls),
            (Some(465), None, 465, TlsMode::Implicit),
            (Some(25), None, 25, TlsMode::Starttls),
            (None, Some("implicit"), 465, TlsMode::Implicit),
            (None, Some("starttls"), 587, TlsMode::Starttls),
            (Some(2525), Some("none"), 2525, TlsMode::None),
        ];
        for (port, tls, expected_port, expected_tls) in table {
            let cfg = MailConfig {
                smtp_port: port,
                tls: tls.map(str::to_string),
                ..MailConfig::default()
            };
            let settings = RelaySettings::new(&cfg, "mail.acme.example").unwrap();
            assert_eq!(
                (settings.port, settings.tls),
                (expected_port, expected_tls),
                "{port:?} {tls:?}"
            );
        }
    }

    #[test]
    fn an_unknown_tls_mode_is_an_error() {
        let cfg = MailConfig {
            tls: Some("ssl".to_string()),
            ..MailConfig::default()
        };

        let error = RelaySettings::new(&cfg, "mail.acme.example").unwrap_err();

        assert_eq!(
            error.to_string(),
            "`mail.tls` = `ssl` is not one of `starttls`, `implicit`, `none`"
        );
    }

    #[tokio::test]
    async fn credentials_are_never_sent_in_clear_to_a_remote_relay() {
        let (_dir, message) = build(&config(&["reviewers@acme.example"]), &complete_input());
        let cfg = MailConfig {
            // `.invalid` never resolves; the refusal comes before any connection.
            smtp_host: Some("mail.acme.invalid".to_string()),
            smtp_port: Some(25),
            tls: Some("none".to_string()),
            username: Some("hubreview".to_string()),
            to: vec!["reviewers@acme.example".to_string()],
            ..MailConfig::default()
        };
        let secrets = Secrets {
            smtp_password: Some(PASSWORD.to_string()),
            ..Secrets::default()
        };

        let error = deliver(&cfg, &secrets, &message, 42).await.unwrap_err();

        assert!(
            matches!(error, MailError::CredentialsInClear { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("`mail.acme.invalid:25`"));
    }

    #[tokio::test]
    async fn a_message_without_recipients_is_not_sent() {
        let (_dir, message) = build(&config(&[]), &complete_input());
        let cfg = MailConfig {
            smtp_host: Some("127.0.0.1".to_string()),
            smtp_port: Some(1),
            tls: Some("none".to_string()),
            ..MailConfig::default()
        };

        let error = deliver(&cfg, &Secrets::default(), &message, 42)
            .await
            .unwrap_err();

        assert_eq!(
            error.to_string(),
            "no recipients for the review mail to `127.0.0.1:1`; set `mail.to`"
        );
    }

    /// How the test relay answers.
    #[derive(Clone, Copy)]
    enum Relay {
        Accept,
        /// Refuses the credentials, echoing the password back in its reply.
        RefuseAuth,
    }

    /// A one-connection SMTP relay on 127.0.0.1. Returns its port and the commands and
    /// data it received.
    async fn start_relay(behaviour: Relay) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let mut seen = Vec::new();
            write.write_all(b"220 relay.test ESMTP\r\n").await.unwrap();
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                seen.push(line.clone());
                if in_data {
                    if line == "." {
                        in_data = false;
                        write.write_all(b"250 2.0.0 queued as 1\r\n").await.unwrap();
                    }
                    continue;
                }
                let verb = line
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                let reply = match (verb.as_str(), behaviour) {
                    ("EHLO", _) => {
                        "250-relay.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".to_string()
                    }
                    ("AUTH", Relay::RefuseAuth) => {
                        format!("535 5.7.8 credentials rejected: {PASSWORD}\r\n")
                    }
                    ("AUTH", Relay::Accept) => "235 2.7.0 accepted\r\n".to_string(),
                    ("DATA", _) => {
                        in_data = true;
                        "354 go ahead\r\n".to_string()
                    }
                    ("QUIT", _) => {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    }
                    _ => "250 2.0.0 ok\r\n".to_string(),
                };
                if write.write_all(reply.as_bytes()).await.is_err() {
                    break;
                }
            }
            seen
        });
        (port, task)
    }

    fn relay_config(port: u16) -> MailConfig {
        MailConfig {
            smtp_host: Some("127.0.0.1".to_string()),
            smtp_port: Some(port),
            tls: Some("none".to_string()),
            username: Some("hubreview".to_string()),
            timeout_secs: 5,
            ..config(&["reviewers@acme.example"])
        }
    }

    #[tokio::test]
    async fn the_mail_is_sent_through_a_local_relay() {
        let (port, relay) = start_relay(Relay::Accept).await;
        let cfg = relay_config(port);
        let (_dir, message) = build(&cfg, &complete_input());
        let secrets = Secrets {
            smtp_password: Some(PASSWORD.to_string()),
            ..Secrets::default()
        };

        let delivery = deliver(&cfg, &secrets, &message, 42).await.unwrap();

        assert_eq!(
            delivery,
            Delivery::Sent {
                relay: format!("127.0.0.1:{port}")
            }
        );
        let seen = relay.await.unwrap();
        assert!(seen.iter().any(|l| l.starts_with("AUTH ")));
        assert!(seen.iter().any(|l| l == "RCPT TO:<reviewers@acme.example>"));
        assert!(
            seen.iter()
                .any(|l| l.starts_with("Subject: Docker Hub access review acmerobotics"))
        );
    }

    #[tokio::test]
    async fn a_refusing_relay_is_named_with_its_reply_and_never_the_password() {
        let (port, relay) = start_relay(Relay::RefuseAuth).await;
        let cfg = relay_config(port);
        let (_dir, message) = build(&cfg, &complete_input());
        let secrets = Secrets {
            smtp_password: Some(PASSWORD.to_string()),
            ..Secrets::default()
        };

        let error = deliver(&cfg, &secrets, &message, 42).await.unwrap_err();

        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot send the review mail through `127.0.0.1:{port}`: "
            )),
            "{text}"
        );
        assert!(
            text.contains("535") && text.contains("credentials rejected"),
            "{text}"
        );
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!format!("{error:?}").contains(PASSWORD));
        assert!(matches!(
            error,
            MailError::Send {
                code: Some(535),
                ..
            }
        ));
        drop(relay);
    }

    #[tokio::test]
    async fn starttls_is_required_and_never_downgraded_to_plain_text() {
        // The test relay does not offer STARTTLS.
        let (port, relay) = start_relay(Relay::Accept).await;
        let cfg = MailConfig {
            tls: Some("starttls".to_string()),
            ..relay_config(port)
        };
        let (_dir, message) = build(&cfg, &complete_input());
        let secrets = Secrets {
            smtp_password: Some(PASSWORD.to_string()),
            ..Secrets::default()
        };

        let error = deliver(&cfg, &secrets, &message, 42).await.unwrap_err();

        assert!(matches!(error, MailError::Send { .. }), "{error}");
        let seen = relay.await.unwrap();
        assert!(
            seen.iter()
                .all(|l| !l.starts_with("AUTH") && !l.starts_with("MAIL")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_message_built_without_recipients_is_not_sent_even_when_the_config_has_some() {
        let (_dir, message) = build(&config(&[]), &complete_input());
        let cfg = relay_config(1);

        let error = deliver(&cfg, &Secrets::default(), &message, 42)
            .await
            .unwrap_err();

        assert!(matches!(error, MailError::NoRecipients { .. }), "{error}");
    }

    #[test]
    fn attachment_names_are_ascii_safe() {
        let table = [
            ("report.html", "report.html"),
            ("terminated_active.csv", "terminated_active.csv"),
            ("prüfung bericht.csv", "pr_fung_bericht.csv"),
            ("../../etc/passwd", "_.._etc_passwd"),
            ("", "attachment"),
        ];
        for (name, expected) in table {
            assert_eq!(ascii_file_name(name), expected, "{name:?}");
        }
    }
}
