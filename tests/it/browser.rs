//! The demo report in a real browser: Debian's Chromium, headless, driven through
//! chromedriver's WebDriver API on 127.0.0.1 (plain HTTP and JSON, so reqwest is enough).
//!
//! `scripts/test` installs `chromium` and `chromium-driver` when they are missing and
//! names them in `BROWSER_TEST_CHROMIUM` and `BROWSER_TEST_CHROMEDRIVER`. Without them
//! this test fails, saying so: a report nobody opened is not a tested report. The
//! screenshots and the printed PDF go to `reports/browser/` as CI artifacts.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn required_path(variable: &str) -> PathBuf {
    match std::env::var_os(variable) {
        Some(path) if Path::new(&path).exists() => PathBuf::from(path),
        other => panic!(
            "{variable} is {other:?}: the browser test needs Debian's chromium and \
             chromium-driver; run `scripts/test`, which installs them and sets \
             BROWSER_TEST_CHROMIUM and BROWSER_TEST_CHROMEDRIVER"
        ),
    }
}

/// chromedriver on a free port of 127.0.0.1, ended when dropped.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(path: &Path, log: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .no_proxy()
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok()
                .and_then(|r| r.status().is_success().then_some(()));
            if ready.is_some() {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {} within 20 s",
                driver.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends one WebDriver command and returns its `value`; a WebDriver error fails the
    /// test with the command and the error.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status}: {value}");
        value["value"].clone()
    }
}

