//! The Hub step: members and invites read through the Docker Hub API under every fault the
//! fake Hub server throws, the two CSV exports, and whole runs whose idle seats, members
//! SCIM does not know and pending invites come from the Hub.
//!
//! A fault the client can ride out (a rate limit, a 500, a cut body) must end in a complete
//! listing; one that loses members must end in an incomplete listing with its reason, and
//! the kinds that need it "not evaluated", never 0.

use std::path::Path;
use std::time::{Duration, Instant};

use hubreview::activity::{self, Seen};
use hubreview::config::{HubConfig, ScimConfig};
use hubreview::demo::hub_api::{self, HubOptions, HubServer};
use hubreview::hub::{self, HubFetched};
use serde_json::{Value, json};

use crate::common::*;

const HUB_USER: &str = "review-bot";
const HUB_TOKEN: &str = "dckr_pat_test-hub-token-never-real";

fn options() -> HubOptions {
    HubOptions {
        org: "testorg".into(),
        username: HUB_USER.into(),
        token: HUB_TOKEN.into(),
    }
}

/// `n` members `member000..`, signed in on 2026-11-01.
fn members(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "username": format!("member{i:03}"),
                "email": format!("member{i:03}@testorg.example"),
                "full_name": format!("Member {i}"),
                "role": "Member",
                "groups": ["platform"],
                "is_guest": false,
                "date_joined": "2024-01-01T00:00:00.123456Z",
                "last_logged_in_at": "2026-11-01T10:00:00Z",
                "last_seen_at": null,
            })
        })
        .collect()
}

fn invite(id: &str, invitee: &str, created_at: &str) -> Value {
    json!({
        "id": id, "inviter_username": "owner1", "invitee": invitee, "org": "testorg",
        "team": "platform", "role": "member", "created_at": created_at
    })
}

async fn serve(members: Vec<Value>, invites: Vec<Value>) -> HubServer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    hub_api::start(members, invites, options())
        .await
        .expect("the fake Hub API starts on 127.0.0.1")
}

fn config(server: &HubServer) -> (HubConfig, ScimConfig) {
    (
        HubConfig {
            url: server.origin(),
            org: Some("testorg".into()),
            username: Some(HUB_USER.into()),
            page_size: 10,
        },
        ScimConfig {
            max_retries: 3,
            retry_base_ms: 10,
            timeout_secs: 5,
            retry_max_wait_secs: 5,
            ..ScimConfig::default()
        },
    )
}

async fn fetch(server: &HubServer) -> HubFetched {
    let (hub, scim) = config(server);
    hub::fetch(&hub, &scim, HUB_TOKEN)
        .await
        .expect("the configuration is valid")
}

fn usernames(fetched: &HubFetched) -> Vec<String> {
    fetched
        .members
        .items
        .iter()
        .filter_map(|(m, _)| m.username.clone())
        .collect()
}

fn expected_usernames(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("member{i:03}")).collect()
}

fn reason(fetched: &HubFetched) -> String {
    fetched
        .members
        .completeness
        .reason()
        .expect("the members listing is incomplete")
        .to_owned()
}

/// Only the sign-in was a POST; every GET carried the bearer the sign-in gave, and the
/// access token went only in the sign-in's body.
fn assert_token_hygiene(server: &HubServer) {
    let log = server.request_log();
    assert!(!log.is_empty());
    for request in &log {
        if request.method == "POST" {
            assert_eq!(request.path_and_query, "/v2/auth/token");
            let body: Value = serde_json::from_str(&request.body).unwrap();
            assert_eq!(body["identifier"], HUB_USER);
            assert_eq!(body["secret"], HUB_TOKEN);
            assert_eq!(request.authorization, None, "no header at sign-in");
        } else {
            assert_eq!(request.method, "GET", "{request:?}");
            assert_eq!(
                request.authorization.as_deref(),
                Some(format!("Bearer {}", server.bearer()).as_str())
            );
        }
        assert!(!request.path_and_query.contains(HUB_TOKEN), "{request:?}");
    }
}

