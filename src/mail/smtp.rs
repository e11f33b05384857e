//! One SMTP session with the configured relay: connect with the TLS mode that `mail.tls`
//! names (STARTTLS is required when asked for, never skipped), read what the relay
//! offers, authenticate when a username is set (never falling back to sending without),
//! then send. Every step has the `mail.timeout_secs` deadline; sending the message gets a
//! second more per 64 KiB.
//!
//! lettre's pooled transport hides the relay's EHLO reply; this module drives lettre's
//! connection itself so that an error can say what the relay offered, and so that a
//! relay's `SIZE` is known before a large message is uploaded.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, TlsParameters, TlsParametersBuilder,
};
use lettre::transport::smtp::commands::Ehlo;
use lettre::transport::smtp::extension::ClientId;

use super::MailError;
use crate::config::MailConfig;
use crate::report::error_chain;

/// The slowest upload a send allows for, on top of `mail.timeout_secs`.
const UPLOAD_BYTES_PER_SEC: u64 = 64 * 1024;

/// The mechanisms hubreview authenticates with, in order of preference.
const MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    Starttls,
    Implicit,
    None,
}

impl TlsMode {
    pub(crate) fn parse(value: &str) -> Option<TlsMode> {
        match value {
            "starttls" => Some(TlsMode::Starttls),
            "implicit" => Some(TlsMode::Implicit),
            "none" => Some(TlsMode::None),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TlsMode::Starttls => "starttls",
            TlsMode::Implicit => "implicit",
            TlsMode::None => "none",
        }
    }

    /// The mode a well-known submission port is used with.
    fn usual_for(port: u16) -> Option<TlsMode> {
        match port {
            465 => Some(TlsMode::Implicit),
            587 => Some(TlsMode::Starttls),
            _ => None,
        }
    }
}

/// The relay's address, TLS mode and credentials after defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelaySettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub timeout: Duration,
}

impl RelaySettings {
    /// Reads the relay from `cfg`, or `None` when no `mail.smtp_host` is set. Without
    /// `mail.tls`, port 465 means implicit TLS and any other port STARTTLS; without a
    /// port, implicit TLS means 465 and the others 587.
    pub(crate) fn from_config(cfg: &MailConfig) -> Result<Option<RelaySettings>, MailError> {
        let Some(host) = cfg
            .smtp_host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
        else {
            return Ok(None);
        };
        let tls = match cfg.tls.as_deref().map(str::trim) {
            None | Some("") => match cfg.smtp_port {
                Some(465) => TlsMode::Implicit,
                _ => TlsMode::Starttls,
            },
            Some(value) => TlsMode::parse(value).ok_or_else(|| MailError::TlsMode {
                value: value.to_string(),
            })?,
        };
        let port = cfg.smtp_port.unwrap_or(match tls {
            TlsMode::Implicit => 465,
            _ => 587,
        });
        let settings = RelaySettings {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            tls,
            ca_file: cfg.ca_file.clone(),
            username: cfg
                .username
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string),
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
        };
        if tls == TlsMode::None && !settings.is_loopback() {
            if settings.username.is_some() {
                return Err(MailError::CredentialsInClear {
                    relay: settings.relay(),
                });
            }
            if !cfg.insecure {
                return Err(MailError::PlaintextToRemote {
                    relay: settings.relay(),
                });
            }
        }
        Ok(Some(settings))
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub(crate) fn relay(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub(crate) fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// A warning when the TLS mode is not the one the port is known for.
    pub(crate) fn mismatch(&self) -> Option<String> {
        let usual = TlsMode::usual_for(self.port)?;
        (usual != self.tls).then(|| {
            format!(
                "`mail.tls` is `{}` but port {} is for `{}`; the connection will likely fail or \
                 hang until `mail.timeout_secs`",
                self.tls.as_str(),
                self.port,
                usual.as_str()
            )
        })
    }

    /// Logs [`RelaySettings::mismatch`] once per process.
    pub(crate) fn warn_mismatch(&self) {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if let Some(warning) = self.mismatch()
            && !WARNED.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(relay = %self.relay(), "{warning}");
        }
    }