/// A browser session; [`Session::quit`] ends it.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl<'a> Session<'a> {
    async fn new(driver: &'a Driver, chromium: &Path, profile: &Path) -> Session<'a> {
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-dev-shm-usage".to_string(),
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1280,900".to_string(),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let value = driver
            .call(reqwest::Method::POST, "/session", Some(capabilities))
            .await;
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {value}"))
            .to_string();
        Session { driver, id }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.id);
        self.driver
            .call(reqwest::Method::POST, &path, Some(body))
            .await
    }

    async fn get(&self, path: &str) -> Value {
        let path = format!("/session/{}{path}", self.id);
        self.driver.call(reqwest::Method::GET, &path, None).await
    }

    async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    async fn element(&self, css: &str) -> String {
        let value = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        value[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element `{css}`: {value}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    /// The text of one column of a findings table, row by row.
    async fn column(&self, section: &str, column: &str) -> Vec<String> {
        let script = format!(
            "return Array.from(document.querySelectorAll('#{section} table.findings tbody \
             td.col-{column}')).map(function (td) {{ return td.textContent.trim(); }});"
        );
        self.script(&script)
            .await
            .as_array()
            .unwrap_or_else(|| panic!("no column {column} in #{section}"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Browser log entries of level SEVERE: console errors, script errors, CSP refusals.
    async fn errors(&self) -> Vec<String> {
        let entries = self.post("/se/log", json!({"type": "browser"})).await;
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn save_screenshot(&self, path: &Path) {
        let data = self.get("/screenshot").await;
        write_base64(path, data.as_str().unwrap_or_default());
    }

    async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    async fn quit(self) {
        let path = format!("/session/{}", self.id);
        self.driver.call(reqwest::Method::DELETE, &path, None).await;
    }
}

fn write_base64(path: &Path, text: &str) {
    let bytes = decode_base64(text).unwrap_or_else(|| panic!("{} is not base64", path.display()));
    assert!(!bytes.is_empty(), "nothing to write to {}", path.display());
    std::fs::write(path, bytes).unwrap();
}

/// Standard base64 with padding, as WebDriver returns screenshots and PDFs.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// The order a sort by `column` must give: numbers by value when every cell is one, text
/// otherwise, with ties kept in the order they had.
fn sorted(values: &[String], descending: bool) -> Vec<String> {
    let mut sorted = values.to_vec();
    if values.iter().all(|v| v.parse::<i64>().is_ok()) {
        sorted.sort_by_key(|v| v.parse::<i64>().unwrap());
    } else {
        sorted.sort_by_key(|v| v.to_lowercase());
    }
    if descending {
        sorted.reverse();
    }
    sorted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_report_opens_in_chromium_without_errors_and_sorts_its_columns() {
    let chromium = required_path("BROWSER_TEST_CHROMIUM");
    let chromedriver = required_path("BROWSER_TEST_CHROMEDRIVER");
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/browser");
    std::fs::create_dir_all(&artifacts).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let out = hubreview(tmp.path(), &["demo", "--dir", "demo"], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dirs = report_dirs(&tmp.path().join("demo"));
    let report = url::Url::from_file_path(dirs[0].join("report.html")).unwrap();

    let driver = Driver::start(&chromedriver, &artifacts.join("chromedriver.log")).await;
    let session = Session::new(&driver, &chromium, &tmp.path().join("profile")).await;
    session.post("/url", json!({"url": report.as_str()})).await;

    // Nothing failed: no script error, no refused inline block, no console error.
    let errors = session.errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let title = session.get("/title").await;
    assert!(
        title.as_str().unwrap_or_default().contains("Acme Robotics"),
        "{title}"
    );

    // The script ran (the sort buttons exist) and the hostile names stayed text.
    let checks = session
        .script(
            "return {buttons: document.querySelectorAll('button.sort').length, \
             scripts: document.scripts.length, images: document.images.length, \
             hostile: document.body.textContent.indexOf('<script>alert(1)</script>') >= 0};",
        )
        .await;
    assert!(checks["buttons"].as_u64().unwrap() >= 12, "{checks}");
    assert_eq!(checks["scripts"], 1, "{checks}");
    assert_eq!(checks["images"], 0, "{checks}");
    assert_eq!(
        checks["hostile"], true,
        "the hostile name shows as text: {checks}"
    );

    // Sorting the drift table by docker_id orders it, and a second click reverses it.
    let before = session.column("drift", "docker_id").await;
    assert!(before.len() >= 10, "{before:?}");
    session
        .click("#drift table.findings th.col-docker_id button.sort")
        .await;
    let ascending = session.column("drift", "docker_id").await;
    assert_eq!(ascending, sorted(&before, false));
    assert_ne!(ascending, before, "the demo's drift rows start unsorted");
    session
        .click("#drift table.findings th.col-docker_id button.sort")
        .await;
    let descending = session.column("drift", "docker_id").await;
    assert_eq!(descending, sorted(&before, true));

    // Severity sorts by rank, not by name: info after critical, not before it.
    session
        .click("#drift table.findings th.col-severity button.sort")
        .await;
    let severities = session.column("drift", "severity").await;
    let rank = |s: &str| {
        ["critical", "high", "medium", "low", "info"]
            .iter()
            .position(|r| *r == s)
    };
    let ranks: Vec<_> = severities.iter().map(|s| rank(s).unwrap()).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{severities:?}");
    assert!(ranks.first() < ranks.last(), "{severities:?}");

    // Filtering one column keeps only the matching rows.
    let filter = session.element("#drift input.filter").await;
    session
        .post(&format!("/element/{filter}/value"), json!({"text": "high"}))
        .await;
    let visible = session
        .script(
            "return Array.from(document.querySelectorAll('#drift table.findings tbody tr'))\
             .filter(function (tr) { return !tr.hidden; }).length;",
        )
        .await;
    let high = severities.iter().filter(|s| *s == "high").count() as u64;
    assert!(
        visible.as_u64().unwrap() >= high,
        "{visible} rows, {high} high"
    );
    assert!(
        visible.as_u64().unwrap() < severities.len() as u64,
        "{visible}"
    );

    // The printed page header carries the run, read back from the CSS the browser parsed.
    let page_rules = session
        .script(
            "return Array.from(document.styleSheets).flatMap(function (sheet) { \
             return Array.from(sheet.cssRules); }).map(function (rule) { return rule.cssText; })\
             .filter(function (text) { return text.indexOf('@top-left') >= 0; });",
        )
        .await;
    assert!(
        page_rules.to_string().contains(
            "Docker Hub access review: Acme Robotics (demo), 2026-11-30, run 2, complete"
        ),
        "{page_rules}"
    );

    session.resize(1280, 2400).await;
    session.script("window.scrollTo(0, 0); return 0;").await;
    session.save_screenshot(&artifacts.join("report.png")).await;
    let table = session.element("#drift table.findings").await;
    let shot = session.get(&format!("/element/{table}/screenshot")).await;
    write_base64(&artifacts.join("drift-table.png"), shot.as_str().unwrap());

    // Printed on A4 landscape (about 1030 px between the margins), no table runs off the
    // page.
    session.resize(1030, 2400).await;
    session
        .post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setEmulatedMedia", "params": {"media": "print"}}),
        )
        .await;
    let overflow = session
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        )
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "printed, the page is {overflow} px wider than the paper"
    );
    session
        .post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setEmulatedMedia", "params": {"media": ""}}),
        )
        .await;

    // At phone width nothing runs off the side of the page.
    session.resize(390, 2400).await;
    session.script("window.scrollTo(0, 0); return 0;").await;
    let overflow = session
        .script("return document.documentElement.scrollWidth - window.innerWidth;")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page is {overflow} px wider than a phone"
    );
    session
        .save_screenshot(&artifacts.join("report-phone.png"))
        .await;

    // Printing works and gives several pages.
    let pdf = session
        .post("/print", json!({"orientation": "landscape"}))
        .await;
    write_base64(&artifacts.join("report.pdf"), pdf.as_str().unwrap());
    let printed = std::fs::read(artifacts.join("report.pdf")).unwrap();
    assert!(printed.starts_with(b"%PDF"));

    let errors = session.errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    session.quit().await;
}

#[test]
fn base64_decoding_gives_back_the_bytes() {
    for (encoded, plain) in [
        ("", ""),
        ("Zg==", "f"),
        ("Zm8=", "fo"),
        ("Zm9v", "foo"),
        ("Zm9vYmFy", "foobar"),
    ] {
        assert_eq!(
            decode_base64(encoded).unwrap(),
            plain.as_bytes(),
            "{encoded}"
        );
    }
    assert!(decode_base64("Zm9v!").is_none());
}
