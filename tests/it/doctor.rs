//! `hubreview doctor` against a good setup and a broken one: a SCIM server and an SMTP relay
//! started by the test on 127.0.0.1.

use std::path::Path;

use hubreview::demo::{self, ServerOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::common::*;

const SMTP_USER: &str = "hubreview";
const SMTP_PASSWORD: &str = "smtp-password-never-real";

/// Standard base64, for the expected `AUTH PLAIN` argument.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An SMTP relay on 127.0.0.1 that offers `AUTH PLAIN` without TLS and accepts only
/// `hubreview` / [`SMTP_PASSWORD`], as a local relay would. Returns its port; it serves
/// until the test ends.
async fn start_relay() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let expected = base64(format!("\0{SMTP_USER}\0{SMTP_PASSWORD}").as_bytes());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let expected = expected.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 relay.test ESMTP ready\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-relay.test\r\n250 AUTH PLAIN\r\n"
                    } else if upper.starts_with("AUTH PLAIN ") {
                        if line[11..].trim() == expected {
                            b"235 2.7.0 Authentication successful\r\n"
                        } else {
                            b"535 5.7.8 Authentication credentials invalid\r\n"
                        }
                    } else if upper.starts_with("NOOP") {
                        b"250 2.0.0 OK\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                        break;
                    } else {
                        b"502 5.5.2 Command not recognized\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn mail_section(port: u16) -> String {
    format!(
        "smtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\nusername = \"{SMTP_USER}\"\n"
    )
}

/// Every file under `dir`, for proving that doctor created nothing.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out.sort();
    out
}

/// `(status, name)` of each output line.
fn statuses(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| {
            let mut words = l.split_whitespace();
            (
                words.next().unwrap_or_default().to_owned(),
                words.next().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_good_setup_with_one_line_per_check_and_changes_nothing() {
    let server = demo::start(
        users(450),
        ServerOptions {
            token: TOKEN.into(),
            ..ServerOptions::default()
        },
    )
    .await
    .unwrap();
    let port = start_relay().await;
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[("a@testorg.example".into(), "ACTIVE")]);
    let config = write_config(tmp.path(), &server.base_url(), &okta, &mail_section(port));
    let before = files(tmp.path());

    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "doctor"],
        &[
            ("HUBREVIEW_SCIM_TOKEN", TOKEN),
            ("HUBREVIEW_SMTP_PASSWORD", SMTP_PASSWORD),
        ],
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert_eq!(
        statuses(&stdout),
        [
            ("ok", "config"),
            ("ok", "store"),
            ("ok", "scim"),
            ("skip", "hub"),
            ("ok", "smtp"),
            ("ok", "idp"),
            ("skip", "activity"),
            ("skip", "exceptions"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned())),
        "{stdout}"
    );
    assert!(stdout.contains("reports 450 users"), "{stdout}");
    assert!(stdout.contains("authenticated with PLAIN"), "{stdout}");
    assert!(stdout.contains("hub         not configured"), "{stdout}");

    // It asked for the ServiceProviderConfig, then one user, and nothing else.
    let paths: Vec<String> = server
        .request_log()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path_and_query))
        .collect();
    assert_eq!(
        paths,
        [
            "GET /v2/scim/2.0/ServiceProviderConfig",
            "GET /v2/scim/2.0/Users?startIndex=1&count=1"
        ],
    );
    assert_eq!(
        files(tmp.path()),
        before,
        "doctor must not create the store or a lock"
    );

    // With a store, doctor checks it too, still without changing it.
    let run = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "snapshot"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "doctor"],
        &[
            ("HUBREVIEW_SCIM_TOKEN", TOKEN),
            ("HUBREVIEW_SMTP_PASSWORD", SMTP_PASSWORD),
        ],
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("is writable, 1 runs"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_broken_part_exits_non_zero_and_never_prints_a_secret() {
    let server = demo::start(
        users(3),
        ServerOptions {
            token: "the-token-the-server-wants".into(),
            ..ServerOptions::default()
        },
    )
    .await
    .unwrap();
    let port = start_relay().await;
    let tmp = tempfile::tempdir().unwrap();
    // An exceptions file `run` would refuse: doctor says so too.
    let exceptions = tmp.path().join("exceptions.toml");
    std::fs::write(
        &exceptions,
        "[[exception]]\nkind = \"nope\"\naccount = \"a\"\nowner = \"x\"\nreason = \"y\"\nexpires = \"2027-01-01\"\n",
    )
    .unwrap();
    let config = write_config(
        tmp.path(),
        &server.base_url(),
        &tmp.path().join("missing-okta.csv"),
        &format!(
            "{}\n[review]\nexceptions = \"{}\"\n",
            mail_section(port),
            exceptions.display()
        ),
    );

    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "doctor"],
        &[
            ("HUBREVIEW_SCIM_TOKEN", TOKEN),
            ("HUBREVIEW_SMTP_PASSWORD", "a-wrong-password-never-real"),
        ],
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let lines = statuses(&stdout);
    assert_eq!(lines.len(), 8, "{stdout}");
    for (status, name) in [
        ("ok", "config"),
        ("ok", "store"),
        ("FAIL", "scim"),
        ("FAIL", "smtp"),
        ("FAIL", "idp"),
        ("FAIL", "exceptions"),
    ] {
        assert!(
            lines.contains(&(status.to_owned(), name.to_owned())),
            "{name} should be {status}:\n{stdout}"
        );
    }
    assert!(stdout.contains("HTTP 401"), "{stdout}");
    assert!(stdout.contains("check the token"), "{stdout}");
    assert!(
        stdout.contains("535"),
        "the relay's reply is shown: {stdout}"
    );
    assert!(stdout.contains("missing-okta.csv"), "{stdout}");
    for secret in [TOKEN, "a-wrong-password-never-real"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
        assert!(!text(&out.stderr).contains(secret), "{secret} logged");
    }
}

#[tokio::test]
async fn doctor_with_a_bad_configuration_fails_its_first_line_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("hubreview.toml");
    std::fs::write(&config, "[scim]\npage_size = 500\n").unwrap();
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "doctor"],
        &[],
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let lines = statuses(&stdout);
    assert_eq!(lines[0], ("FAIL".to_owned(), "config".to_owned()));
    assert!(stdout.contains("scim.page_size"), "{stdout}");
    assert!(lines[1..].iter().all(|(s, _)| s == "skip"), "{stdout}");
}
