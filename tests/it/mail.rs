//! Delivery against a real SMTP relay: aiosmtpd (installed by `scripts/test`), started by
//! each test on 127.0.0.1 in plain, STARTTLS or implicit TLS mode, with a certificate
//! from a throwaway CA the test makes. Every message the relay accepts is parsed back as
//! a mail client would, and every failure must leave the report on disk, the message in
//! the outbox and the failure in the store.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hubreview::demo::{self, ScimServer, ServerOptions};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::Value;

use crate::common::*;

const USER: &str = "hubreview";
const PASSWORD: &str = "relay-Pa55word-never-real";
const ORGANIZATION: &str = "Prüfung für Müller GmbH";

/// The python that has aiosmtpd, from the environment `scripts/test` sets.
fn python() -> String {
    std::env::var("AIOSMTPD_PYTHON").unwrap_or_else(|_| {
        panic!(
            "AIOSMTPD_PYTHON is not set: the SMTP tests need aiosmtpd; run them through \
             `scripts/test`, which installs it into a venv and sets the variable"
        )
    })
}

/// A CA made for one test, and a certificate for 127.0.0.1 and localhost signed by it.
struct Certificates {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn certificates() -> Certificates {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hubreview test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "relay.test");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Certificates {
        ca: write("ca.pem", ca.pem()),
        cert: write("relay.pem", cert.pem()),
        key: write("relay.key", key.serialize_pem()),
        _dir: dir,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tls {
    Plain,
    Starttls,
    Implicit,
}

/// How the test relay behaves.
#[derive(Clone, Copy)]
struct RelayOptions {
    tls: Tls,
    /// Require AUTH as `USER` / `PASSWORD`.
    auth: bool,
    /// Offer AUTH CRAM-MD5 alone.
    no_usable_auth: bool,
    /// The relay's SIZE limit.
    size: Option<u64>,
    /// Enforce the SIZE limit without announcing it.
    hide_size: bool,
}

impl RelayOptions {
    fn new(tls: Tls) -> Self {
        RelayOptions {
            tls,
            auth: false,
            no_usable_auth: false,
            size: None,
            hide_size: false,
        }
    }
}

/// aiosmtpd on 127.0.0.1, stopped when dropped.
struct Relay {
    child: Child,
    port: u16,
    spool: tempfile::TempDir,
    certificates: Certificates,
    options: RelayOptions,
}

impl Relay {
    fn start(options: RelayOptions) -> Relay {
        let certificates = certificates();
        let spool = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/smtp_relay.py");
        let mut command = Command::new(python());
        command
            .arg(script)
            .arg("--spool")
            .arg(spool.path())
            .arg("--tls")
            .arg(match options.tls {
                Tls::Plain => "plain",
                Tls::Starttls => "starttls",
                Tls::Implicit => "implicit",
            })
            .arg("--cert")
            .arg(&certificates.cert)
            .arg("--key")
            .arg(&certificates.key);
        if options.auth {
            command.args(["--user", USER, "--password", PASSWORD]);
        }
        if options.no_usable_auth {
            command.arg("--no-usable-auth");
        }
        if let Some(size) = options.size {
            command.args(["--size", &size.to_string()]);
        }
        if options.hide_size {
            command.arg("--hide-size");
        }
        let log = std::fs::File::create(spool.path().join("relay.log")).unwrap();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python()));

        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(port) = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
        else {
            let _ = child.kill();
            let log = std::fs::read_to_string(spool.path().join("relay.log")).unwrap_or_default();
            panic!("the test relay did not start: {line:?}\n{log}");
        };
        Relay {
            child,
            port,
            spool,
            certificates,
            options,
        }
    }

    /// The `[mail]` keys that point hubreview at this relay.
    fn mail_config(&self, tls: &str) -> String {
        let mut text = format!(
            "smtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"{tls}\"\nca_file = \"{}\"\n\
             timeout_secs = 10\ncc = \"auditors@testorg.example\"\n\
             reply_to = \"Access Reviews <access-reviews@testorg.example>\"\n",
            self.port,
            self.certificates.ca.display()
        );
        if self.options.auth || self.options.no_usable_auth {
            text.push_str(&format!("username = \"{USER}\"\n"));
        }
        text
    }