    fn tls_parameters(&self) -> Result<TlsParameters, MailError> {
        let mut builder = TlsParametersBuilder::new(self.host.clone());
        if let Some(path) = &self.ca_file {
            builder = builder.add_root_certificate(read_ca_file(path)?);
        }
        builder.build().map_err(|e| MailError::Tls {
            relay: self.relay(),
            cause: error_chain(&e),
        })
    }
}

/// Reads `mail.ca_file`, refusing a file that holds no PEM certificate.
pub(crate) fn read_ca_file(path: &std::path::Path) -> Result<Certificate, MailError> {
    let fail = |cause: String| MailError::CaFile {
        path: path.to_path_buf(),
        cause,
    };
    let pem = std::fs::read(path).map_err(|e| fail(error_chain(&e)))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(fail(
            "it holds no PEM certificate (a `-----BEGIN CERTIFICATE-----` block)".to_string(),
        ));
    }
    Certificate::from_pem(&pem).map_err(|e| fail(error_chain(&e)))
}

/// What a relay said in reply to EHLO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// The name the relay gave, the first word of its reply.
    pub name: String,
    /// The extension lines, as sent (`SIZE 10240000`, `AUTH PLAIN LOGIN`, ...).
    pub extensions: Vec<String>,
    /// The `SIZE` limit in bytes, when announced with a value other than 0.
    pub size: Option<u64>,
    /// The `AUTH` mechanisms offered.
    pub auth: Vec<String>,
}

impl Capabilities {
    pub(crate) fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Capabilities {
        let mut lines = lines.into_iter();
        let name = lines
            .next()
            .and_then(|line| line.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        let mut capabilities = Capabilities {
            name,
            ..Capabilities::default()
        };
        for line in lines.map(str::trim).filter(|l| !l.is_empty()) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
            match keyword.as_str() {
                "SIZE" => {
                    capabilities.size = words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|n| *n > 0);
                }
                "AUTH" => capabilities
                    .auth
                    .extend(words.map(|w| w.to_ascii_uppercase())),
                "HELP" => continue,
                _ => {}
            }
            capabilities.extensions.push(line.to_string());
        }
        capabilities
    }

    /// The reply in one line, for logs and errors.
    pub(crate) fn summary(&self) -> String {
        if self.extensions.is_empty() {
            format!("{}, no extensions", self.name)
        } else {
            format!("{}: {}", self.name, self.extensions.join(", "))
        }
    }

    fn offers_starttls(&self) -> bool {
        self.extensions
            .iter()
            .any(|e| e.eq_ignore_ascii_case("STARTTLS"))
    }
}

/// An open, authenticated (when configured) session with the relay.
pub(crate) struct Session {
    connection: AsyncSmtpConnection,
    relay: String,
    timeout: Duration,
    redactor: Redactor,
    /// What the relay offers after TLS.
    pub capabilities: Capabilities,
    /// The mechanism the session authenticated with.
    pub mechanism: Option<String>,
}

impl Session {
    /// Connects, secures and authenticates. The password is required when a username is
    /// set: a session never goes on unauthenticated in that case.
    #[tracing::instrument(skip_all, fields(relay = %settings.relay(), tls = settings.tls.as_str()))]
    pub(crate) async fn open(
        settings: &RelaySettings,
        password: Option<&str>,
    ) -> Result<Session, MailError> {
        let relay = settings.relay();
        let credentials = match &settings.username {
            Some(username) => {
                let password =
                    password
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| MailError::NoPassword {
                            username: username.clone(),
                        })?;
                Some((username.clone(), password.to_string()))
            }
            None => None,
        };
        let redactor = Redactor::new(credentials.as_ref());
        let timeout = settings.timeout;
        let client = ClientId::default();

