//! The deliver step: builds the review mail (a text and HTML summary with the report
//! attached, or a short failure notice for an incomplete run) and sends it through SMTP,
//! or writes it as an `.eml` file to the outbox when no relay is configured, on
//! `--dry-run`, or when sending failed.
//!
//! A message over `mail.max_bytes` gets its attachments zipped, and when that is still
//! too large, it carries the summary alone and says where the report is. A relay that
//! refuses the message as too large (552) gets the same treatment, one step at a time.
//!
//! Names and reasons reach the mail only through lettre's header encoding and the
//! autoescaped `*.html` templates. The SMTP password never reaches a log or an error.
//!
//! Without `mail.to`, the message is addressed `To: undisclosed-recipients:;` (an empty
//! RFC 5322 group): it can go to the outbox, but it is never sent.

mod smtp;
mod zip;

use std::path::{Path, PathBuf};

use chrono::Utc;
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::extension::ClientId;
use serde::Serialize;
use tera::{Context, Tera};
use thiserror::Error;

use crate::config::{MailConfig, Secrets};
use crate::reconcile::Kind;
use crate::report::{self, ReportInput, Written, error_chain};
use smtp::{RelaySettings, Session};

/// The sender when `mail.from` is not set.
pub const DEFAULT_FROM: &str = "hubreview@localhost";

/// The `To` header of a message built without recipients.
pub const NO_RECIPIENTS: &str = "undisclosed-recipients:;";

/// `mail.max_bytes` when not set: 10 MiB, a common relay limit.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// The smallest `mail.max_bytes` accepted: a summary alone needs about this much.
const MIN_MAX_BYTES: u64 = 16 * 1024;

/// The name of the archive that carries the report files in [`Form::Zip`].
pub const ZIP_NAME: &str = "report.zip";

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