    /// The messages received, raw, with their envelopes.
    fn received(&self) -> Vec<(Vec<u8>, Value)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.spool.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|path| {
                let envelope = read_json(&path.with_extension("json"));
                (std::fs::read(&path).unwrap(), envelope)
            })
            .collect()
    }

    /// Every MAIL FROM the relay saw, with whether the session had authenticated.
    fn mail_from_log(&self) -> String {
        std::fs::read_to_string(self.spool.path().join("mail_from.log")).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The organization: `accounts` SCIM users; the first `known` are in the Okta export,
/// the first five of them as leavers; the rest are shadow accounts.
async fn organization(
    tmp: &Path,
    accounts: usize,
    known: usize,
    mail: &str,
) -> (ScimServer, PathBuf) {
    let server = demo::start(
        users(accounts),
        ServerOptions {
            token: TOKEN.into(),
            ..ServerOptions::default()
        },
    )
    .await
    .unwrap();
    let people: Vec<(String, &str)> = (0..known)
        .map(|i| {
            let status = if i < 5 { "DEPROVISIONED" } else { "ACTIVE" };
            (format!("user{i:04}@testorg.example"), status)
        })
        .collect();
    let okta = write_okta(tmp, &people);
    let config = write_config(tmp, &server.base_url(), &okta, mail);
    (server, config)
}

async fn run(tmp: &Path, config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--set",
        "report.organization=Prüfung für Müller GmbH",
    ];
    args.extend_from_slice(extra);
    let mut vars = vec![("HUBREVIEW_SCIM_TOKEN", TOKEN)];
    vars.extend_from_slice(env);
    let out = hubreview(tmp, &args, &vars).await;
    Output {
        code: out.status.code(),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
    }
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

const RUN: [&str; 3] = ["run", "--as-of", "2026-11-30"];

/// The deliveries the store recorded, as (method, status, detail).
fn deliveries(tmp: &Path) -> Vec<(String, String, String)> {
    let db = rusqlite::Connection::open(tmp.join("store/hubreview.db")).unwrap();
    let mut statement = db
        .prepare("SELECT method, status, detail FROM deliveries ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn outbox(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp.join("outbox"))
        .map(|dir| dir.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// The report's own files on disk that the message attaches: report.html first, then
/// the CSVs, summary.json and manifest.json by name.
fn report_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut csvs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".csv") || name == "summary.json" || name == "manifest.json")
        .collect();
    csvs.sort();
    std::iter::once("report.html".to_string())
        .chain(csvs)
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Checks that the run failed to deliver, but kept everything: exit 4, a complete report
/// on disk, the message in the outbox, the failure in the store, nothing at the relay.
fn assert_kept_after_failure(tmp: &Path, out: &Output, relay: &Relay) -> String {
    assert_eq!(out.code, Some(4), "{out}");
    let dirs = report_dirs(&tmp.join("reports"));
    assert_eq!(dirs.len(), 1, "{out}");
    assert_eq!(
        read_json(&dirs[0].join("summary.json"))["status"],
        "complete"
    );
    assert!(dirs[0].join("report.html").exists());
    assert_eq!(outbox(tmp).len(), 1, "the message is kept in the outbox");
    let recorded = deliveries(tmp);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].1, "failed", "{recorded:?}");
    assert!(relay.received().is_empty(), "the relay got a message");
    assert!(
        relay.mail_from_log().is_empty(),
        "no MAIL FROM may reach the relay: {}",
        relay.mail_from_log()
    );
    recorded[0].2.clone()
}

/// Every line of a message, CRLF excluded, is at most 998 octets (RFC 5322).
fn assert_short_lines(raw: &[u8]) {
    for (n, line) in raw.split(|b| *b == b'\n').enumerate() {
        let len = line.strip_suffix(b"\r").unwrap_or(line).len();
        assert!(len <= 998, "line {} has {len} octets", n + 1);
    }
}