        let implicit = match settings.tls {
            TlsMode::Implicit => Some(settings.tls_parameters()?),
            _ => None,
        };
        let connected = deadline(
            &relay,
            "connecting",
            timeout,
            AsyncSmtpConnection::connect_tokio1(
                (settings.host.as_str(), settings.port),
                Some(timeout),
                &client,
                implicit,
                None,
            ),
        )
        .await?;
        let mut connection = connected.map_err(|e| connect_error(&relay, settings.tls, &e))?;
        let mut capabilities = ehlo(&mut connection, &client, &relay, timeout, &redactor).await?;
        tracing::debug!(reply = %capabilities.summary(), "the relay answered EHLO");

        if settings.tls == TlsMode::Starttls {
            if !capabilities.offers_starttls() {
                let _ = connection.quit().await;
                return Err(MailError::StarttlsUnavailable {
                    relay,
                    offered: capabilities.summary(),
                });
            }
            let parameters = settings.tls_parameters()?;
            deadline(
                &relay,
                "starting tls",
                timeout,
                connection.starttls(parameters, &client),
            )
            .await?
            .map_err(|e| MailError::Tls {
                relay: relay.clone(),
                cause: redactor.apply(&error_chain(&e)),
            })?;
            capabilities = ehlo(&mut connection, &client, &relay, timeout, &redactor).await?;
            tracing::debug!(reply = %capabilities.summary(), "the relay answered EHLO over tls");
        }

        let mut mechanism = None;
        if let Some((username, password)) = credentials {
            let Some(chosen) = connection.server_info().get_auth_mechanism(&MECHANISMS) else {
                let _ = connection.quit().await;
                return Err(MailError::NoAuthMechanism {
                    relay,
                    offered: capabilities.auth.join(" "),
                });
            };
            let credentials = Credentials::new(username.clone(), password);
            deadline(
                &relay,
                "authenticating",
                timeout,
                connection.auth(&MECHANISMS, &credentials),
            )
            .await?
            .map_err(|e| MailError::AuthRejected {
                relay: relay.clone(),
                username,
                reply: redactor.apply(&error_chain(&e)),
            })?;
            tracing::debug!(mechanism = %chosen, "authenticated");
            mechanism = Some(chosen.to_string());
        }

        Ok(Session {
            connection,
            relay,
            timeout,
            redactor,
            capabilities,
            mechanism,
        })
    }

    /// Sends one message. A failed send leaves the session closed.
    #[tracing::instrument(skip_all, fields(relay = %self.relay))]
    pub(crate) async fn send(&mut self, message: &Message) -> Result<(), MailError> {
        let bytes = message.formatted();
        // A large message needs longer on a slow link: one more second per 64 KiB.
        let upload = Duration::from_secs(bytes.len() as u64 / UPLOAD_BYTES_PER_SEC);
        let sent = deadline(
            &self.relay,
            "sending the message",
            self.timeout + upload,
            self.connection.send(message.envelope(), &bytes),
        )
        .await?;
        match sent {
            Ok(reply) => {
                tracing::debug!(bytes = bytes.len(), reply = ?reply.first_line(), "accepted");
                Ok(())
            }
            Err(error) => {
                let code = error
                    .status()
                    .and_then(|c| c.to_string().parse::<u16>().ok());
                let cause = self.redactor.apply(&error_chain(&error));
                if code == Some(552) || cause.contains("5.3.4") {
                    Err(MailError::TooLarge {
                        relay: self.relay.clone(),
                        bytes: bytes.len() as u64,
                        reply: cause,
                    })
                } else {
                    Err(MailError::Send {
                        relay: self.relay.clone(),
                        code,
                        cause,
                    })
                }
            }
        }
    }

    /// Ends the session politely; a relay that does not answer QUIT changes nothing.
    pub(crate) async fn quit(mut self) {
        let _ = tokio::time::timeout(self.timeout, self.connection.quit()).await;
    }
}