/// How the report files travel with the message, from the fullest to the smallest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Form {
    /// Each file attached as it is.
    Files,
    /// The files deflated into one `report.zip`.
    Zip,
    /// Nothing attached: the summary says where the report is.
    Summary,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Files => "files",
            Form::Zip => "zip",
            Form::Summary => "summary",
        }
    }

    fn smaller(self) -> Option<Form> {
        match self {
            Form::Files => Some(Form::Zip),
            Form::Zip => Some(Form::Summary),
            Form::Summary => None,
        }
    }
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
    #[error("cannot zip the report files for the review mail: {0}")]
    Zip(#[from] zip::ZipError),
    #[error("cannot build the review mail: {cause}")]
    Build { cause: String },
    #[error("cannot write `{}`: {cause}", path.display())]
    Outbox { path: PathBuf, cause: String },
    #[error("`mail.tls` = `{value}` is not one of `starttls`, `implicit`, `none`")]
    TlsMode { value: String },
    #[error(
        "cannot use `{}` as `mail.ca_file`: {cause}; give the relay's CA certificate in PEM form",
        path.display()
    )]
    CaFile { path: PathBuf, cause: String },
    #[error(
        "`mail.tls` = `none` would send the report unencrypted to `{relay}`, which is not \
         loopback; use `starttls` or `implicit`, or set `mail.insecure = true` if that is \
         really intended"
    )]
    PlaintextToRemote { relay: String },
    #[error(
        "refusing to send smtp credentials without tls to `{relay}`, which is not loopback; \
         set `mail.tls` to `starttls` or `implicit`"
    )]
    CredentialsInClear { relay: String },
    #[error(
        "`mail.username` is `{username}` but no smtp password is set; set \
         HUBREVIEW_SMTP_PASSWORD (or HUBREVIEW_SMTP_PASSWORD_FILE), or unset `mail.username` \
         for a relay that takes mail without authentication"
    )]
    NoPassword { username: String },
    #[error("no recipients for the review mail to `{relay}`; set `mail.to`")]
    NoRecipients { relay: String },
    #[error(
        "cannot connect to the smtp relay `{relay}` (tls `{tls}`): {cause}; check \
         `mail.smtp_host`, `mail.smtp_port` and `mail.tls`"
    )]
    Connect {
        relay: String,
        tls: &'static str,
        cause: String,
    },
    #[error(
        "tls with the smtp relay `{relay}` failed: {cause}; check `mail.tls` (`implicit` for \
         port 465, `starttls` for 587) and, for a relay with a private CA, `mail.ca_file`"
    )]
    Tls { relay: String, cause: String },
    #[error(
        "the smtp relay `{relay}` answered in plain text where `mail.tls` = `implicit` expects \
         a tls handshake; it most likely wants STARTTLS (usually port 587): set `mail.tls` to \
         `starttls`"
    )]
    PlainTextGreeting { relay: String },
    #[error(
        "the smtp relay `{relay}` does not offer STARTTLS, which `mail.tls` requires, so \
         nothing was sent (it offers {offered}); if it expects tls from the first byte \
         (usually port 465), set `mail.tls` to `implicit`"
    )]
    StarttlsUnavailable { relay: String, offered: String },
    #[error(
        "the smtp relay `{relay}` offers {}, and hubreview authenticates with PLAIN or LOGIN \
         only, so nothing was sent; enable AUTH PLAIN or LOGIN over tls on the relay, or unset \
         `mail.username` if it takes mail without authentication",
        if offered.is_empty() { "no authentication (no AUTH in its EHLO reply)".to_string() }
        else { format!("only AUTH {offered}") }
    )]
    NoAuthMechanism { relay: String, offered: String },
    #[error(
        "the smtp relay `{relay}` refused the credentials of `{username}`: {reply}; check \
         `mail.username` and HUBREVIEW_SMTP_PASSWORD"
    )]
    AuthRejected {
        relay: String,
        username: String,
        reply: String,
    },
    #[error("the smtp relay `{relay}` refused the {bytes}-byte review mail as too large: {reply}")]
    TooLarge {
        relay: String,
        bytes: u64,
        reply: String,
    },
    #[error(
        "the smtp relay `{relay}` did not answer within {secs} s while {step}; check that \
         `mail.tls` fits the port (`implicit` for 465, `starttls` for 587) or raise \
         `mail.timeout_secs`"
    )]
    Timeout {
        relay: String,
        step: &'static str,
        secs: u64,
    },
    #[error("cannot send the review mail through `{relay}`: {cause}")]
    Send {
        relay: String,
        /// The SMTP reply code, when the relay answered with a negative one.
        code: Option<u16>,
        cause: String,
    },
    #[error(
        "the review mail was not sent: the smtp connection test before the fetch failed: {cause}"
    )]
    RelayFailedEarlier { cause: String },
}

impl MailError {
    /// Whether the error is in the configuration or secrets rather than at the relay:
    /// such an error stops a run before anything is fetched.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            MailError::Address { .. }
                | MailError::TlsMode { .. }
                | MailError::CaFile { .. }
                | MailError::PlaintextToRemote { .. }
                | MailError::CredentialsInClear { .. }
                | MailError::NoPassword { .. }
                | MailError::NoRecipients { .. }
        )
    }
}

/// Every problem of the `[mail]` section, for the configuration check: addresses that
/// do not parse, an unknown TLS mode, plain text to a remote relay, an unreadable CA file.
pub fn config_problems(cfg: &MailConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let mut address = |field: &'static str, value: &str| {
        if let Err(e) = parse_mailbox(field, value) {
            problems.push(e.to_string());
        }
    };
    if let Some(from) = cfg.from.as_deref().filter(|f| !f.trim().is_empty()) {
        address("mail.from", from);
    }
    for to in &cfg.to {
        address("mail.to", to);
    }
    for cc in &cfg.cc {
        address("mail.cc", cc);
    }
    if let Some(reply_to) = cfg.reply_to.as_deref().filter(|r| !r.trim().is_empty()) {
        address("mail.reply_to", reply_to);
    }
    if let Err(e) = RelaySettings::from_config(cfg) {
        problems.push(e.to_string());
    }
    if let Some(path) = &cfg.ca_file
        && let Err(e) = smtp::read_ca_file(path)
    {
        problems.push(e.to_string());
    }
    if cfg.max_bytes < MIN_MAX_BYTES {
        problems.push(format!(
            "`mail.max_bytes` = {}: must be at least {MIN_MAX_BYTES}, room for the summary alone",
            cfg.max_bytes
        ));
    }
    if cfg.timeout_secs == 0 {
        problems.push("`mail.timeout_secs` must be at least 1".to_string());
    }
    problems
}

