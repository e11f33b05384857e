//! The SCIM step under every fault a real server throws, against the Docker-like fake
//! server with its faults switched on by each test.
//!
//! A fault that loses users must end in an incomplete snapshot with its reason, exit code
//! 3, and no finding at all; a fault that the client can ride out (a retry, a restart, a
//! short page) must end in a snapshot equal to what a fault-free fetch gives.

use std::time::{Duration, Instant};

use hubreview::config::ScimConfig;
use hubreview::demo::{
    self, PageAction, PageFault, RateLimit, RetryHint, ScimServer, ServerOptions, UserChange,
};
use hubreview::scim::{self, Completeness, Fetched};
use serde_json::Value;

use crate::common::*;

fn options() -> ServerOptions {
    ServerOptions {
        token: TOKEN.into(),
        ..ServerOptions::default()
    }
}

async fn serve(users_count: usize, options: ServerOptions) -> ScimServer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    demo::start(users(users_count), options)
        .await
        .expect("the fake SCIM server starts on 127.0.0.1")
}

/// A configuration for in-process fetches: small pages so that few users make many
/// pages, quick retries.
fn config(server: &ScimServer, page_size: u32) -> ScimConfig {
    ScimConfig {
        url: server.base_url(),
        page_size,
        max_retries: 2,
        retry_base_ms: 10,
        timeout_secs: 5,
        retry_max_wait_secs: 5,
        ..ScimConfig::default()
    }
}

async fn fetch(cfg: &ScimConfig) -> Fetched {
    scim::fetch_all(cfg, TOKEN, false)
        .await
        .expect("the configuration is valid")
}

fn ids(fetched: &Fetched) -> Vec<String> {
    fetched.accounts.iter().map(|(a, _)| a.id.clone()).collect()
}