/// Sends EHLO once more to read the whole reply, which lettre keeps only in part.
async fn ehlo(
    connection: &mut AsyncSmtpConnection,
    client: &ClientId,
    relay: &str,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<Capabilities, MailError> {
    let reply = deadline(
        relay,
        "reading the EHLO reply",
        timeout,
        connection.command(Ehlo::new(client.clone())),
    )
    .await?
    .map_err(|e| MailError::Send {
        relay: relay.to_string(),
        code: e.status().and_then(|c| c.to_string().parse().ok()),
        cause: redactor.apply(&error_chain(&e)),
    })?;
    Ok(Capabilities::parse(reply.message()))
}

fn connect_error(relay: &str, tls: TlsMode, error: &lettre::transport::smtp::Error) -> MailError {
    let cause = error_chain(error);
    // A relay that greets in plain text where a TLS handshake was expected.
    if tls == TlsMode::Implicit && cause.contains("InvalidContentType") {
        return MailError::PlainTextGreeting {
            relay: relay.to_string(),
        };
    }
    if error.is_tls() {
        MailError::Tls {
            relay: relay.to_string(),
            cause,
        }
    } else {
        MailError::Connect {
            relay: relay.to_string(),
            tls: tls.as_str(),
            cause,
        }
    }
}

/// Runs `step` with a deadline, naming the step when it passes.
async fn deadline<T>(
    relay: &str,
    step: &'static str,
    timeout: Duration,
    future: impl std::future::Future<Output = T>,
) -> Result<T, MailError> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| MailError::Timeout {
            relay: relay.to_string(),
            step,
            secs: timeout.as_secs(),
        })
}