/// What the relay answered to the connection test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayCheck {
    /// `host:port`.
    pub relay: String,
    pub tls: &'static str,
    /// The relay's EHLO reply in one line.
    pub reply: String,
    /// The relay's `SIZE` limit, when it announces one.
    pub size_limit: Option<u64>,
    /// The AUTH mechanism used, when a username is configured.
    pub mechanism: Option<String>,
}

impl std::fmt::Display for RelayCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` over tls `{}` answered {}",
            self.relay, self.tls, self.reply
        )?;
        match &self.mechanism {
            Some(mechanism) => write!(f, "; authenticated with {mechanism}"),
            None => write!(f, "; no authentication configured"),
        }
    }
}

/// Whether a relay is configured, so that [`check_relay`] has something to test.
pub fn relay_configured(cfg: &MailConfig) -> bool {
    cfg.smtp_host
        .as_deref()
        .is_some_and(|h| !h.trim().is_empty())
}

/// Tests the relay the way a send would use it (connect, TLS, AUTH), then quits without
/// sending anything. Run before the long fetch, so a broken relay is known early.
#[tracing::instrument(skip_all, err(Display))]
pub async fn check_relay(cfg: &MailConfig, secrets: &Secrets) -> Result<RelayCheck, MailError> {
    let settings = RelaySettings::from_config(cfg)?.ok_or_else(|| MailError::Connect {
        relay: "(none)".to_string(),
        tls: "none",
        cause: "no relay configured".to_string(),
    })?;
    if cfg.to.is_empty() {
        return Err(MailError::NoRecipients {
            relay: settings.relay(),
        });
    }
    settings.warn_mismatch();
    let session = Session::open(&settings, secrets.smtp_password.as_deref()).await?;
    let check = RelayCheck {
        relay: settings.relay(),
        tls: settings.tls.as_str(),
        reply: session.capabilities.summary(),
        size_limit: session.capabilities.size,
        mechanism: session.mechanism.clone(),
    };
    session.quit().await;
    Ok(check)
}

/// How a report was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub delivery: Delivery,
    pub form: Form,
    /// Why the attachments were zipped or left off, when they were.
    pub note: Option<String>,
}

impl std::fmt::Display for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.delivery {
            Delivery::Sent { relay } => write!(f, "sent through {relay}")?,
            Delivery::Outbox { path } => write!(f, "written to `{}`", path.display())?,
        }
        match self.form {
            Form::Files => Ok(()),
            Form::Zip => write!(f, ", with the report files in {ZIP_NAME}"),
            Form::Summary => write!(f, ", as a summary without the report files"),
        }
    }
}

/// A report that did not reach the relay, and where its message was kept instead.
#[derive(Debug)]
pub struct Undelivered {
    pub error: MailError,
    /// The outbox file, or why it could not be written; `None` when no message was built.
    pub outbox: Option<Result<PathBuf, MailError>>,
}

impl Undelivered {
    /// `build` when no message could be made, `outbox` when writing it failed with no
    /// relay configured, `smtp` otherwise.
    pub fn method(&self) -> &'static str {
        match (&self.outbox, &self.error) {
            (None, _) => "build",
            (Some(_), MailError::Outbox { .. }) => "outbox",
            _ => "smtp",
        }
    }
}

impl std::fmt::Display for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", error_chain(&self.error))?;
        match &self.outbox {
            Some(Ok(path)) if !matches!(self.error, MailError::Outbox { .. }) => {
                write!(f, "; message saved to `{}`", path.display())
            }
            Some(Err(e)) if !matches!(self.error, MailError::Outbox { .. }) => {
                write!(f, "; saving to the outbox failed too: {}", error_chain(e))
            }
            _ => Ok(()),
        }
    }
}

/// Builds the run's message in the largest form that fits `mail.max_bytes` and delivers
/// it: through the relay when one is configured, else to the outbox. A relay that
/// refuses it as too large gets the next smaller form, once each. When the relay failed
/// the connection test (`relay_failed`), it is not tried again. Whatever goes wrong, the
/// last message built is written to the outbox.
#[tracing::instrument(skip_all, fields(run_id = input.run_id))]
pub async fn send_report(
    cfg: &MailConfig,
    secrets: &Secrets,
    input: &ReportInput,
    written: &Written,
    relay_failed: Option<&str>,
) -> Result<Delivered, Undelivered> {
    let unbuilt = |error| Undelivered {
        error,
        outbox: None,
    };
    let (mut form, mut note, mut message) =
        build_fitting(cfg, input, written, Form::Files, None).map_err(unbuilt)?;
    let keep = |error: MailError, message: &Message| {
        let outbox = write_outbox(&cfg.outbox, message, input.run_id);
        Undelivered {
            error,
            outbox: Some(outbox),
        }
    };

    let settings = match RelaySettings::from_config(cfg) {
        Ok(Some(settings)) => settings,
        Ok(None) => {
            tracing::debug!("no smtp host configured: writing the mail to the outbox");
            return match write_outbox(&cfg.outbox, &message, input.run_id) {
                Ok(path) => Ok(Delivered {
                    delivery: Delivery::Outbox { path },
                    form,
                    note,
                }),
                Err(error) => Err(Undelivered {
                    outbox: Some(Err(MailError::Outbox {
                        path: cfg.outbox.clone(),
                        cause: error.to_string(),
                    })),
                    error,
                }),
            };
        }
        Err(error) => return Err(keep(error, &message)),
    };
    if let Some(cause) = relay_failed {
        let error = MailError::RelayFailedEarlier {
            cause: cause.to_string(),
        };
        return Err(keep(error, &message));
    }
    if cfg.to.is_empty() || is_undisclosed(&message) {
        return Err(keep(
            MailError::NoRecipients {
                relay: settings.relay(),
            },
            &message,
        ));
    }
    settings.warn_mismatch();

    loop {
        let mut session = match Session::open(&settings, secrets.smtp_password.as_deref()).await {
            Ok(session) => session,
            Err(error) => return Err(keep(error, &message)),
        };
        let bytes = message.formatted().len() as u64;
        let reason = match session.capabilities.size.filter(|limit| bytes > *limit) {
            Some(limit) => {
                session.quit().await;
                format!(
                    "the relay announces a limit of {} (EHLO SIZE {limit})",
                    human_bytes(limit)
                )
            }
            None => match session.send(&message).await {
                Ok(()) => {
                    session.quit().await;
                    tracing::info!(relay = %settings.relay(), form = form.as_str(), "review mail sent");
                    return Ok(Delivered {
                        delivery: Delivery::Sent {
                            relay: settings.relay(),
                        },
                        form,
                        note,
                    });
                }
                Err(MailError::TooLarge { reply, .. }) => format!("it answered {reply}"),
                Err(error) => return Err(keep(error, &message)),
            },
        };

        let Some(smaller) = form.smaller() else {
            let error = MailError::TooLarge {
                relay: settings.relay(),
                bytes,
                reply: format!("even the summary alone is too large: {reason}"),
            };
            return Err(keep(error, &message));
        };
        tracing::warn!(
            relay = %settings.relay(),
            bytes,
            form = smaller.as_str(),
            "the review mail is too large for the relay ({reason}); trying it smaller"
        );
        let why = format!(
            "{}, the message of {} is too large for the relay: {reason}",
            with_form(form),
            human_bytes(bytes)
        );
        let note_text = size_note(smaller, &why, written);
        (form, note, message) = match build_fitting(cfg, input, written, smaller, Some(note_text)) {
            Ok(built) => built,
            Err(error) => return Err(keep(error, &message)),
        };
    }
}

/// Builds `form`, or the largest smaller form that fits `mail.max_bytes`, with the note
/// that says why the attachments are not all there as they are.
fn build_fitting(
    cfg: &MailConfig,
    input: &ReportInput,
    written: &Written,
    mut form: Form,
    mut note: Option<String>,
) -> Result<(Form, Option<String>, Message), MailError> {
    loop {
        let message = build_form(cfg, input, written, form, note.as_deref())?;
        let bytes = message.formatted().len() as u64;
        match form.smaller() {
            Some(smaller) if bytes > cfg.max_bytes => {
                tracing::info!(
                    bytes,
                    max_bytes = cfg.max_bytes,
                    form = smaller.as_str(),
                    "the review mail is over mail.max_bytes; making it smaller"
                );
                let why = format!(
                    "{}, this message would be {}, over the limit of {} (`mail.max_bytes`)",
                    with_form(form),
                    human_bytes(bytes),
                    human_bytes(cfg.max_bytes)
                );
                note = Some(size_note(smaller, &why, written));
                form = smaller;
            }
            _ => return Ok((form, note, message)),
        }
    }
}

fn with_form(form: Form) -> &'static str {
    match form {
        Form::Files => "with the report files attached",
        Form::Zip => "even with the report files zipped",
        Form::Summary => "with no attachment",
    }
}

/// The sentence the message carries about its smaller `form`.
fn size_note(form: Form, why: &str, written: &Written) -> String {
    match form {
        Form::Files => String::new(),
        Form::Zip => format!("The report files are compressed into {ZIP_NAME}: {why}."),
        Form::Summary => format!(
            "The report files are not attached: {why}. The full report is in {} on {}.",
            written.dir.display(),
            host_name()
        ),
    }
}

/// This machine's name, as the relay sees it in EHLO.
fn host_name() -> String {
    ClientId::default().to_string()
}

/// `10.0 MiB`, `512.0 KiB`, `900 bytes`.
fn human_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB {
        format!("{:.1} MiB", b / KIB / KIB)
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn is_undisclosed(message: &Message) -> bool {
    message.headers().get_raw("To") == Some(NO_RECIPIENTS)
}

/// Builds the review mail of one run with every report file attached as it is.
///
/// A complete run gets a `multipart/mixed` message: a `multipart/alternative` text and
/// HTML summary, then `report.html` and every CSV of `written` as attachments. An
/// incomplete run gets a short failure notice instead, with `summary.json` attached.
pub fn build_message(
    cfg: &MailConfig,
    input: &ReportInput,
    written: &Written,
) -> Result<Message, MailError> {
    build_form(cfg, input, written, Form::Files, None)
}

/// Builds the review mail with the attachments in `form`; `note` says why the form is
/// smaller than [`Form::Files`] and is shown in the summary.
pub fn build_form(
    cfg: &MailConfig,
    input: &ReportInput,
    written: &Written,
    form: Form,
    note: Option<&str>,
) -> Result<Message, MailError> {
    let from_text = cfg.from.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let from = parse_mailbox("mail.from", from_text.unwrap_or(DEFAULT_FROM))?;
    let to = parse_mailboxes("mail.to", &cfg.to)?;
    let cc = parse_mailboxes("mail.cc", &cfg.cc)?;
    let reply_to = match cfg.reply_to.as_deref().map(str::trim) {
        Some(value) if !value.is_empty() => Some(parse_mailbox("mail.reply_to", value)?),
        _ => None,
    };

    let files = attachments(input, written)?;
    let mut view = MailView::new(input, written, form, note);
    view.subject = one_line(&render("subject.txt", SUBJECT_TEMPLATE, &view)?);
    let (text, html) = if input.is_complete() {
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
    match form {
        Form::Files => {
            for (name, content) in read_attachments(&files)? {
                let kind = content_type(&name);
                body = body.singlepart(Attachment::new(name).body(content, kind));
            }
        }
        Form::Zip => {
            let archive = zip::archive(&read_attachments(&files)?, input.generated_at)?;
            body = body.singlepart(
                Attachment::new(ZIP_NAME.to_string()).body(archive, content_type(ZIP_NAME)),
            );
        }
        Form::Summary => {}
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
        // stands in for the outbox, and sending refuses such a message.
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
    } else {
        for mailbox in to {
            builder = builder.to(mailbox);
        }
        for mailbox in cc {
            builder = builder.cc(mailbox);
        }
    }
    if let Some(reply_to) = reply_to {
        builder = builder.reply_to(reply_to);
    }

    builder.multipart(body).map_err(|e| MailError::Build {
        cause: error_chain(&e),
    })
}

/// Sends a ready `message` through the configured relay, or writes it to the outbox
/// when no relay is configured. [`send_report`] adds the size fallbacks around it.
#[tracing::instrument(skip_all, fields(run_id = run_id))]
pub async fn deliver(
    cfg: &MailConfig,
    secrets: &Secrets,
    message: &Message,
    run_id: i64,
) -> Result<Delivery, MailError> {
    let Some(settings) = RelaySettings::from_config(cfg)? else {
        tracing::debug!("no smtp host configured: writing the mail to the outbox");
        let path = write_outbox(&cfg.outbox, message, run_id)?;
        return Ok(Delivery::Outbox { path });
    };
    let relay = settings.relay();
    if cfg.to.is_empty() || is_undisclosed(message) {
        return Err(MailError::NoRecipients { relay });
    }
    settings.warn_mismatch();

    tracing::debug!(relay = %relay, tls = settings.tls.as_str(), "sending the review mail");
    let mut session = Session::open(&settings, secrets.smtp_password.as_deref()).await?;
    session.send(message).await?;
    session.quit().await;
    Ok(Delivery::Sent { relay })
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

fn parse_mailboxes(field: &'static str, values: &[String]) -> Result<Vec<Mailbox>, MailError> {
    values
        .iter()
        .map(|value| parse_mailbox(field, value))
        .collect()
}

/// The files of the report the mail carries, as (ASCII-safe name, path).
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
        // The run's counts, and the hashes that let a reader of the message check the
        // attachments against the evidence kept on disk and in the store.
        names.extend(["summary.json", "manifest.json"]);
        names
    } else {
        vec!["summary.json"]
    };
    wanted
        .into_iter()
        .map(|name| match written.file(name) {
            Some(file) => Ok((ascii_file_name(&file.name), file.path.clone())),
            None => Err(MailError::Attachment {
                path: written.dir.join(name),
                cause: "the report did not write it".to_string(),
            }),
        })
        .collect()
}

fn read_attachments(files: &[(String, PathBuf)]) -> Result<Vec<(String, Vec<u8>)>, MailError> {
    files
        .iter()
        .map(|(name, path)| {
            std::fs::read(path)
                .map(|content| (name.clone(), content))
                .map_err(|e| MailError::Attachment {
                    path: path.clone(),
                    cause: error_chain(&e),
                })
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
    } else if name.ends_with(".zip") {
        "application/zip"
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

/// Breaks `text` into lines of at most `width` characters at spaces (a longer word stays
/// whole), so that no generated line comes near SMTP's 998-octet limit.
fn wrap(text: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join("\n")
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
    /// `files`, `zip` or `summary`: see [`Form`].
    form: &'static str,
    /// The report files the message carries, attached or in the zip.
    attachments: Vec<String>,
    /// Why the attachments are zipped or left off.
    size_note: Option<String>,
    report_dir: String,
    /// The machine that ran the review, where the report directory is.
    host: String,
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
    /// The count, and what it was counted from when not from the members.
    in_use: String,
    reclaimable_total: u64,
    monthly_saving: Option<String>,
    yearly_saving: Option<String>,
}

impl MailView {
    fn new(input: &ReportInput, written: &Written, form: Form, note: Option<&str>) -> Self {
        let reason = input.failure_reason().unwrap_or_default();
        let organization = one_line(&input.organization);

        let leavers_label = match (
            input.count(Kind::TerminatedActive),
            input.partial_reason(Kind::TerminatedActive),
        ) {
            (Some(n), Some(_)) => format!(
                "{} (leavers checked in part)",
                plural(n, "leaver with access", "leavers with access")
            ),
            (Some(n), None) => plural(n, "leaver with access", "leavers with access"),
            (None, _) => "leavers not evaluated".to_string(),
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
                count_label: input.count_text(kind),
                note: input
                    .not_evaluated_reason(kind)
                    .or_else(|| {
                        input
                            .partial_reason(kind)
                            .map(|why| format!("checked only in part: {why}"))
                    })
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
                in_use: match &seats.in_use_note {
                    Some(note) => format!("{} ({note})", seats.in_use),
                    None => seats.in_use.to_string(),
                },
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

        let attachments = match form {
            Form::Summary => Vec::new(),
            Form::Files | Form::Zip => attachments(input, written)
                .map(|list| list.into_iter().map(|(name, _)| name).collect())
                .unwrap_or_default(),
        };

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
            form: form.as_str(),
            attachments,
            size_note: note.map(|note| wrap(note, 76)),
            report_dir: written.dir.display().to_string(),
            host: host_name(),
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
        expected.extend(["summary.json".to_string(), "manifest.json".to_string()]);
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
        let view = MailView::new(&input, &written, Form::Files, None);

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
        let mut view = MailView::new(&input, &written, Form::Files, None);
        view.report_dir = "reports/run-42".to_string();
        view.host = "review-host".to_string();

        insta::assert_snapshot!(render("email.txt", EMAIL_TEXT_TEMPLATE, &view).unwrap());
    }

    #[test]
    fn an_overridden_drop_guard_is_named_in_the_summary() {
        let mut input = complete_input();
        input.accepted_drops = vec!["scim".to_string()];
        let dir = tempfile::tempdir().unwrap();
        let written = report::write(dir.path(), &input, 500).unwrap();
        let view = MailView::new(&input, &written, Form::Files, None);

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
            &MailView::new(&input, &written, Form::Files, None),
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
                "the smtp relay `127.0.0.1:{port}` refused the credentials of `hubreview`: "
            )),
            "{text}"
        );
        assert!(
            text.contains("535") && text.contains("credentials rejected"),
            "{text}"
        );
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!format!("{error:?}").contains(PASSWORD));
        assert!(matches!(error, MailError::AuthRejected { .. }), "{error:?}");
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

        assert!(
            matches!(error, MailError::StarttlsUnavailable { .. }),
            "{error}"
        );
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
    fn cc_and_reply_to_come_from_the_config() {
        let mut cfg = config(&["reviewers@acme.example"]);
        cfg.cc = vec!["Auditors <auditors@acme.example>".to_string()];
        cfg.reply_to = Some("access-reviews@acme.example".to_string());

        let (_dir, message) = build(&cfg, &complete_input());

        let parsed = Parsed::new(&formatted(&message));
        assert_eq!(
            parsed.header("cc").unwrap(),
            "Auditors <auditors@acme.example>"
        );
        assert_eq!(
            parsed.header("reply-to").unwrap(),
            "access-reviews@acme.example"
        );
        let envelope: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            envelope,
            ["reviewers@acme.example", "auditors@acme.example"]
        );
    }

    #[test]
    fn a_message_over_max_bytes_gets_its_files_zipped_then_left_off() {
        let dir = tempfile::tempdir().unwrap();
        let input = complete_input();
        let written = report::write(&dir.path().join("run"), &input, 500).unwrap();
        let mut cfg = config(&["reviewers@acme.example"]);
        let full = build_message(&cfg, &input, &written)
            .unwrap()
            .formatted()
            .len() as u64;
        let zipped = build_form(&cfg, &input, &written, Form::Zip, Some("note"))
            .unwrap()
            .formatted()
            .len() as u64;
        assert!(zipped < full, "{zipped} < {full}");

        let table = [
            (full, Form::Files),
            (full - 1, Form::Zip),
            (zipped + 2000, Form::Zip),
            (zipped / 2, Form::Summary),
        ];
        for (max_bytes, expected) in table {
            cfg.max_bytes = max_bytes;

            let (form, note, message) =
                build_fitting(&cfg, &input, &written, Form::Files, None).unwrap();

            assert_eq!(form, expected, "max_bytes {max_bytes}");
            let raw = formatted(&message);
            let parsed = Parsed::new(&raw);
            let names = attachment_names(&parsed);
            match form {
                Form::Files => {
                    assert_eq!(note, None);
                    assert_eq!(names[0], "report.html");
                }
                Form::Zip => {
                    assert_eq!(names, ["report.zip"]);
                    let note = note.unwrap();
                    assert!(note.contains("over the limit of"), "{note}");
                    assert!(note.contains("(`mail.max_bytes`)"), "{note}");
                }
                Form::Summary => {
                    assert!(names.is_empty(), "{names:?}");
                    let note = note.unwrap();
                    assert!(note.contains("even with the report files zipped"), "{note}");
                    assert!(
                        note.contains(&format!("The full report is in {}", written.dir.display())),
                        "{note}"
                    );
                    let text = &parsed.parts()[0].parts()[0];
                    assert!(text.body.contains("The report files are not attached"));
                }
            }
        }
    }

    #[test]
    fn every_mail_problem_in_the_config_is_named_at_once() {
        let cfg = MailConfig {
            smtp_host: Some("mail.acme.example".to_string()),
            tls: Some("none".to_string()),
            from: Some("not an address".to_string()),
            cc: vec!["also not".to_string()],
            reply_to: Some("nor this".to_string()),
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            max_bytes: 100,
            ..MailConfig::default()
        };

        let problems = config_problems(&cfg);

        let text = problems.join("\n");
        for expected in [
            "`mail.from` = `not an address`",
            "`mail.cc` = `also not`",
            "`mail.reply_to` = `nor this`",
            "`mail.tls` = `none` would send the report unencrypted",
            "/nonexistent/ca.pem",
            "`mail.max_bytes` = 100",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        assert_eq!(problems.len(), 6, "{text}");
        assert!(config_problems(&MailConfig::default()).is_empty());
    }

    #[test]
    fn an_undelivered_report_names_the_error_and_where_the_message_was_kept() {
        let undelivered = Undelivered {
            error: MailError::Send {
                relay: "mail.acme.example:587".to_string(),
                code: Some(451),
                cause: "try later".to_string(),
            },
            outbox: Some(Ok(PathBuf::from("outbox/run-7.eml"))),
        };

        assert_eq!(undelivered.method(), "smtp");
        assert_eq!(
            undelivered.to_string(),
            "cannot send the review mail through `mail.acme.example:587`: try later; message \
             saved to `outbox/run-7.eml`"
        );
        let unbuilt = Undelivered {
            error: MailError::Build {
                cause: "x".to_string(),
            },
            outbox: None,
        };
        assert_eq!(unbuilt.method(), "build");
    }

    #[test]
    fn notes_are_wrapped_at_spaces_and_keep_long_words_whole() {
        let long = "x".repeat(90);
        let text = format!("one two three {long} four");

        assert_eq!(wrap(&text, 10), format!("one two\nthree\n{long}\nfour"));
        assert_eq!(wrap("", 10), "");
    }

    #[test]
    fn sizes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(900), "900 bytes");
        assert_eq!(human_bytes(40_000), "39.1 KiB");
        assert_eq!(human_bytes(DEFAULT_MAX_BYTES), "10.0 MiB");
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