fn attachments(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let message = MessageParser::default().parse(raw).unwrap();
    message
        .attachments()
        .map(|part| {
            (
                part.attachment_name().unwrap_or_default().to_string(),
                part.contents().to_vec(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_sends_the_report_over_starttls_with_auth_and_every_part_arrives_intact() {
    let relay = Relay::start(RelayOptions {
        auth: true,
        ..RelayOptions::new(Tls::Starttls)
    });
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) = organization(tmp.path(), 60, 50, &relay.mail_config("starttls")).await;

    let out = run(
        tmp.path(),
        &config,
        &["-vv", "run", "--as-of", "2026-11-30"],
        &[("HUBREVIEW_SMTP_PASSWORD", PASSWORD)],
    )
    .await;

    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout
            .contains(&format!("report sent through 127.0.0.1:{}", relay.port)),
        "{out}"
    );
    assert!(
        out.stderr.contains("smtp connection test passed")
            && out.stderr.contains("authenticated with"),
        "the relay's reply to the test is logged: {out}"
    );
    assert!(!out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD));
    let received = relay.received();
    assert_eq!(received.len(), 1);
    let (raw, envelope) = &received[0];
    assert_eq!(envelope["authenticated"], true);
    assert_eq!(envelope["tls"], true);
    assert_eq!(envelope["mail_from"], "hubreview@testorg.example");
    assert_eq!(
        envelope["rcpt_tos"],
        serde_json::json!(["reviewers@testorg.example", "auditors@testorg.example"])
    );
    assert_short_lines(raw);

    let message = MessageParser::default().parse(raw.as_slice()).unwrap();
    let subject = message.subject().unwrap();
    assert!(
        subject.starts_with(&format!(
            "Docker Hub access review {ORGANIZATION} 2026-11-30: 5 leavers with access, "
        )),
        "{subject}"
    );
    let raw_subject = message.header_raw("Subject").unwrap();
    assert!(
        raw_subject.is_ascii() && !raw_subject.contains("Müller"),
        "{raw_subject}"
    );
    let address = |list: Option<&mail_parser::Address>| {
        list.and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(address(message.from()), "hubreview@testorg.example");
    assert_eq!(address(message.to()), "reviewers@testorg.example");
    assert_eq!(address(message.cc()), "auditors@testorg.example");
    assert_eq!(
        address(message.reply_to()),
        "access-reviews@testorg.example"
    );
    assert_eq!(
        message.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );

    let root = message.root_part();
    let kind = |part: &mail_parser::MessagePart| {
        let ct = part.content_type().unwrap();
        format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default())
    };
    assert_eq!(kind(root), "multipart/mixed");
    let first = &message.parts[root.sub_parts().unwrap()[0] as usize];
    assert_eq!(kind(first), "multipart/alternative");
    let bodies: Vec<String> = first
        .sub_parts()
        .unwrap()
        .iter()
        .map(|id| kind(&message.parts[*id as usize]))
        .collect();
    assert_eq!(bodies, ["text/plain", "text/html"]);
    let text = message.body_text(0).unwrap();
    assert!(text.contains(&format!("Docker Hub access review: {ORGANIZATION}")));
    assert!(
        text.contains("Leavers with active Docker access: 5"),
        "{text}"
    );
    let html = message.body_html(0).unwrap();
    assert!(html.contains(&format!("<h1 style=\"font-size: 1.4rem;\">Docker Hub access review: {ORGANIZATION}, 2026-11-30</h1>")), "{html}");
    assert!(
        html.lines().count() > 20,
        "the HTML body has real line breaks"
    );

    let dirs = report_dirs(&tmp.path().join("reports"));
    let expected = report_files(&dirs[0]);
    let mut got = attachments(raw);
    assert_eq!(got[0].0, "report.html");
    got.sort_by(|a, b| (a.0 != "report.html", &a.0).cmp(&(b.0 != "report.html", &b.0)));
    assert_eq!(
        got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
    );
    for ((name, bytes), (_, on_disk)) in got.iter().zip(&expected) {
        assert!(bytes == on_disk, "{name} differs from the file on disk");
    }

    let recorded = deliveries(tmp.path());
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (recorded[0].0.as_str(), recorded[0].1.as_str()),
        ("smtp", "ok")
    );
    assert!(outbox(tmp.path()).is_empty(), "nothing left in the outbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_delivers_the_report_and_authenticates_on_the_wrapped_connection() {
    let relay = Relay::start(RelayOptions {
        auth: true,
        ..RelayOptions::new(Tls::Implicit)
    });
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) = organization(tmp.path(), 20, 20, &relay.mail_config("implicit")).await;

    let out = run(
        tmp.path(),
        &config,
        &RUN,
        &[("HUBREVIEW_SMTP_PASSWORD", PASSWORD)],
    )
    .await;

    assert_eq!(out.code, Some(0), "{out}");
    let received = relay.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].1["authenticated"], true);
    assert_short_lines(&received[0].0);
    assert_eq!(attachments(&received[0].0)[0].0, "report.html");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_loopback_relay_takes_the_report_without_tls() {
    let relay = Relay::start(RelayOptions::new(Tls::Plain));
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) = organization(tmp.path(), 20, 20, &relay.mail_config("none")).await;

    let out = run(tmp.path(), &config, &RUN, &[]).await;

    assert_eq!(out.code, Some(0), "{out}");
    let received = relay.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].1["tls"], false);
    assert_eq!(received[0].1["authenticated"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_without_starttls_gets_nothing_when_starttls_is_required() {
    let relay = Relay::start(RelayOptions::new(Tls::Plain));
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) = organization(tmp.path(), 20, 20, &relay.mail_config("starttls")).await;

    let out = run(tmp.path(), &config, &RUN, &[]).await;

    let detail = assert_kept_after_failure(tmp.path(), &out, &relay);
    assert!(
        out.stderr.contains("smtp connection test failed"),
        "the test before the fetch names the failure: {out}"
    );
    assert!(
        detail.contains("does not offer STARTTLS") && detail.contains("relay.test"),
        "{detail}"
    );
    assert!(out.stdout.contains("delivery FAILED"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_offering_no_usable_auth_mechanism_gets_nothing() {
    let relay = Relay::start(RelayOptions {
        no_usable_auth: true,
        ..RelayOptions::new(Tls::Starttls)
    });
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) = organization(tmp.path(), 20, 20, &relay.mail_config("starttls")).await;

    let out = run(
        tmp.path(),
        &config,
        &RUN,
        &[("HUBREVIEW_SMTP_PASSWORD", PASSWORD)],
    )
    .await;

    let detail = assert_kept_after_failure(tmp.path(), &out, &relay);
    assert!(
        detail.contains("offers only AUTH CRAM-MD5") && detail.contains("PLAIN or LOGIN"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_hides_auth_without_tls_gets_nothing_rather_than_an_unauthenticated_message() {
    // aiosmtpd offers AUTH only over TLS; on a plain loopback connection it offers none.
    let relay = Relay::start(RelayOptions {
        auth: true,
        ..RelayOptions::new(Tls::Plain)
    });
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) = organization(tmp.path(), 20, 20, &relay.mail_config("none")).await;

    let out = run(
        tmp.path(),
        &config,
        &RUN,
        &[("HUBREVIEW_SMTP_PASSWORD", PASSWORD)],
    )
    .await;

    let detail = assert_kept_after_failure(tmp.path(), &out, &relay);
    assert!(detail.contains("offers no authentication"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_appears_in_no_output_or_file() {
    let relay = Relay::start(RelayOptions {
        auth: true,
        ..RelayOptions::new(Tls::Starttls)
    });
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) = organization(tmp.path(), 20, 20, &relay.mail_config("starttls")).await;
    let wrong = "Wrong-Pa55word-never-real";

    let out = run(
        tmp.path(),
        &config,
        &["-vv", "run", "--as-of", "2026-11-30"],
        &[("HUBREVIEW_SMTP_PASSWORD", wrong)],
    )
    .await;

    let detail = assert_kept_after_failure(tmp.path(), &out, &relay);
    assert!(
        detail.contains("refused the credentials of `hubreview`") && detail.contains("535"),
        "{detail}"
    );
    assert!(
        !out.stdout.contains(wrong) && !out.stderr.contains(wrong),
        "{out}"
    );
    let mut files = vec![tmp.path().join("store/hubreview.db")];
    files.extend(outbox(tmp.path()));
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(wrong.len()).any(|w| w == wrong.as_bytes()),
            "{} holds the password",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_down_is_found_before_the_fetch_and_the_report_goes_to_the_outbox() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let mail = format!("smtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\n");
    let (server, config) = organization(tmp.path(), 20, 20, &mail).await;

    let out = run(tmp.path(), &config, &RUN, &[]).await;

    assert_eq!(out.code, Some(4), "{out}");
    assert!(
        out.stderr.contains("smtp connection test failed")
            && out.stderr.contains(&format!("127.0.0.1:{port}")),
        "{out}"
    );
    assert!(!server.request_log().is_empty(), "the fetch still ran");
    let dirs = report_dirs(&tmp.path().join("reports"));
    assert_eq!(
        read_json(&dirs[0].join("summary.json"))["status"],
        "complete"
    );
    let saved = outbox(tmp.path());
    assert_eq!(saved.len(), 1);
    let raw = std::fs::read(&saved[0]).unwrap();
    assert_eq!(attachments(&raw)[0].0, "report.html");
    let recorded = deliveries(tmp.path());
    assert_eq!(recorded[0].1, "failed");
    assert!(
        recorded[0]
            .2
            .contains("connection test before the fetch failed"),
        "{recorded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_without_a_password_stops_the_run_before_anything_is_fetched() {
    let relay = Relay::start(RelayOptions {
        auth: true,
        ..RelayOptions::new(Tls::Starttls)
    });
    let tmp = tempfile::tempdir().unwrap();
    let (server, config) = organization(tmp.path(), 20, 20, &relay.mail_config("starttls")).await;

    let out = run(tmp.path(), &config, &RUN, &[]).await;

    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("HUBREVIEW_SMTP_PASSWORD"), "{out}");
    assert!(server.request_log().is_empty(), "nothing was fetched");
}

/// Sizes of the organization used by the size tests: 1,000 accounts, 990 of them shadow
/// accounts, so the CSVs are large and repetitive (they zip well).
const BIG: (usize, usize) = (1000, 10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_552_for_a_message_over_an_unannounced_size_limit_gets_the_files_zipped() {
    let relay = Relay::start(RelayOptions {
        size: Some(400_000),
        hide_size: true,
        ..RelayOptions::new(Tls::Plain)
    });
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) =
        organization(tmp.path(), BIG.0, BIG.1, &relay.mail_config("none")).await;

    let out = run(tmp.path(), &config, &RUN, &[]).await;

    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("too large for the relay"), "{out}");
    let received = relay.received();
    assert_eq!(received.len(), 1, "one message got through: {out}");
    let raw = &received[0].0;
    assert_short_lines(raw);
    let got = attachments(raw);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "report.zip");
    let text = MessageParser::default()
        .parse(raw.as_slice())
        .unwrap()
        .body_text(0)
        .unwrap()
        .into_owned();
    assert!(
        text.contains("The report files are compressed into report.zip"),
        "{text}"
    );
    assert!(text.contains("552"), "the relay's reply is quoted: {text}");

    // The archive holds the report's files, byte for byte, read by Python's zipfile.
    let archive = tmp.path().join("report.zip");
    std::fs::write(&archive, &got[0].1).unwrap();
    let listing = Command::new(python())
        .args([
            "-c",
            "import hashlib, sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             assert z.testzip() is None\n\
             for n in z.namelist(): print(n, hashlib.sha256(z.read(n)).hexdigest())",
        ])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(listing.status.success(), "{}", text_of(&listing.stderr));
    let dirs = report_dirs(&tmp.path().join("reports"));
    let mut expected: Vec<String> = report_files(&dirs[0])
        .into_iter()
        .map(|(name, bytes)| format!("{name} {}", hubreview::report::sha256_hex(&bytes)))
        .collect();
    let listed = text_of(&listing.stdout);
    let mut listed: Vec<&str> = listed.lines().collect();
    expected.sort();
    listed.sort();
    assert_eq!(listed, expected);

    let recorded = deliveries(tmp.path());
    assert_eq!(recorded[0].1, "ok");
    assert!(recorded[0].2.contains("report.zip"), "{recorded:?}");
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_size_limit_smaller_than_the_zip_gets_the_summary_saying_where_the_report_is()
{
    let relay = Relay::start(RelayOptions {
        size: Some(40_000),
        ..RelayOptions::new(Tls::Plain)
    });
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) =
        organization(tmp.path(), BIG.0, BIG.1, &relay.mail_config("none")).await;

    let out = run(tmp.path(), &config, &RUN, &[]).await;

    assert_eq!(out.code, Some(0), "{out}");
    let received = relay.received();
    assert_eq!(received.len(), 1, "{out}");
    let raw = &received[0].0;
    assert!(attachments(raw).is_empty());
    let message = MessageParser::default().parse(raw.as_slice()).unwrap();
    let text = message
        .body_text(0)
        .unwrap()
        .replace("\r\n", " ")
        .replace('\n', " ");
    let dirs = report_dirs(&tmp.path().join("reports"));
    assert!(text.contains("(EHLO SIZE 40000)"), "{text}");
    assert!(
        text.contains("The report files are not attached")
            && text.contains(&format!("The full report is in {}", dirs[0].display())),
        "{text}"
    );
    assert!(
        text.contains("Leavers with active Docker access: 5"),
        "the summary still counts: {text}"
    );
    assert!(dirs[0].join("report.html").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_limit_smaller_than_the_summary_fails_after_every_form_and_keeps_the_report() {
    let relay = Relay::start(RelayOptions {
        size: Some(3_000),
        hide_size: true,
        ..RelayOptions::new(Tls::Plain)
    });
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) =
        organization(tmp.path(), BIG.0, BIG.1, &relay.mail_config("none")).await;

    let out = run(tmp.path(), &config, &RUN, &[]).await;

    assert_eq!(out.code, Some(4), "{out}");
    assert_eq!(outbox(tmp.path()).len(), 1);
    assert!(relay.received().is_empty());
    assert_eq!(
        relay.mail_from_log().lines().count(),
        3,
        "the files, the zip, then the summary were tried: {}",
        relay.mail_from_log()
    );
    let recorded = deliveries(tmp.path());
    assert_eq!(recorded[0].1, "failed");
    assert!(
        recorded[0]
            .2
            .contains("even the summary alone is too large")
            && recorded[0].2.contains("552"),
        "{recorded:?}"
    );
    let dirs = report_dirs(&tmp.path().join("reports"));
    assert!(dirs[0].join("report.html").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_zips_the_files_before_any_relay_sees_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) = organization(tmp.path(), BIG.0, BIG.1, "max_bytes = 400000\n").await;

    let out = run(
        tmp.path(),
        &config,
        &["run", "--as-of", "2026-11-30", "--dry-run"],
        &[],
    )
    .await;

    assert_eq!(out.code, Some(0), "{out}");
    let saved = outbox(tmp.path());
    assert_eq!(saved.len(), 1);
    let raw = std::fs::read(&saved[0]).unwrap();
    assert!(raw.len() <= 400_000, "{} bytes", raw.len());
    assert_eq!(attachments(&raw)[0].0, "report.zip");
    assert_short_lines(&raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_a_stored_run_that_first_went_to_the_outbox() {
    let relay = Relay::start(RelayOptions {
        auth: true,
        ..RelayOptions::new(Tls::Starttls)
    });
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) = organization(tmp.path(), 20, 20, &relay.mail_config("starttls")).await;
    let env = [("HUBREVIEW_SMTP_PASSWORD", PASSWORD)];

    let first = run(
        tmp.path(),
        &config,
        &["run", "--as-of", "2026-11-30", "--dry-run"],
        &env,
    )
    .await;
    assert_eq!(first.code, Some(0), "{first}");
    assert!(relay.received().is_empty());
    assert_eq!(outbox(tmp.path()).len(), 1);

    let out = run(tmp.path(), &config, &["send", "--run", "1"], &env).await;

    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("run 1: report sent through"), "{out}");
    let received = relay.received();
    assert_eq!(received.len(), 1);
    let subject = MessageParser::default()
        .parse(received[0].0.as_slice())
        .unwrap()
        .subject()
        .unwrap()
        .to_string();
    assert!(subject.contains(ORGANIZATION), "{subject}");
    let recorded = deliveries(tmp.path());
    assert_eq!(
        recorded
            .iter()
            .map(|(m, s, _)| format!("{m} {s}"))
            .collect::<Vec<_>>(),
        ["outbox ok", "smtp ok"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_run_sends_a_failure_notice_instead_of_the_report() {
    use hubreview::demo::{Faults, PageAction, PageFault};

    let relay = Relay::start(RelayOptions::new(Tls::Plain));
    let tmp = tempfile::tempdir().unwrap();
    let (server, config) = organization(tmp.path(), 450, 440, &relay.mail_config("none")).await;
    server.set_faults(Faults {
        pages: vec![PageFault::always(201, PageAction::Status(500))],
        ..Faults::default()
    });

    let out = run(tmp.path(), &config, &RUN, &[]).await;

    assert_eq!(out.code, Some(3), "{out}");
    let received = relay.received();
    assert_eq!(received.len(), 1, "{out}");
    let message = MessageParser::default()
        .parse(received[0].0.as_slice())
        .unwrap();
    assert!(
        message.subject().unwrap().contains("could not complete"),
        "{:?}",
        message.subject()
    );
    let text = message.body_text(0).unwrap();
    assert!(text.contains("NOTHING WAS RECONCILED") && text.contains("What to check:"));
    let names: Vec<String> = attachments(&received[0].0)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["summary.json"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_to_a_starttls_relay_fails_at_once_and_says_to_check_mail_tls() {
    let relay = Relay::start(RelayOptions::new(Tls::Starttls));
    let tmp = tempfile::tempdir().unwrap();
    let (_server, config) = organization(tmp.path(), 20, 20, &relay.mail_config("implicit")).await;

    let out = run(tmp.path(), &config, &RUN, &[]).await;

    let detail = assert_kept_after_failure(tmp.path(), &out, &relay);
    assert!(
        detail.contains("answered in plain text")
            && detail.contains("set `mail.tls` to `starttls`"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_to_an_implicit_tls_relay_gives_up_after_the_timeout_and_says_to_check_mail_tls() {
    let relay = Relay::start(RelayOptions::new(Tls::Implicit));
    let tmp = tempfile::tempdir().unwrap();
    let mail = relay
        .mail_config("starttls")
        .replace("timeout_secs = 10", "timeout_secs = 2");
    let (_server, config) = organization(tmp.path(), 20, 20, &mail).await;

    let out = run(tmp.path(), &config, &RUN, &[]).await;

    let detail = assert_kept_after_failure(tmp.path(), &out, &relay);
    assert!(
        detail.contains("did not answer within 2 s") && detail.contains("`implicit` for 465"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_certificate_from_a_ca_not_in_ca_file_is_refused() {
    let relay = Relay::start(RelayOptions::new(Tls::Starttls));
    let tmp = tempfile::tempdir().unwrap();
    let mail: String = relay
        .mail_config("starttls")
        .lines()
        .filter(|line| !line.starts_with("ca_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    let (_server, config) = organization(tmp.path(), 20, 20, &mail).await;

    let out = run(tmp.path(), &config, &RUN, &[]).await;

    let detail = assert_kept_after_failure(tmp.path(), &out, &relay);
    assert!(
        detail.contains("UnknownIssuer") && detail.contains("mail.ca_file"),
        "{detail}"
    );
}

#[test]
fn only_the_ring_crypto_provider_is_compiled_in() {
    // Two rustls providers make rustls panic at run time when lettre or reqwest first
    // builds a TLS config; `run::main` installs ring for both.
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    for package in ["aws-lc-rs", "aws-lc-sys", "aws-lc-fips-sys"] {
        assert!(
            !lock.contains(&format!("name = \"{package}\"")),
            "Cargo.lock pulls {package}: find the dependency with `cargo tree -i {package}` and \
             switch it to ring"
        );
    }
    assert!(lock.contains("name = \"ring\""));
}