/// Removes the password, and the base64 forms AUTH PLAIN and LOGIN send it in, from
/// text that came back from the relay.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub(crate) fn new(credentials: Option<&(String, String)>) -> Redactor {
        let Some((username, password)) = credentials else {
            return Redactor::default();
        };
        let plain = format!("\0{username}\0{password}");
        let mut secrets = vec![
            password.clone(),
            base64(password.as_bytes()),
            base64(plain.as_bytes()),
        ];
        secrets.retain(|s| !s.is_empty());
        // Longest first, so that no shorter secret leaves part of a longer one.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub(crate) fn apply(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |text, secret| {
            text.replace(secret.as_str(), "[redacted]")
        })
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(port: Option<u16>, tls: Option<&str>) -> Result<RelaySettings, MailError> {
        let cfg = MailConfig {
            smtp_host: Some("mail.acme.example".to_string()),
            smtp_port: port,
            tls: tls.map(str::to_string),
            ..MailConfig::default()
        };
        RelaySettings::from_config(&cfg).map(Option::unwrap)
    }

    #[test]
    fn relay_port_and_tls_default_from_each_other() {
        let table = [
            (None, None, 587, TlsMode::Starttls),
            (Some(465), None, 465, TlsMode::Implicit),
            (Some(25), None, 25, TlsMode::Starttls),
            (None, Some("implicit"), 465, TlsMode::Implicit),
            (None, Some("starttls"), 587, TlsMode::Starttls),
            (Some(2525), Some("implicit"), 2525, TlsMode::Implicit),
        ];
        for (port, tls, expected_port, expected_tls) in table {
            let settings = settings(port, tls).unwrap();
            assert_eq!(
                (settings.port, settings.tls),
                (expected_port, expected_tls),
                "{port:?} {tls:?}"
            );
        }
    }

    #[test]
    fn a_tls_mode_that_does_not_fit_the_port_is_warned_about() {
        let table = [
            (
                Some(465),
                Some("starttls"),
                Some("port 465 is for `implicit`"),
            ),
            (
                Some(587),
                Some("implicit"),
                Some("port 587 is for `starttls`"),
            ),
            (Some(465), None, None),
            (Some(587), None, None),
            (Some(2525), Some("implicit"), None),
        ];
        for (port, tls, expected) in table {
            let warning = settings(port, tls).unwrap().mismatch();
            match expected {
                Some(text) => assert!(
                    warning.as_deref().is_some_and(|w| w.contains(text)),
                    "{port:?} {tls:?}: {warning:?}"
                ),
                None => assert_eq!(warning, None, "{port:?} {tls:?}"),
            }
        }
    }

    #[test]
    fn plain_text_to_a_remote_relay_needs_the_insecure_setting() {
        let error = settings(Some(25), Some("none")).unwrap_err();
        assert!(
            matches!(error, MailError::PlaintextToRemote { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("mail.insecure"), "{error}");

        let cfg = MailConfig {
            smtp_host: Some("mail.acme.example".to_string()),
            smtp_port: Some(25),
            tls: Some("none".to_string()),
            insecure: true,
            ..MailConfig::default()
        };
        assert_eq!(
            RelaySettings::from_config(&cfg).unwrap().unwrap().tls,
            TlsMode::None
        );

        let cfg = MailConfig {
            smtp_host: Some("127.0.0.1".to_string()),
            ..cfg
        };
        assert!(RelaySettings::from_config(&cfg).unwrap().is_some());
    }

    #[test]
    fn credentials_are_never_sent_in_clear_to_a_remote_relay_even_when_insecure() {
        let cfg = MailConfig {
            smtp_host: Some("mail.acme.example".to_string()),
            tls: Some("none".to_string()),
            insecure: true,
            username: Some("hubreview".to_string()),
            ..MailConfig::default()
        };

        let error = RelaySettings::from_config(&cfg).unwrap_err();

        assert!(
            matches!(error, MailError::CredentialsInClear { .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("`mail.acme.example:587`"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_tls_mode_is_an_error() {
        let error = settings(None, Some("ssl")).unwrap_err();

        assert_eq!(
            error.to_string(),
            "`mail.tls` = `ssl` is not one of `starttls`, `implicit`, `none`"
        );
    }

    #[test]
    fn loopback_hosts_are_recognised_with_or_without_brackets() {
        for (host, loopback) in [
            ("localhost", true),
            ("127.0.0.1", true),
            ("127.8.9.10", true),
            ("[::1]", true),
            ("::1", true),
            ("10.0.0.1", false),
            ("mail.acme.example", false),
        ] {
            let cfg = MailConfig {
                smtp_host: Some(host.to_string()),
                insecure: true,
                tls: Some("none".to_string()),
                ..MailConfig::default()
            };
            let settings = RelaySettings::from_config(&cfg).unwrap().unwrap();
            assert_eq!(settings.is_loopback(), loopback, "{host}");
        }
    }

    #[test]
    fn the_ehlo_reply_gives_size_auth_and_starttls() {
        let reply = [
            "relay.test Hello client",
            "SIZE 1048576",
            "8BITMIME",
            "STARTTLS",
            "AUTH CRAM-MD5 plain",
            "HELP",
        ];

        let capabilities = Capabilities::parse(reply);

        assert_eq!(capabilities.name, "relay.test");
        assert_eq!(capabilities.size, Some(1_048_576));
        assert_eq!(capabilities.auth, ["CRAM-MD5", "PLAIN"]);
        assert!(capabilities.offers_starttls());
        assert_eq!(
            capabilities.summary(),
            "relay.test: SIZE 1048576, 8BITMIME, STARTTLS, AUTH CRAM-MD5 plain"
        );
        assert_eq!(Capabilities::parse(["relay.test", "SIZE 0"]).size, None);
        assert_eq!(Capabilities::parse(["relay.test", "SIZE"]).size, None);
    }

    #[test]
    fn the_password_is_redacted_in_every_form_auth_sends_it_in() {
        let credentials = ("hubreview".to_string(), "s3cr3t-Pa55word".to_string());
        let redactor = Redactor::new(Some(&credentials));
        let plain = base64(b"\0hubreview\0s3cr3t-Pa55word");
        let login = base64(b"s3cr3t-Pa55word");

        let text = redactor.apply(&format!(
            "535 no: s3cr3t-Pa55word, {plain}, {login}, user hubreview"
        ));

        assert_eq!(
            text,
            "535 no: [redacted], [redacted], [redacted], user hubreview"
        );
    }

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();

        let error = read_ca_file(&path).unwrap_err().to_string();

        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("no PEM certificate"), "{error}");
        let missing = read_ca_file(&dir.path().join("missing.pem")).unwrap_err();
        assert!(missing.to_string().contains("missing.pem"), "{missing}");
    }
}