// --- Reading the API ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_members_and_the_invites_are_read_with_a_bearer_from_the_sign_in() {
    let invites = vec![invite("i1", "new@testorg.example", "2026-11-01T00:00:00Z")];
    let server = serve(members(45), invites).await;
    let fetched = fetch(&server).await;

    assert!(fetched.members.completeness.is_complete(), "{fetched:?}");
    assert_eq!(usernames(&fetched), expected_usernames(45));
    assert_eq!(fetched.members.count, Some(45));
    assert_eq!(fetched.members.pages, 5);
    assert!(fetched.invites.completeness.is_complete());
    assert_eq!(fetched.invites.items.len(), 1);
    assert_eq!(fetched.org, "testorg");

    let paths: Vec<String> = server
        .request_log()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path_and_query))
        .collect();
    assert_eq!(paths[0], "POST /v2/auth/token");
    assert_eq!(paths[1], "GET /v2/orgs/testorg/members?page=1&page_size=10");
    assert_eq!(paths[5], "GET /v2/orgs/testorg/members?page=5&page_size=10");
    assert_eq!(paths[6], "GET /v2/orgs/testorg/invites");
    assert_eq!(paths.len(), 7);
    assert_token_hygiene(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_waited_out_for_as_long_as_retry_after_asks() {
    let server = serve(members(25), Vec::new()).await;
    {
        let mut faults = server.faults();
        faults.rate_limited = 1;
        faults.retry_after = Some("1".into());
    }
    let started = Instant::now();
    let fetched = fetch(&server).await;
    assert!(fetched.members.completeness.is_complete(), "{fetched:?}");
    assert_eq!(usernames(&fetched), expected_usernames(25));
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_within_the_retry_budget_are_ridden_out_and_beyond_it_fail_closed() {
    let server = serve(members(25), Vec::new()).await;
    server.faults().server_errors = 2;
    let fetched = fetch(&server).await;
    assert!(fetched.members.completeness.is_complete(), "{fetched:?}");
    assert_eq!(usernames(&fetched), expected_usernames(25));

    server.faults().server_errors = 100;
    let fetched = fetch(&server).await;
    let reason = reason(&fetched);
    assert!(reason.contains("page 1 failed"), "{reason}");
    assert!(reason.contains("gave up after 3 retries"), "{reason}");
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert!(!fetched.invites.completeness.is_complete());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_cut_once_is_fetched_again_and_a_page_always_cut_is_incomplete() {
    let server = serve(members(25), Vec::new()).await;
    server.faults().cut_page = Some((2, 1));
    let fetched = fetch(&server).await;
    assert!(fetched.members.completeness.is_complete(), "{fetched:?}");
    assert_eq!(usernames(&fetched), expected_usernames(25));

    server.faults().cut_page = Some((2, u32::MAX));
    let fetched = fetch(&server).await;
    let reason = reason(&fetched);
    assert!(reason.contains("page 2 failed"), "{reason}");
    assert!(reason.contains("not JSON"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_short_of_a_member_does_not_add_up_to_the_count() {
    let server = serve(members(25), Vec::new()).await;
    server.faults().short_page = Some(2);
    let fetched = fetch(&server).await;
    let reason = reason(&fetched);
    assert!(
        reason.contains("24 unique members do not add up to the count 25"),
        "{reason}"
    );
}

// Regression: a full page with neither `count` nor `next` was taken as the whole list, and
// the members after it (leavers among them) were cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_last_page_without_a_count_is_not_taken_as_the_end() {
    let server = serve(members(25), Vec::new()).await;
    server.faults().ends_without_count = Some(1);
    let fetched = fetch(&server).await;
    let reason = reason(&fetched);
    assert!(
        reason.contains("gives no count and no next page"),
        "{reason}"
    );
    // A short last page without a count is an ordinary end.
    let server = serve(members(5), Vec::new()).await;
    server.faults().ends_without_count = Some(1);
    let fetched = fetch(&server).await;
    assert_eq!(usernames(&fetched), expected_usernames(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_to_another_origin_is_not_followed_and_the_token_goes_nowhere_else() {
    let server = serve(members(25), Vec::new()).await;
    // Another server on another port: another origin. It must never hear from us.
    let elsewhere = serve(members(25), Vec::new()).await;
    server.faults().foreign_next = Some(elsewhere.origin());
    let fetched = fetch(&server).await;
    let reason = reason(&fetched);
    assert!(reason.contains("another origin"), "{reason}");
    assert!(reason.contains(&elsewhere.origin()), "{reason}");
    assert!(
        elsewhere.request_log().is_empty(),
        "the other origin was contacted: {:?}",
        elsewhere.request_log()
    );
    assert_token_hygiene(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_array_is_read_page_by_page_until_an_empty_page() {
    let server = serve(members(25), Vec::new()).await;
    server.faults().bare_array = true;
    let fetched = fetch(&server).await;
    assert!(fetched.members.completeness.is_complete(), "{fetched:?}");
    assert_eq!(usernames(&fetched), expected_usernames(25));
    assert_eq!(fetched.members.count, None);
    // 10, 10 and 5, then an empty page: a short page may be a server's silent cap.
    assert_eq!(fetched.members.pages, 4);

    server.set_members(members(20));
    let fetched = fetch(&server).await;
    assert!(fetched.members.completeness.is_complete(), "{fetched:?}");
    assert_eq!(usernames(&fetched), expected_usernames(20));

    // A server that ignores `page` serves its whole list on every page: read once.
    server.faults().unpaged = true;
    let fetched = fetch(&server).await;
    assert!(fetched.members.completeness.is_complete(), "{fetched:?}");
    assert_eq!(usernames(&fetched), expected_usernames(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_stop_at_the_sign_in_and_say_what_to_check_without_the_token() {
    let server = serve(members(5), Vec::new()).await;
    let (hub, scim) = config(&server);
    let fetched = hub::fetch(&hub, &scim, "dckr_pat_wrong-token-value")
        .await
        .unwrap();
    let reason = reason(&fetched);
    assert!(reason.contains("signing in"), "{reason}");
    assert!(reason.contains("HTTP 401"), "{reason}");
    assert!(reason.contains("hub.username"), "{reason}");
    assert!(!reason.contains("wrong-token-value"), "{reason}");
    assert!(!fetched.invites.completeness.is_complete());
    let log = server.request_log();
    assert_eq!(log.len(), 1, "nothing after a refused sign-in: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_invites_leave_the_members_complete() {
    let server = serve(members(5), Vec::new()).await;
    server.faults().invites_status = Some(403);
    let fetched = fetch(&server).await;
    assert!(fetched.members.completeness.is_complete());
    let reason = fetched.invites.completeness.reason().unwrap();
    assert!(reason.contains("HTTP 403"), "{reason}");
    assert!(reason.contains("member read access"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_organization_is_a_404_naming_hub_org() {
    let server = serve(members(5), Vec::new()).await;
    let (mut hub, scim) = config(&server);
    hub.org = Some("otherorg".into());
    let fetched = hub::fetch(&hub, &scim, HUB_TOKEN).await.unwrap();
    let reason = reason(&fetched);
    assert!(reason.contains("HTTP 404"), "{reason}");
    assert!(reason.contains("`hub.org`"), "{reason}");
}

// --- The CSV exports ---------------------------------------------------------------------

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hub")
        .join(name)
}

fn at(text: &str) -> Seen {
    Seen::At(
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&chrono::Utc),
    )
}

#[test]
fn the_members_export_reads_every_column_and_knows_no_activity() {
    let export = activity::read(&fixture("members-export.csv"), "members").unwrap();
    let m = &export.members;
    assert_eq!(m.len(), 4);
    assert_eq!(m[0].name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(m[0].permission.as_deref(), Some("owner"));
    assert_eq!(m[0].teams.as_deref(), Some("platform, security"));
    assert_eq!(
        m[0].date_joined.unwrap().to_rfc3339(),
        "2020-01-01T15:00:51.193355+00:00"
    );
    assert_eq!(
        m[1].date_joined.unwrap().to_rfc3339(),
        "2021-06-30T08:04:00+00:00"
    );
    assert!(m[2].is_guest());
    assert_eq!(
        m[2].date_joined.unwrap().to_rfc3339(),
        "2024-02-29T21:59:59.500+00:00"
    );
    assert_eq!(m[3].kind.as_deref(), Some("invitee"));
    assert_eq!(m[3].username, None);
    for member in m {
        assert_eq!(member.last_activity().0, Seen::Unknown, "{member:?}");
    }
    // The members export holds no activity: reading it as Insights is refused.
    let err = activity::read(&fixture("members-export.csv"), "insights")
        .unwrap_err()
        .to_string();
    assert!(err.contains("activity.format"), "{err}");
}

#[test]
fn the_insights_export_reads_activity_with_and_without_fractions_and_offsets() {
    let export = activity::read(&fixture("insights-export.csv"), "insights").unwrap();
    let m = &export.members;
    assert_eq!(m.len(), 4);
    assert_eq!(m[0].last_logged_in, at("2026-11-29T07:12:00.000001Z"));
    assert_eq!(m[0].last_seen, at("2026-11-28T18:00:00Z"));
    assert_eq!(m[0].desktop_version.as_deref(), Some("4.49.0"));
    assert_eq!(m[0].last_activity().1, "Last Logged-In Date");
    // `-0100 UTC`: the offset counts, the trailing zone name does not.
    assert_eq!(m[1].last_seen, at("2026-03-05T00:30:00Z"));
    assert_eq!(
        m[1].last_activity(),
        (at("2026-03-05T00:30:00Z"), "Last Seen Date")
    );
    // Empty cells: never signed in.
    assert_eq!(m[2].last_activity().0, Seen::Never);
    assert!(m[2].is_guest());
    // RFC 3339 join date; sign-in with no Desktop use.
    assert_eq!(
        m[3].date_joined.unwrap().to_rfc3339(),
        "2026-11-01T09:00:00+00:00"
    );
    assert_eq!(m[3].last_seen, Seen::Never);
    assert_eq!(m[3].last_activity().0, at("2026-11-30T00:00:00Z"));
}

// --- Whole runs --------------------------------------------------------------------------

/// SCIM users 0..3, a Hub organization with those three and a guest only in Hub, and two
/// invites: a year old and a day old.
fn hub_members() -> Vec<Value> {
    let member = |i: usize, last: Value, joined: &str| {
        json!({
            "username": format!("user{i:04}"),
            "email": format!("user{i:04}@testorg.example"),
            "role": "Member", "is_guest": false, "groups": [],
            "date_joined": joined,
            "last_logged_in_at": last,
            "last_seen_at": null,
        })
    };
    vec![
        member(0, json!("2026-11-20T08:00:00Z"), "2024-01-01T00:00:00Z"),
        // 90 whole days before the review date: not idle.
        member(1, json!("2026-09-01T23:00:00.5Z"), "2024-01-01T00:00:00Z"),
        // Never signed in, joined long ago: idle.
        member(2, Value::Null, "2020-01-01T00:00:00Z"),
        json!({
            "username": "kitcontractor", "email": "kit@partner.example", "role": "Member",
            "is_guest": true, "groups": [], "date_joined": "2025-06-01T00:00:00Z",
            "last_logged_in_at": "2026-11-28T00:00:00Z", "last_seen_at": null
        }),
    ]
}

fn hub_invites() -> Vec<Value> {
    vec![
        invite(
            "inv-old",
            "late@testorg.example",
            "2025-11-30T09:00:00.000000Z",
        ),
        invite("inv-new", "fresh@testorg.example", "2026-11-29T09:00:00Z"),
    ]
}

/// The fake SCIM server with `n` users, for runs that read the Hub too.
async fn scim_server(n: usize) -> hubreview::demo::ScimServer {
    hubreview::demo::start(
        users(n),
        hubreview::demo::ServerOptions {
            token: TOKEN.into(),
            ..hubreview::demo::ServerOptions::default()
        },
    )
    .await
    .unwrap()
}

struct HubRun {
    exit: Option<i32>,
    stdout: String,
    stderr: String,
    summary: Value,
    findings_csv: String,
    html: String,
}

async fn run_with_hub(server: &HubServer, scim_users: usize, hub_token: &str) -> HubRun {
    let tmp = tempfile::tempdir().unwrap();
    let scim = scim_server(scim_users).await;
    let people: Vec<(String, &str)> = (0..scim_users)
        .map(|i| (format!("user{i:04}@testorg.example"), "ACTIVE"))
        .collect();
    let okta = write_okta(tmp.path(), &people);
    let hub_section = format!(
        "[hub]\nurl = \"{}\"\norg = \"testorg\"\nusername = \"{HUB_USER}\"\n\n\
         [review]\nseat_price = 10.0\nseats_purchased = 10\n",
        server.origin()
    );
    let config = write_config(tmp.path(), &scim.base_url(), &okta, &hub_section);
    let out = hubreview(
        tmp.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--as-of",
            "2026-11-30",
        ],
        &[
            ("HUBREVIEW_SCIM_TOKEN", TOKEN),
            ("HUBREVIEW_HUB_TOKEN", hub_token),
        ],
    )
    .await;
    let dirs = report_dirs(&tmp.path().join("reports"));
    assert_eq!(dirs.len(), 1, "one report directory: {}", text(&out.stderr));
    HubRun {
        exit: out.status.code(),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
        summary: read_json(&dirs[0].join("summary.json")),
        findings_csv: std::fs::read_to_string(dirs[0].join("findings.csv")).unwrap_or_default(),
        html: std::fs::read_to_string(dirs[0].join("report.html")).unwrap_or_default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_finds_idle_seats_hub_only_guests_and_year_old_invites_from_the_hub() {
    let server = serve(hub_members(), hub_invites()).await;
    let run = run_with_hub(&server, 3, HUB_TOKEN).await;
    assert_eq!(run.exit, Some(0), "{}\n{}", run.stdout, run.stderr);
    let findings = &run.summary["findings"];
    assert_eq!(findings["idle_seat"], 1, "{findings}");
    assert_eq!(findings["not_provisioned"], 1, "{findings}");
    assert_eq!(findings["pending_invite"], 1, "{findings}");
    let seats = &run.summary["seats"];
    assert_eq!(seats["in_use"], 6, "4 members and 2 invites: {seats}");
    assert_eq!(seats["reclaimable"]["pending_invite"], 1);
    assert_eq!(seats["reclaimable"]["idle_seat"], 1);
    assert_eq!(seats["monthly_saving"], 20.0);
    // The Hub read is evidence in summary.json and the report's header.
    let hub = &run.summary["hub"];
    assert_eq!(hub["org"], "testorg", "{hub}");
    assert_eq!(hub["members"]["status"], "complete", "{hub}");
    assert_eq!(hub["members"]["received"], 4, "{hub}");
    assert_eq!(hub["invites"]["received"], 2, "{hub}");
    assert!(
        run.html.contains("<dt>Docker Hub API</dt>"),
        "the header names it"
    );
    assert!(
        run.html
            .contains("none: members and activity from the Docker Hub API above"),
        "the activity line does not read as no activity at all"
    );

    let csv = &run.findings_csv;
    assert!(csv.contains("pending_invite:inv-old"), "{csv}");
    assert!(
        !csv.contains("inv-new"),
        "a day-old invite is not pending: {csv}"
    );
    assert!(csv.contains("never signed in"), "{csv}");
    assert!(
        csv.contains("decided_by=date_joined (Hub members API)"),
        "{csv}"
    );
    assert!(csv.contains("not_provisioned:kitcontractor"), "{csv}");
    assert!(csv.contains("a guest member"), "{csv}");
    assert!(
        !csv.contains("idle_seat:00000000-0000-4000-8000-000000000001"),
        "{csv}"
    );
    assert!(!run.stderr.contains(HUB_TOKEN) && !run.stdout.contains(HUB_TOKEN));
    assert!(!run.stderr.contains(&server.bearer()));
    assert_token_hygiene(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_hub_read_leaves_its_kinds_not_evaluated_and_the_report_says_why() {
    let server = serve(hub_members(), hub_invites()).await;
    server.faults().server_errors = 1000;
    let run = run_with_hub(&server, 3, HUB_TOKEN).await;
    // SCIM was complete: the run completes, without the kinds the Hub would decide.
    assert_eq!(run.exit, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.summary["status"], "complete");
    for kind in ["idle_seat", "not_provisioned", "pending_invite"] {
        assert_eq!(run.summary["findings"][kind], Value::Null, "{kind}");
        let why = run.summary["not_evaluated"][kind].as_str().unwrap();
        assert!(why.contains("testorg"), "{why}");
        assert!(why.contains("HTTP 500"), "{why}");
    }
    assert_eq!(run.summary["findings"]["shadow"], 0);
    assert!(
        run.html.contains("Docker Hub members list of"),
        "the report says why"
    );
    assert_eq!(run.summary["hub"]["members"]["status"], "incomplete");
    assert!(
        run.summary["hub"]["members"]["reason"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );
}

// Regression: a leaver still a member without an active SCIM account was found from the
// members list; when a later run could not read that list, terminated_active read "0"
// (checked, no findings), `--fail-on terminated_active` exited 0, and history marked the
// leaver resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_members_read_leaves_leavers_checked_in_part_never_clear_or_resolved() {
    let server = serve(hub_members(), hub_invites()).await;
    let scim = scim_server(3).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut people: Vec<(String, &str)> = (0..3)
        .map(|i| (format!("user{i:04}@testorg.example"), "ACTIVE"))
        .collect();
    // The guest member `kitcontractor` has no SCIM account, and has left.
    people.push(("kit@partner.example".into(), "DEPROVISIONED"));
    let okta = write_okta(tmp.path(), &people);
    let hub_section = format!(
        "[hub]\nurl = \"{}\"\norg = \"testorg\"\nusername = \"{HUB_USER}\"\n",
        server.origin()
    );
    let config = write_config(tmp.path(), &scim.base_url(), &okta, &hub_section);
    let run = |as_of: &'static str| {
        let (dir, config) = (tmp.path().to_owned(), config.clone());
        async move {
            let out = hubreview(
                &dir,
                &[
                    "--config",
                    config.to_str().unwrap(),
                    "run",
                    "--as-of",
                    as_of,
                    "--fail-on",
                    "terminated_active",
                ],
                &[
                    ("HUBREVIEW_SCIM_TOKEN", TOKEN),
                    ("HUBREVIEW_HUB_TOKEN", HUB_TOKEN),
                ],
            )
            .await;
            let dir = report_dirs(&dir.join("reports"))
                .into_iter()
                .find(|d| read_json(&d.join("summary.json"))["as_of"] == as_of)
                .expect("the run's report directory");
            (out, dir)
        }
    };

    let (out, _) = run("2026-11-30").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    server.faults().server_errors = 1000;
    let (out, dir) = run("2026-12-01").await;
    let summary = read_json(&dir.join("summary.json"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "never a pass: {stderr}");
    assert!(stderr.contains("checked only in part"), "{stderr}");
    assert_eq!(summary["findings"]["terminated_active"], 0);
    let why = summary["partial"]["terminated_active"].as_str().unwrap();
    assert!(why.contains("still members"), "{why}");
    assert!(why.contains("HTTP 500"), "{why}");
    assert_eq!(
        summary["resolved"], 0,
        "nothing resolved from a failed read"
    );
    assert!(
        summary["seats"]["in_use_note"]
            .as_str()
            .unwrap()
            .contains("active SCIM accounts")
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("Checked only in part:"), "the report says so");
    let caption = html
        .lines()
        .find(|l| l.contains("No open finding in any of these runs"))
        .unwrap_or_default();
    assert!(!caption.contains("terminated_active"), "{caption}");
    assert!(html.contains("a count marked * was checked only in part"));
    assert!(
        text(&out.stdout).contains("0 (checked in part)"),
        "{}",
        text(&out.stdout)
    );
    let history = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "history"],
        &[],
    )
    .await;
    let history = text(&history.stdout);
    let leavers = history
        .lines()
        .find(|l| l.starts_with("terminated_active"))
        .unwrap_or_default();
    assert!(leavers.trim_end().ends_with("0*"), "{history}");
    assert!(history.contains("* checked only in part"), "{history}");
    assert!(html.contains("0 (checked in part)"));
    let section = html
        .split("id=\"heading-terminated_active\"")
        .nth(1)
        .unwrap();
    let section = &section[..section.find("</section>").unwrap()];
    assert!(!section.contains("Checked: no findings"), "{section}");

    // The next complete read finds the leaver again, still open since the first run.
    server.faults().server_errors = 0;
    let (out, dir) = run("2026-12-02").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let summary = read_json(&dir.join("summary.json"));
    assert_eq!(summary["findings"]["terminated_active"], 1);
    assert_eq!(summary["partial"], json!({}));
    let findings = read_json(&dir.join("findings.json"));
    let leaver = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "terminated_active")
        .unwrap();
    assert_eq!(leaver["first_seen"], "2026-11-30", "{leaver}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hub_credentials_are_reported_and_never_printed() {
    let server = serve(hub_members(), hub_invites()).await;
    let run = run_with_hub(&server, 3, "dckr_pat_wrong-hub-token").await;
    assert_eq!(run.exit, Some(0), "{}", run.stderr);
    let why = run.summary["not_evaluated"]["idle_seat"].as_str().unwrap();
    assert!(why.contains("HTTP 401"), "{why}");
    for output in [&run.stdout, &run.stderr, &run.html, &run.findings_csv] {
        assert!(!output.contains("wrong-hub-token"));
    }
    assert!(!run.summary.to_string().contains("wrong-hub-token"));
}

#[tokio::test]
async fn hub_settings_without_a_token_stop_the_run_before_anything_is_fetched() {
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[]);
    let config = write_config(
        tmp.path(),
        "http://127.0.0.1:9/v2/scim/2.0",
        &okta,
        "[hub]\norg = \"testorg\"\nusername = \"bot\"\n",
    );
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "run"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("HUBREVIEW_HUB_TOKEN"),
        "{}",
        text(&out.stderr)
    );

    let half = write_config(
        tmp.path(),
        "http://127.0.0.1:9/v2/scim/2.0",
        &okta,
        "[hub]\norg = \"testorg\"\nurl = \"http://hub.docker.com\"\n",
    );
    let out = hubreview(
        tmp.path(),
        &["--config", half.to_str().unwrap(), "run"],
        &[("HUBREVIEW_SCIM_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("`hub.username`"), "{stderr}");
    assert!(stderr.contains("plain http"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_signs_in_to_the_hub_and_reads_one_page_of_members() {
    let server = serve(members(7), Vec::new()).await;
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[]);
    let hub_section = format!(
        "[hub]\nurl = \"{}\"\norg = \"testorg\"\nusername = \"{HUB_USER}\"\n",
        server.origin()
    );
    let config = write_config(
        tmp.path(),
        "http://127.0.0.1:9/v2/scim/2.0",
        &okta,
        &hub_section,
    );
    for (token, status) in [(HUB_TOKEN, "ok"), ("dckr_pat_bad-doctor-token", "FAIL")] {
        let out = hubreview(
            tmp.path(),
            &["--config", config.to_str().unwrap(), "doctor"],
            &[("HUBREVIEW_HUB_TOKEN", token)],
        )
        .await;
        let stdout = text(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.contains(" hub "))
            .unwrap_or_else(|| panic!("no hub line: {stdout}"));
        assert!(
            line.to_lowercase().starts_with(&status.to_lowercase()),
            "{line}"
        );
        if status == "ok" {
            assert!(line.contains("7 members"), "{line}");
        } else {
            assert!(line.contains("HTTP 401"), "{line}");
        }
        assert!(!stdout.contains(token), "{stdout}");
        // With the Hub set, a missing activity.file leaves nothing unevaluated by itself.
        assert!(
            !stdout.contains("idle_seat and not_provisioned are not evaluated"),
            "{stdout}"
        );
    }
    let gets: Vec<_> = server
        .request_log()
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path_and_query)
        .collect();
    assert_eq!(gets, ["/v2/orgs/testorg/members?page=1&page_size=1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_stores_the_hub_listings_and_says_which_one_is_incomplete() {
    let server = serve(hub_members(), hub_invites()).await;
    server.faults().invites_status = Some(500);
    let scim = scim_server(3).await;
    let tmp = tempfile::tempdir().unwrap();
    let okta = write_okta(tmp.path(), &[]);
    let hub_section = format!(
        "[hub]\nurl = \"{}\"\norg = \"testorg\"\nusername = \"{HUB_USER}\"\n",
        server.origin()
    );
    let config = write_config(tmp.path(), &scim.base_url(), &okta, &hub_section);
    let out = hubreview(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "snapshot"],
        &[
            ("HUBREVIEW_SCIM_TOKEN", TOKEN),
            ("HUBREVIEW_HUB_TOKEN", HUB_TOKEN),
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
    assert!(stdout.contains("Hub members of `testorg`: 4"), "{stdout}");
    assert!(
        stdout.contains("Hub invites of `testorg` INCOMPLETE (0 received)"),
        "{stdout}"
    );
    assert!(stdout.contains("HTTP 500"), "{stdout}");

    let store =
        hubreview::store::Store::open_existing(&tmp.path().join("store/hubreview.db")).unwrap();
    let snapshot = store.latest_snapshot().unwrap().unwrap();
    let hub = store.hub(snapshot.id).unwrap().unwrap();
    assert!(hub.members.completeness.is_complete());
    assert_eq!(hub.members.items.len(), 4);
    assert!(!hub.invites.completeness.is_complete());
}
