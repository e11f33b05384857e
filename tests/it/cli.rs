//! The command line as a user meets it: help text and the README that documents it.

use crate::common::*;

#[tokio::test]
async fn the_readme_usage_section_is_the_real_help() {
    let tmp = tempfile::tempdir().unwrap();
    let out = hubreview(tmp.path(), &["--help"], &[]).await;
    assert!(out.status.success());
    let help = text(&out.stdout);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- usage:start -->\n```text\n")
        .expect("usage markers")
        + 29;
    let end = readme
        .find("```\n<!-- usage:end -->")
        .expect("usage end marker");
    assert_eq!(
        readme[start..end].trim_end(),
        help.trim_end(),
        "README.md's usage section differs from `hubreview --help`; paste the new help in"
    );
}

#[tokio::test]
async fn the_help_matches_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, args) in [
        ("help", vec!["--help"]),
        ("verify_help", vec!["verify", "--help"]),
    ] {
        let out = hubreview(tmp.path(), &args, &[]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        insta::assert_snapshot!(name, text(&out.stdout));
    }
}

#[tokio::test]
async fn every_documented_key_has_its_environment_variable_in_the_readme() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/hubreview.example.toml"
    ))
    .unwrap();
    // The example file parses as a configuration.
    let parsed: Result<hubreview::config::Config, _> = toml::from_str(&example);
    assert!(parsed.is_ok(), "hubreview.example.toml: {parsed:?}");
    for key in hubreview::config::keys() {
        let var = hubreview::config::env_name(key);
        assert!(
            readme.contains(&format!("`{key}` | `{var}`")),
            "README lacks {key} / {var}"
        );
    }
}

#[tokio::test]
async fn a_bad_review_date_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = hubreview(tmp.path(), &["run", "--as-of", "30/11/2026"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("YYYY-MM-DD"),
        "{}",
        text(&out.stderr)
    );
}