fn expected_ids(n: usize) -> Vec<String> {
    users(n)
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_complete(fetched: &Fetched, n: usize) {
    assert_eq!(
        fetched.completeness,
        Completeness::Complete,
        "{:?}",
        fetched.completeness.reason()
    );
    assert_eq!(fetched.total_results, Some(n as u64));
    assert_eq!(ids(fetched), expected_ids(n), "every user once, in order");
}

/// The `startIndex` of every `/Users` request, in the order the server got them.
fn start_indexes(server: &ScimServer) -> Vec<u64> {
    server
        .request_log()
        .iter()
        .filter(|r| r.path_and_query.contains("/Users?"))
        .filter_map(|r| {
            r.path_and_query
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("startIndex="))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

fn assert_read_only(server: &ScimServer) {
    let log = server.request_log();
    assert!(
        log.iter()
            .all(|r| r.method == "GET" && r.authorization_present),
        "only GET, always with the token: {log:?}"
    );
}

/// What `hubreview run` left behind.
struct RunResult {
    exit: Option<i32>,
    stdout: String,
    stderr: String,
    summary: Value,
    findings: Vec<(String, String)>,
    /// The message left for the reviewers in the outbox.
    message: String,
}

/// Runs `hubreview run` against `server`, whose users are `users(n)`, with an IdP export
/// that knows them all; `extra` is appended to the `[scim]` section of the config.
async fn run(server: &ScimServer, n: usize, extra: &str) -> RunResult {
    let tmp = tempfile::tempdir().unwrap();
    let people: Vec<(String, &str)> = (0..n)
        .map(|i| (format!("user{i:04}@testorg.example"), "ACTIVE"))
        .collect();
    let okta = write_okta(tmp.path(), &people);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    // Keys in `extra` replace the ones `write_config` sets.
    let given: Vec<&str> = extra
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let text_config: String = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .filter(|l| {
            !l.split_once('=')
                .is_some_and(|(k, _)| given.contains(&k.trim()))
        })
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace("[idp]", &format!("{extra}\n\n[idp]"));
    std::fs::write(&config, text_config).unwrap();

    let out = hubreview(
        tmp.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--as-of",
            "2026-11-30",
        ],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    let dirs = report_dirs(&tmp.path().join("reports"));
    assert_eq!(dirs.len(), 1, "one report directory: {}", text(&out.stderr));
    let findings_path = dirs[0].join("findings.csv");
    let messages: Vec<_> = std::fs::read_dir(tmp.path().join("outbox"))
        .map(|it| it.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(messages.len(), 1, "one message in the outbox");
    RunResult {
        message: std::fs::read_to_string(&messages[0]).unwrap(),
        exit: out.status.code(),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
        summary: read_json(&dirs[0].join("summary.json")),
        findings: if findings_path.exists() {
            findings_csv(&findings_path)
        } else {
            Vec::new()
        },
    }
}

/// The run refused the snapshot: exit 3, `summary.json` incomplete with a reason that
/// holds every `needle`, every count `null`, and not one finding.
fn assert_incomplete(result: &RunResult, needles: &[&str]) {
    assert_eq!(
        result.exit,
        Some(3),
        "stdout:\n{}\nstderr:\n{}",
        result.stdout,
        result.stderr
    );
    assert!(result.stdout.contains("INCOMPLETE"), "{}", result.stdout);
    assert_eq!(result.summary["status"], "incomplete");
    assert_eq!(result.summary["snapshot"]["status"], "incomplete");
    let reason = result.summary["reason"].as_str().expect("a reason");
    for needle in needles {
        assert!(reason.contains(needle), "reason lacks `{needle}`: {reason}");
    }
    let counts = result.summary["findings"].as_object().unwrap();
    assert!(!counts.is_empty());
    for (kind, count) in counts {
        assert_eq!(
            count,
            &Value::Null,
            "{kind} counted from a partial snapshot"
        );
    }
    assert!(
        result.findings.is_empty(),
        "findings from an incomplete snapshot: {:?}",
        result.findings
    );
    // The reviewers get a short failure notice, not a report.
    let message = &result.message;
    assert!(message.contains("could not complete"), "{message}");
    assert!(message.contains("summary.json"), "{message}");
    assert!(!message.contains("findings.csv"), "{message}");
    assert!(!message.contains("report.html\""), "{message}");
}

// --- Paging ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_provider_config_is_read_first_and_pages_are_sorted_by_id() {
    let server = serve(45, options()).await;
    let fetched = fetch(&config(&server, 10)).await;
    assert_complete(&fetched, 45);
    let log = server.request_log();
    assert_eq!(log[0].path_and_query, "/v2/scim/2.0/ServiceProviderConfig");
    assert_eq!(
        log[1].path_and_query,
        "/v2/scim/2.0/Users?startIndex=1&count=10&sortBy=id&sortOrder=ascending"
    );
    assert!(
        log[1..]
            .iter()
            .all(|r| r.path_and_query.contains("sortBy=id"))
    );
    assert_eq!(fetched.pages, 5);
    assert_read_only(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_announce_sort_is_never_asked_to_sort() {
    let mut options = options();
    // This server answers 501 to a sortBy, as RFC 7644 says for a feature not announced.
    options.provider.sort = false;
    let server = serve(45, options).await;
    let fetched = fetch(&config(&server, 10)).await;
    assert_complete(&fetched, 45);
    assert!(
        server
            .request_log()
            .iter()
            .all(|r| !r.path_and_query.contains("sort")),
        "{:?}",
        server.request_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_size_is_the_smallest_of_page_size_max_results_and_200() {
    for (page_size, max_results, want) in [
        (200, Some(50), "count=50&"),
        (30, Some(50), "count=30&"),
        (200, Some(1000), "count=200&"),
        (200, None, "count=200&"),
    ] {
        let mut options = options();
        options.max_page = 1000;
        options.provider.max_results = max_results;
        let server = serve(120, options).await;
        let fetched = fetch(&config(&server, page_size)).await;
        assert_complete(&fetched, 120);
        let first = &server.request_log()[1].path_and_query;
        assert!(
            first.contains(want),
            "page_size {page_size}, maxResults {max_results:?}: {first}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_over_the_announced_maximum_is_never_sent_to_a_server_that_refuses_it() {
    let mut options = options();
    options.max_page = 50;
    options.reject_count_over_max = true;
    options.provider.max_results = Some(50);
    let server = serve(180, options).await;
    let fetched = fetch(&config(&server, 200)).await;
    assert_complete(&fetched, 180);
    assert!(
        server
            .request_log()
            .iter()
            .skip(1)
            .all(|r| r.path_and_query.contains("count=50&")),
        "{:?}",
        server.request_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_over_the_maximum_refused_with_400_is_incomplete_and_names_page_size() {
    let mut options = options();
    options.max_page = 50;
    options.reject_count_over_max = true;
    // The server keeps its maximum to itself.
    options.provider.status = Some(404);
    let server = serve(120, options).await;
    let result = run(&server, 120, "").await;
    assert_incomplete(&result, &["startIndex 1", "HTTP 400", "scim.page_size"]);
    // A 400 is not retried.
    assert_eq!(start_indexes(&server), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_caps_count_without_saying_so_is_still_read_whole() {
    let mut options = options();
    // It announces 200 but serves 30 at most, and says nothing about it.
    options.max_page = 30;
    let server = serve(200, options).await;
    let fetched = fetch(&config(&server, 200)).await;
    assert_complete(&fetched, 200);
    let mut starts = start_indexes(&server);
    starts.sort();
    assert_eq!(starts, [1, 31, 61, 91, 121, 151, 181]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_key_is_read_in_either_case() {
    for lowercase in [true, false] {
        let mut options = options();
        options.lowercase_resources = lowercase;
        let server = serve(25, options).await;
        assert_complete(&fetch(&config(&server, 10)).await, 25);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_served_as_plain_strings_are_read() {
    let server = serve(25, options()).await;
    server.faults().plain_string_emails = true;
    let fetched = fetch(&config(&server, 10)).await;
    assert_complete(&fetched, 25);
    let (account, raw) = &fetched.accounts[7];
    assert_eq!(account.emails.len(), 1);
    assert_eq!(account.emails[0].value, "user0007@testorg.example");
    assert!(
        raw.contains(r#""emails":["user0007@testorg.example"]"#),
        "{raw}"
    );
}

// --- Concurrency -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_fetch_gives_exactly_what_a_sequential_fetch_gives() {
    let mut options = options();
    options.latency = Duration::from_millis(50);
    let server = serve(1234, options).await;
    let mut sequential = config(&server, 50);
    sequential.concurrency = 1;
    let one = fetch(&sequential).await;
    assert_eq!(server.peak_in_flight(), 1);
    server.clear_request_log();

    let mut parallel = sequential.clone();
    parallel.concurrency = 6;
    let many = fetch(&parallel).await;
    assert_eq!(server.peak_in_flight(), 6, "six pages at once");
    assert_complete(&many, 1234);
    assert_eq!(ids(&one), ids(&many));
    let raw = |f: &Fetched| {
        f.accounts
            .iter()
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(raw(&one), raw(&many));
    assert_eq!(one.pages, many.pages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_page_falls_back_to_sequential_paging_from_the_gap() {
    let server = serve(100, options()).await;
    server
        .faults()
        .pages
        .push(PageFault::always(31, PageAction::Short(4)));
    let mut cfg = config(&server, 10);
    cfg.concurrency = 4;
    let fetched = fetch(&cfg).await;
    assert_complete(&fetched, 100);
    // Planned pages up to the gap, then 35 onwards one after the other.
    let starts = start_indexes(&server);
    let gap = starts
        .iter()
        .position(|s| *s == 35)
        .expect("a request at 35");
    assert_eq!(starts[gap..], [35, 45, 55, 65, 75, 85, 95], "{starts:?}");

    server.clear_request_log();
    cfg.concurrency = 1;
    let sequential = fetch(&cfg).await;
    assert_eq!(ids(&sequential), ids(&fetched));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_that_comes_right_on_a_second_ask_completes_the_snapshot() {
    let server = serve(100, options()).await;
    server
        .faults()
        .pages
        .push(PageFault::times(41, PageAction::Empty, 1));
    let mut cfg = config(&server, 10);
    cfg.concurrency = 4;
    let fetched = fetch(&cfg).await;
    assert_complete(&fetched, 100);
    assert_eq!(
        start_indexes(&server).iter().filter(|s| **s == 41).count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_429_fewer_pages_are_asked_for_at_once() {
    let mut options = options();
    options.latency = Duration::from_millis(60);
    let server = serve(400, options).await;
    let mut cfg = config(&server, 10);
    cfg.concurrency = 8;
    let fetched = fetch(&cfg).await;
    assert_complete(&fetched, 400);
    assert_eq!(server.peak_in_flight(), 8);

    server.clear_request_log();
    // The first request, /ServiceProviderConfig, is refused once.
    server.faults().rate_limit = Some(RateLimit {
        hint: RetryHint::RetryAfterSeconds(0),
        times: 1,
    });
    let fetched = fetch(&cfg).await;
    assert_complete(&fetched, 400);
    assert_eq!(server.peak_in_flight(), 4, "halved from 8 after the 429");
}

// --- Retries -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_waits_for_each_form_of_retry_hint_then_completes() {
    for hint in [
        RetryHint::RetryAfterSeconds(2),
        RetryHint::RetryAfterDate(2),
        RetryHint::XRetryAfter(2),
        RetryHint::XRateLimitReset(2),
    ] {
        let server = serve(30, options()).await;
        server.faults().rate_limit = Some(RateLimit { hint, times: 1 });
        let started = Instant::now();
        let fetched = fetch(&config(&server, 10)).await;
        let waited = started.elapsed();
        assert_complete(&fetched, 30);
        // Every form says "about two seconds from now"; dates and Unix times are whole
        // seconds, so the wait is at least one.
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{hint:?}: waited {waited:?}"
        );
        assert_eq!(server.faults().rate_limit.as_ref().unwrap().times, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_asking_for_an_hour_waits_only_the_configured_maximum() {
    let server = serve(30, options()).await;
    server.faults().rate_limit = Some(RateLimit {
        hint: RetryHint::RetryAfterSeconds(3600),
        times: 1,
    });
    let mut cfg = config(&server, 10);
    cfg.retry_max_wait_secs = 1;
    let started = Instant::now();
    let fetched = fetch(&cfg).await;
    assert_complete(&fetched, 30);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_that_never_ends_uses_up_the_retry_budget_and_is_incomplete() {
    let server = serve(30, options()).await;
    server.faults().rate_limit = Some(RateLimit {
        hint: RetryHint::RetryAfterSeconds(0),
        times: 1000,
    });
    let result = run(&server, 30, "").await;
    assert_incomplete(&result, &["429", "retry budget"]);
    // One request plus the two retries of the budget, then nothing more.
    assert_eq!(server.request_log().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_then_success_is_retried_and_completes() {
    let server = serve(50, options()).await;
    server
        .faults()
        .pages
        .push(PageFault::times(21, PageAction::Status(500), 2));
    let fetched = fetch(&config(&server, 10)).await;
    assert_complete(&fetched, 50);
    assert_eq!(
        start_indexes(&server).iter().filter(|s| **s == 21).count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_forever_is_incomplete_after_the_retry_budget() {
    let server = serve(50, options()).await;
    server
        .faults()
        .pages
        .push(PageFault::always(21, PageAction::Status(503)));
    let result = run(&server, 50, "page_size = 10").await;
    assert_incomplete(&result, &["startIndex 21", "HTTP 503", "retry budget"]);
    assert_eq!(
        start_indexes(&server).iter().filter(|s| **s == 21).count(),
        3
    );
    assert_read_only(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_is_shared_by_every_page_of_the_run() {
    let server = serve(50, options()).await;
    {
        let mut faults = server.faults();
        faults
            .pages
            .push(PageFault::times(11, PageAction::Status(502), 2));
        faults
            .pages
            .push(PageFault::times(31, PageAction::Status(502), 1));
    }
    // Two retries in all: the first page's two use them up, the other page finds none.
    let mut cfg = config(&server, 10);
    cfg.concurrency = 1;
    let fetched = fetch(&cfg).await;
    let reason = fetched.completeness.reason().expect("incomplete");
    assert!(reason.contains("startIndex 31"), "{reason}");
    assert!(reason.contains("gave up after 2 retries"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_not_retried_and_says_to_check_the_token() {
    let server = serve(5, options()).await;
    let mut cfg = config(&server, 10);
    cfg.max_retries = 5;
    let fetched = scim::fetch_all(&cfg, "not-the-token", false).await.unwrap();
    let reason = fetched.completeness.reason().expect("incomplete");
    assert!(reason.contains("HTTP 401"), "{reason}");
    assert!(reason.contains("check the token"), "{reason}");
    assert!(!reason.contains("not-the-token"), "{reason}");
    assert_eq!(server.request_log().len(), 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_says_to_check_the_url() {
    let server = serve(5, options()).await;
    let mut cfg = config(&server, 10);
    cfg.url = format!("http://{}/v2/scim", server.addr());
    let fetched = fetch(&cfg).await;
    let reason = fetched.completeness.reason().expect("incomplete");
    assert!(reason.contains("HTTP 404"), "{reason}");
    assert!(reason.contains("check the URL"), "{reason}");
}

// --- Bodies that do not read -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_body_once_is_retried_and_completes() {
    let server = serve(30, options()).await;
    server
        .faults()
        .pages
        .push(PageFault::times(11, PageAction::TruncatedJson, 1));
    assert_complete(&fetch(&config(&server, 10)).await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_body_every_time_is_incomplete() {
    let server = serve(30, options()).await;
    server
        .faults()
        .pages
        .push(PageFault::always(11, PageAction::TruncatedJson));
    let result = run(&server, 30, "page_size = 10").await;
    assert_incomplete(&result, &["startIndex 11", "not SCIM JSON"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_error_page_with_status_200_is_incomplete() {
    let server = serve(30, options()).await;
    server
        .faults()
        .pages
        .push(PageFault::always(21, PageAction::HtmlError));
    let result = run(&server, 30, "page_size = 10").await;
    assert_incomplete(&result, &["startIndex 21", "not SCIM JSON (text/html"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_page_past_the_timeout_is_incomplete() {
    let server = serve(30, options()).await;
    server.faults().pages.push(PageFault::always(
        11,
        PageAction::Delay(Duration::from_secs(3)),
    ));
    let result = run(
        &server,
        30,
        "page_size = 10\ntimeout_secs = 1\nmax_retries = 1",
    )
    .await;
    assert_incomplete(
        &result,
        &["startIndex 11", "timed out", "scim.timeout_secs"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_page_once_is_retried_and_completes() {
    let server = serve(30, options()).await;
    server.faults().pages.push(PageFault::times(
        11,
        PageAction::Delay(Duration::from_secs(3)),
        1,
    ));
    let mut cfg = config(&server, 10);
    cfg.timeout_secs = 1;
    assert_complete(&fetch(&cfg).await, 30);
}

// --- The completeness gate ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_before_total_results_is_incomplete_not_finished() {
    let server = serve(50, options()).await;
    server
        .faults()
        .pages
        .push(PageFault::always(21, PageAction::Empty));
    let result = run(&server, 50, "page_size = 10").await;
    assert_incomplete(&result, &["startIndex 21 was empty after 20 of 50 users"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_results_changing_once_restarts_the_fetch_and_completes() {
    let server = serve(50, options()).await;
    server.faults().change_after_next_page = Some(UserChange::RemoveAt(49));
    let fetched = fetch(&config(&server, 10)).await;
    assert_complete(&fetched, 49);
    let starts = start_indexes(&server);
    assert_eq!(starts.iter().filter(|s| **s == 1).count(), 2, "{starts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_results_changing_on_every_page_is_incomplete_after_the_restarts() {
    let server = serve(60, options()).await;
    server.faults().change_after_every_page = Some(UserChange::RemoveAt(0));
    let result = run(&server, 60, "page_size = 10\nmax_restarts = 2").await;
    assert_incomplete(
        &result,
        &[
            "totalResults changed",
            "after 2 restarts",
            "scim.max_restarts",
        ],
    );
    let starts = start_indexes(&server);
    assert_eq!(starts.iter().filter(|s| **s == 1).count(), 3, "{starts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_id_with_different_content_is_incomplete() {
    let server = serve(30, options()).await;
    server.faults().pages.push(PageFault::always(
        21,
        PageAction::Duplicate {
            index: 3,
            patch: Some(serde_json::json!({"active": false})),
        },
    ));
    let result = run(&server, 30, "page_size = 10").await;
    let id = &expected_ids(30)[3];
    assert_incomplete(
        &result,
        &[
            &format!("user id `{id}` was served twice with different content"),
            "startIndex 21",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_id_that_pushes_a_user_out_is_incomplete() {
    let server = serve(30, options()).await;
    // The same user again, unchanged, in place of another: 29 unique ids of 30.
    server.faults().pages.push(PageFault::always(
        21,
        PageAction::Duplicate {
            index: 3,
            patch: None,
        },
    ));
    let result = run(&server, 30, "page_size = 10").await;
    assert_incomplete(
        &result,
        &["29 unique user ids do not add up to totalResults 30"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_snapshot_reconciles_and_an_incomplete_one_is_never_diffed() {
    let server = serve(30, options()).await;
    let result = run(&server, 30, "page_size = 10").await;
    assert_eq!(result.exit, Some(0), "{}", result.stderr);
    assert_eq!(result.summary["status"], "complete");
    assert_eq!(result.summary["reason"], Value::Null);
    assert_eq!(result.summary["snapshot"]["accounts"], 30);
    assert_eq!(result.summary["findings"]["shadow"], 0);
    assert_eq!(result.summary["findings"]["terminated_active"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_refuses_an_incomplete_latest_snapshot_rather_than_an_older_complete_one() {
    let server = serve(30, options()).await;
    let tmp = tempfile::tempdir().unwrap();
    let people: Vec<(String, &str)> = (0..30)
        .map(|i| (format!("user{i:04}@testorg.example"), "ACTIVE"))
        .collect();
    let okta = write_okta(tmp.path(), &people);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let config = config.to_str().unwrap();
    let env = [("HUBREVIEW_SCIM_TOKEN", TOKEN)];

    let out = hubreview(tmp.path(), &["--config", config, "snapshot"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    server
        .faults()
        .pages
        .push(PageFault::always(1, PageAction::HtmlError));
    let out = hubreview(tmp.path(), &["--config", config, "snapshot"], &env).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));

    let out = hubreview(tmp.path(), &["--config", config, "reconcile"], &env).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("run 2: snapshot 2 is incomplete"),
        "{stderr}"
    );
    assert!(stderr.contains("never reconciled"), "{stderr}");
    assert!(
        !text(&out.stdout).contains("reconciled snapshot"),
        "no fallback to snapshot 1: {}",
        text(&out.stdout)
    );
}

// --- Safety ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_shows_in_logs_at_any_verbosity() {
    let secret = "scim-token-7d1e55b0-never-logged";
    let mut options = options();
    options.token = secret.into();
    let server = serve(30, options).await;
    server
        .faults()
        .pages
        .push(PageFault::times(11, PageAction::Status(500), 1));
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[("user0000@testorg.example".into(), "ACTIVE")]);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let out = hubreview(
        tmp.path(),
        &["-vv", "--config", config.to_str().unwrap(), "run"],
        &[
            ("HUBREVIEW_SCIM_TOKEN", secret),
            ("HUBREVIEW_SCIM_PAGE_SIZE", "10"),
            ("HUBREVIEW_LOG", "trace"),
        ],
    )
    .await;
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("retrying"),
        "the log ran at trace level: {all}"
    );
    assert!(!all.contains(secret), "the token leaked into the output");
    for entry in walk(tmp.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the token was written to {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_host_that_is_not_loopback_is_refused_before_anything_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[("a@testorg.example".into(), "ACTIVE")]);
    let config = write_config(
        tmp.path(),
        "http://scim.hubreview.invalid/v2/scim/2.0",
        &okta,
        "",
    );
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "run"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("plain http"), "{stderr}");
    assert!(stderr.contains("use https"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_that_is_not_pem_is_a_configuration_error_naming_the_file() {
    let server = serve(3, options()).await;
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let okta = write_okta(tmp.path(), &[("a@testorg.example".into(), "ACTIVE")]);
    let config = write_config(tmp.path(), &server.base_url(), &okta, "");
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "snapshot"],
        &[
            ("HUBREVIEW_SCIM_TOKEN", TOKEN),
            ("HUBREVIEW_SCIM_CA_FILE", ca.to_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("`scim.ca_file`"), "{stderr}");
    assert!(stderr.contains("ca.pem"), "{stderr}");
    assert!(stderr.contains("PEM"), "{stderr}");
    assert!(server.request_log().is_empty(), "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_proxy_variables_are_honoured() {
    // A proxy on 127.0.0.1 that records each CONNECT it is asked for and refuses it: the
    // SCIM host (under .invalid, which never resolves) can be reached only through it.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorded = seen.clone();
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = proxy.accept().await {
            let mut buffer = vec![0u8; 4096];
            let n = socket.read(&mut buffer).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..n]).into_owned();
            let first = request.lines().next().unwrap_or_default().to_owned();
            recorded.lock().unwrap().push(first);
            let _ = socket
                .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });

    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[("a@testorg.example".into(), "ACTIVE")]);
    let config = write_config(
        tmp.path(),
        "https://scim.hubreview.invalid/v2/scim/2.0",
        &okta,
        "",
    );
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "snapshot"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN), ("HTTPS_PROXY", &proxy_url)],
    )
    .await;
    task.abort();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("INCOMPLETE"),
        "{}",
        text(&out.stdout)
    );
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the proxy was not used");
    assert!(
        seen.iter()
            .all(|line| line.starts_with("CONNECT scim.hubreview.invalid:443 ")),
        "{seen:?}"
    );
}

// --- Interoperability with scim2-server ---------------------------------------------------

/// A `scim2-server` process on 127.0.0.1, killed when dropped.
struct Scim2Server {
    child: std::process::Child,
    base_url: String,
}

impl Drop for Scim2Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `scim2-server` (installed by `scripts/test`) with the Docker schemas and the
/// given service provider config, and waits until it answers.
async fn start_scim2_server(provider_config: &str) -> Scim2Server {
    let program = std::env::var("SCIM2_SERVER_BIN").unwrap_or_else(|_| {
        panic!(
            "SCIM2_SERVER_BIN is not set: run the tests with `scripts/test`, which installs \
             the pinned scim2-server into target/test-venv/ and sets it"
        )
    });
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/scim2-server");
    for attempt in 0..5 {
        // A free port: bound, read, released, then given to the server.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        let child = std::process::Command::new(&program)
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", TOKEN])
            .arg("--schema")
            .arg(format!("{fixtures}/schemas.json"))
            .arg("--resource-type")
            .arg(format!("{fixtures}/resource-types.json"))
            .arg("--service-provider-config")
            .arg(format!("{fixtures}/{provider_config}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{program}`: {e}; rerun `scripts/test`"));
        let mut server = Scim2Server {
            child,
            base_url: format!("http://127.0.0.1:{port}/v2"),
        };
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                break; // it exited: most likely the port was taken meanwhile
            }
            let answer = client
                .get(format!("{}/ServiceProviderConfig", server.base_url))
                .bearer_auth(TOKEN)
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = server.child.kill();
        eprintln!("scim2-server did not come up on port {port} (attempt {attempt})");
    }
    panic!("scim2-server did not start; run `{program} --help` to check the install");
}

/// The users posted to scim2-server: every attribute hubreview reads, varied.
fn interop_users(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let email = format!("person{i:04}@interop.example");
            let mut emails = vec![serde_json::json!({
                "value": email, "type": "work", "primary": true
            })];
            if i % 3 == 0 {
                emails.push(serde_json::json!({
                    "value": format!("p{i:04}@home.example"), "type": "home", "primary": false
                }));
            }
            let role = ["member", "editor", "owner"][i % 3];
            serde_json::json!({
                "schemas": [
                    "urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:docker:2.0:User"
                ],
                "userName": email,
                "externalId": format!("ext-{i:05}"),
                "name": {"givenName": format!("Given{i}"), "familyName": format!("Family{i}")},
                "displayName": format!("docker{i:04}"),
                "active": i % 7 != 0,
                "emails": emails,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                    "employeeNumber": format!("E{i:05}")
                },
                "urn:ietf:params:scim:schemas:extension:docker:2.0:User": {
                    "dockerRole": role,
                    "dockerTeam": format!("team-{}", i % 11),
                    "dockerOrg": "interop"
                }
            })
        })
        .collect()
}

/// Posts `users` through `/Bulk`, 500 at a time, and returns the id the server gave each
/// `userName`.
async fn seed(server: &Scim2Server, users: &[Value]) -> std::collections::HashMap<String, String> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut ids = std::collections::HashMap::new();
    for (chunk_index, chunk) in users.chunks(500).enumerate() {
        let operations: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, user)| {
                serde_json::json!({
                    "method": "POST",
                    "path": "/Users",
                    "bulkId": format!("{chunk_index}-{i}"),
                    "data": user
                })
            })
            .collect();
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": operations
        });
        let response: Value = client
            .post(format!("{}/Bulk", server.base_url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .expect("scim2-server answers /Bulk")
            .json()
            .await
            .expect("a BulkResponse");
        let results = response["Operations"].as_array().expect("Operations");
        assert_eq!(results.len(), chunk.len(), "{response}");
        for (user, result) in chunk.iter().zip(results) {
            assert_eq!(
                result["status"], "201",
                "scim2-server refused a user: {result}"
            );
            let location = result["location"].as_str().unwrap();
            let id = location.rsplit('/').next().unwrap().to_owned();
            ids.insert(user["userName"].as_str().unwrap().to_owned(), id);
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_scim2_server_holds_every_posted_user_with_every_field() {
    let server = start_scim2_server("service-provider-config.json").await;
    let posted = interop_users(1000);
    let ids = seed(&server, &posted).await;
    assert_eq!(ids.len(), 1000);

    let cfg = ScimConfig {
        url: server.base_url.clone(),
        max_retries: 2,
        retry_base_ms: 10,
        timeout_secs: 10,
        concurrency: 4,
        ..ScimConfig::default()
    };
    let fetched = fetch(&cfg).await;
    assert_eq!(
        fetched.completeness,
        Completeness::Complete,
        "{:?}",
        fetched.completeness.reason()
    );
    assert_eq!(fetched.total_results, Some(1000));
    assert_eq!(fetched.accounts.len(), 1000);
    let received: Vec<&str> = fetched
        .accounts
        .iter()
        .map(|(a, _)| a.id.as_str())
        .collect();
    let mut sorted = received.clone();
    sorted.sort();
    assert_eq!(received, sorted, "asked sortBy=id, and the server sorted");

    let by_user_name: std::collections::HashMap<&str, &hubreview::scim::Account> = fetched
        .accounts
        .iter()
        .map(|(a, _)| (a.user_name.as_deref().unwrap(), a))
        .collect();
    for user in &posted {
        let user_name = user["userName"].as_str().unwrap();
        let account = by_user_name
            .get(user_name)
            .unwrap_or_else(|| panic!("{user_name} missing from the snapshot"));
        let docker = &user["urn:ietf:params:scim:schemas:extension:docker:2.0:User"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        assert_eq!(account.id, ids[user_name]);
        assert_eq!(account.external_id, text(&user["externalId"]));
        assert_eq!(
            account.employee_number,
            text(
                &user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"]
            )
        );
        assert_eq!(account.display_name, text(&user["displayName"]));
        assert_eq!(account.given_name, text(&user["name"]["givenName"]));
        assert_eq!(account.family_name, text(&user["name"]["familyName"]));
        assert_eq!(account.active, user["active"].as_bool().unwrap());
        assert_eq!(account.role, text(&docker["dockerRole"]));
        assert_eq!(account.team, text(&docker["dockerTeam"]));
        assert_eq!(account.org, text(&docker["dockerOrg"]));
        let emails: Vec<(String, bool, Option<String>)> = user["emails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["value"].as_str().unwrap().to_owned(),
                    e["primary"].as_bool().unwrap(),
                    text(&e["type"]),
                )
            })
            .collect();
        let got: Vec<(String, bool, Option<String>)> = account
            .emails
            .iter()
            .map(|e| (e.value.clone(), e.primary, e.kind.clone()))
            .collect();
        assert_eq!(got, emails, "{user_name}");
        assert!(account.created.is_some(), "{user_name}: meta.created");
    }

    // The binary too, through the store: only GETs, a complete snapshot of 1,000.
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[("a@interop.example".into(), "ACTIVE")]);
    let config = write_config(tmp.path(), &server.base_url, &okta, "");
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "snapshot"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("complete, 1000 accounts"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_server_without_sort_is_paged_without_sort_and_not_refused() {
    let server = start_scim2_server("service-provider-config-no-sort.json").await;
    // This server answers 501 to a sortBy: the fetch must not send one.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let refused = client
        .get(format!("{}/Users?sortBy=id", server.base_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 501);

    seed(&server, &interop_users(450)).await;
    let cfg = ScimConfig {
        url: server.base_url.clone(),
        page_size: 100,
        max_retries: 0,
        ..ScimConfig::default()
    };
    let fetched = fetch(&cfg).await;
    assert_eq!(
        fetched.completeness,
        Completeness::Complete,
        "{:?}",
        fetched.completeness.reason()
    );
    assert_eq!(fetched.accounts.len(), 450);
    assert_eq!(fetched.pages, 5);
}

// --- Transport: resets and TLS -----------------------------------------------------------

/// A front on 127.0.0.1 that forwards each connection to `target`, after closing the
/// first `resets` connections unanswered, and terminating TLS when given an acceptor.
async fn front(
    target: std::net::SocketAddr,
    resets: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut left = resets;
        while let Ok((socket, _)) = listener.accept().await {
            if left > 0 {
                left -= 1;
                // Closed before any answer, as a load balancer dropping a connection.
                drop(socket);
                continue;
            }
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                match tls {
                    Some(acceptor) => {
                        if let Ok(mut stream) = acceptor.accept(socket).await {
                            let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                        }
                    }
                    None => {
                        let mut socket = socket;
                        let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_is_retried_and_completes() {
    let server = serve(30, options()).await;
    let addr = front(server.addr(), 2, None).await;
    let mut cfg = config(&server, 10);
    cfg.url = format!("http://{addr}{}", demo::BASE_PATH);
    cfg.concurrency = 1;
    let fetched = fetch(&cfg).await;
    assert_complete(&fetched, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_past_the_retry_budget_are_incomplete() {
    let server = serve(30, options()).await;
    let addr = front(server.addr(), 100, None).await;
    let mut cfg = config(&server, 10);
    cfg.url = format!("http://{addr}{}", demo::BASE_PATH);
    let fetched = fetch(&cfg).await;
    let reason = fetched.completeness.reason().expect("incomplete");
    assert!(reason.contains("ServiceProviderConfig"), "{reason}");
    assert!(reason.contains("retry budget"), "{reason}");
    assert!(server.request_log().is_empty());
}

/// A private CA, and a certificate it signed for 127.0.0.1, as a TLS acceptor.
fn private_ca() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hubreview test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();

    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let server_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (
        ca_cert.pem(),
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server_config)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_and_a_private_ca_is_trusted_only_when_configured() {
    let server = serve(30, options()).await;
    let (ca_pem, acceptor) = private_ca();
    let addr = front(server.addr(), 0, Some(acceptor)).await;
    let mut cfg = config(&server, 10);
    cfg.url = format!("https://{addr}{}", demo::BASE_PATH);

    // Without the CA the certificate is refused, and nothing reaches the server.
    let fetched = fetch(&cfg).await;
    let reason = fetched.completeness.reason().expect("incomplete");
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    assert!(
        server.request_log().is_empty(),
        "{:?}",
        server.request_log()
    );

    let tmp = tempfile::tempdir().unwrap();
    let ca_file = tmp.path().join("private-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    cfg.ca_file = Some(ca_file);
    let fetched = fetch(&cfg).await;
    assert_complete(&fetched, 30);
}

// --- Hostile servers: answers the fake server cannot give -------------------------------

/// What a scripted server answers: status, content type and body.
type Answer = (u16, &'static str, Vec<u8>);

/// A server on 127.0.0.1 that answers each request with `answer(path_and_query)` and
/// records the paths it was asked for. Returns its SCIM base URL and the record.
async fn scripted(
    answer: impl Fn(&str) -> Answer + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (answer, record) = (std::sync::Arc::new(answer), asked.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (answer, record) = (answer.clone(), record.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                record.lock().unwrap().push(path.clone());
                let (status, content_type, body) = answer(&path);
                let mut response = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-type: {content_type}\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                response.extend_from_slice(&body);
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (format!("http://{addr}{}", demo::BASE_PATH), asked)
}

/// A ListResponse of `users(n)[from..to]` with `totalResults` written as `total`.
fn list_body(n: usize, from: usize, to: usize, total: &str) -> Vec<u8> {
    let resources = serde_json::to_string(&users(n)[from..to.min(n)]).unwrap();
    format!(
        r#"{{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": {total}, "Resources": {resources}}}"#
    )
    .into_bytes()
}

/// The 1-based `startIndex` of a list request, 1 when missing.
fn start_of(path: &str) -> usize {
    path.split(['?', '&'])
        .find_map(|p| p.strip_prefix("startIndex="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn scripted_config(url: &str, page_size: u32) -> ScimConfig {
    ScimConfig {
        url: url.to_owned(),
        page_size,
        max_retries: 2,
        retry_base_ms: 10,
        timeout_secs: 5,
        retry_max_wait_secs: 5,
        ..ScimConfig::default()
    }
}

const NOT_FOUND: fn() -> Answer = || (404, "application/scim+json", b"{}".to_vec());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_echoing_the_token_and_ansi_escapes_leaks_neither_anywhere() {
    let detail = format!("token Bearer {TOKEN} refused\u{1b}[2J\u{1b}[31m\r\nERROR forged");
    let body = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "400",
        "detail": detail,
    })
    .to_string()
    .into_bytes();
    let (url, _) = scripted(move |path| {
        if path.contains("/Users") {
            (400, "application/scim+json", body.clone())
        } else {
            NOT_FOUND()
        }
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[("user0000@testorg.example".into(), "ACTIVE")]);
    let config = write_config(tmp.path(), &url, &okta, "");
    let out = hubreview(
        tmp.path(),
        &["-vv", "--config", config.to_str().unwrap(), "run"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN), ("HUBREVIEW_LOG", "trace")],
    )
    .await;
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains("[redacted] refused"),
        "the detail is shown: {all}"
    );
    assert!(
        !all.contains(TOKEN),
        "the token leaked into the output: {all}"
    );
    assert!(
        !all.contains('\u{1b}'),
        "an escape reached the terminal: {all:?}"
    );
    assert!(
        !all.contains("\nERROR forged"),
        "a log line was forged: {all}"
    );
    let files = walk(tmp.path());
    assert!(files.iter().any(|f| f.ends_with("summary.json")));
    for entry in files {
        let bytes = std::fs::read(&entry).unwrap();
        let leaked = bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes());
        assert!(!leaked, "the token was written to {}", entry.display());
        if bytes.starts_with(b"SQLite format 3\0") {
            // A database's pages hold any byte as numbers; what must hold no escape is the
            // text it stores.
            for (table, value) in store_texts(&entry) {
                assert!(
                    !value.contains('\u{1b}'),
                    "an escape was stored in {table} of {}: {value:?}",
                    entry.display()
                );
            }
        } else if entry
            .extension()
            .is_some_and(|e| e != "db-wal" && e != "db-shm")
        {
            assert!(
                !bytes.contains(&0x1b),
                "an escape was written to {}",
                entry.display()
            );
        }
    }
}

/// Every text value of every table of the SQLite database at `path`, with its table.
fn store_texts(path: &std::path::Path) -> Vec<(String, String)> {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for table in tables {
        let mut stmt = db.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                if let Ok(rusqlite::types::ValueRef::Text(t)) = row.get_ref(i) {
                    out.push((table.clone(), String::from_utf8_lossy(t).into_owned()));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_start_index_with_a_huge_total_ends_incomplete_at_once() {
    for concurrency in [1, 4] {
        let (url, asked) = scripted(|path| {
            if path.contains("/Users") {
                (
                    200,
                    "application/scim+json",
                    list_body(10, 0, 10, "1000000000000"),
                )
            } else {
                NOT_FOUND()
            }
        })
        .await;
        let mut cfg = scripted_config(&url, 10);
        cfg.concurrency = concurrency;
        let fetched = tokio::time::timeout(Duration::from_secs(30), fetch(&cfg))
            .await
            .expect("the fetch ends");
        let reason = fetched.completeness.reason().expect("incomplete");
        assert!(
            reason.contains("startIndex 11 brought no new user"),
            "{reason}"
        );
        assert!(reason.contains("10 of 1000000000000 users"), "{reason}");
        assert!(
            asked.lock().unwrap().len() < 40,
            "{:?}",
            asked.lock().unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_results_of_5_point_0_reads_as_5_and_minus_1_is_refused() {
    for (total, want) in [
        ("5.0", Ok(5)),
        ("-1", Err("totalResults is -1")),
        ("2.5", Err("2.5")),
    ] {
        let (url, _) = scripted(move |path| {
            if path.contains("/Users") {
                let start = start_of(path);
                (
                    200,
                    "application/scim+json",
                    list_body(5, start - 1, start + 1, total),
                )
            } else {
                NOT_FOUND()
            }
        })
        .await;
        let fetched = fetch(&scripted_config(&url, 2)).await;
        match want {
            Ok(n) => assert_complete(&fetched, n),
            Err(needle) => {
                let reason = fetched.completeness.reason().expect("incomplete");
                assert!(reason.contains(needle), "{total}: {reason}");
                assert!(reason.contains("startIndex 1"), "{total}: {reason}");
                assert!(reason.contains("not a count of users"), "{total}: {reason}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_utf8_is_refused_naming_the_page_never_read_lossily() {
    let (url, asked) = scripted(|path| {
        if path.contains("/Users") {
            let start = start_of(path);
            let mut body = list_body(4, start - 1, start + 1, "4");
            if start == 3 {
                // "Ren\xe9" in Latin-1, as a misconfigured server might send it.
                let at = body.windows(4).position(|w| w == b"Test").unwrap();
                body.splice(at..at + 4, b"Ren\xe9".iter().copied());
            }
            (200, "application/scim+json", body)
        } else {
            NOT_FOUND()
        }
    })
    .await;
    let fetched = fetch(&scripted_config(&url, 2)).await;
    let reason = fetched.completeness.reason().expect("incomplete");
    assert!(reason.contains("page at startIndex 3"), "{reason}");
    assert!(reason.contains("not UTF-8"), "{reason}");
    let asked = asked.lock().unwrap();
    assert_eq!(
        asked
            .iter()
            .filter(|p| start_of(p) == 3 && p.contains("/Users"))
            .count(),
        1,
        "not retried: {asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scim_url_with_a_user_and_password_is_refused_at_configuration() {
    let (url, asked) = scripted(|_| NOT_FOUND()).await;
    let with_userinfo = url.replace("http://", "http://reviewer:hunter2-secret@");
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[("user0000@testorg.example".into(), "ACTIVE")]);
    let config = write_config(tmp.path(), &with_userinfo, &okta, "");
    for command in ["run", "doctor"] {
        let out = hubreview(
            tmp.path(),
            &["--config", config.to_str().unwrap(), command],
            &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
        )
        .await;
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{command}: {all}");
        assert!(all.contains("`scim.url`"), "{command}: {all}");
        assert!(all.contains("user name or password"), "{command}: {all}");
        assert!(!all.contains("hunter2"), "{command}: {all}");
    }
    assert!(asked.lock().unwrap().is_empty(), "nothing is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_u64_max_waits_only_the_configured_maximum() {
    let server = serve(30, options()).await;
    server.faults().rate_limit = Some(RateLimit {
        hint: RetryHint::RetryAfterSeconds(u64::MAX),
        times: 1,
    });
    let mut cfg = config(&server, 10);
    cfg.retry_max_wait_secs = 1;
    let started = Instant::now();
    let fetched = fetch(&cfg).await;
    assert_complete(&fetched, 30);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_sends_new_users_without_end_is_stopped_by_the_deadline() {
    // Every page brings users never seen before, under a totalResults no fetch reaches.
    let (url, _) = scripted(|path| {
        if path.contains("/Users") {
            std::thread::sleep(Duration::from_millis(20));
            let start = start_of(path);
            let page: Vec<Value> = (start..start + 10)
                .map(|i| {
                    user(
                        &format!("u{i}"),
                        &format!("u{i}@testorg.example"),
                        true,
                        "member",
                    )
                })
                .collect();
            let body = serde_json::json!({"totalResults": 1_000_000_000_000u64, "Resources": page});
            (200, "application/scim+json", body.to_string().into_bytes())
        } else {
            NOT_FOUND()
        }
    })
    .await;
    let mut cfg = scripted_config(&url, 10);
    cfg.deadline_secs = 2;
    let started = Instant::now();
    let fetched = fetch(&cfg).await;
    let reason = fetched.completeness.reason().expect("incomplete");
    assert!(reason.contains("`scim.deadline_secs` (2 s)"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}
