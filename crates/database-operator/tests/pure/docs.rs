//! The book builds with mdBook, and no link in it or in the README points
//! nowhere: every relative link names a file that exists and, with an
//! anchor, a heading of that file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use testkit::docs::{markdown_files, mdbook, repo};

/// mdBook's anchor of a heading: lower case, spaces to dashes, only
/// letters, digits, `-` and `_` kept.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of `file`'s headings (outside code blocks).
fn anchors(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut fence = false;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        } else if !fence && line.starts_with('#') {
            found.insert(slug(line.trim_start_matches('#')));
        }
    }
    found
}

/// The targets of `[text](target)` links in `text`, outside code.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn every_relative_link_names_a_file_and_a_heading_that_exist() {
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for link in links(&text) {
            if link.starts_with("http://")
                || link.starts_with("https://")
                || link.starts_with("mailto:")
            {
                continue;
            }
            checked += 1;
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target: PathBuf = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", file.display()));
            } else if !anchor.is_empty() && !anchors(&target).contains(anchor) {
                broken.push(format!("{}: {link}: no such heading", file.display()));
            }
        }
    }
    println!("{checked} relative links checked");
    assert!(checked > 20, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_is_in_the_summary_and_the_book_builds() {
    let summary = std::fs::read_to_string(repo().join("docs/src/SUMMARY.md")).unwrap();
    for file in markdown_files() {
        if file.parent().unwrap().ends_with("docs/src") {
            let name = file.file_name().unwrap().to_str().unwrap();
            assert!(
                name == "SUMMARY.md" || summary.contains(&format!("({name})")),
                "docs/src/{name} is not in SUMMARY.md"
            );
        }
    }
    let out_dir = tempfile::tempdir().unwrap();
    let built = std::process::Command::new(mdbook())
        .arg("build")
        .arg(repo().join("docs"))
        .arg("--dest-dir")
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "mdbook build failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    for page in [
        "index.html",
        "install.html",
        "runbooks.html",
        "replication.html",
    ] {
        assert!(out_dir.path().join(page).exists(), "{page} not built");
    }
    let runbooks = std::fs::read_to_string(out_dir.path().join("runbooks.html")).unwrap();
    // The alerts' runbook_url anchors (`#databasedown`) exist in the book.
    for alert in operator::builders::monitoring::rules::ALERTS {
        let anchor = operator::builders::monitoring::rules::runbook_anchor(alert);
        assert!(
            runbooks.contains(&format!("id=\"{anchor}\"")),
            "runbooks.html has no anchor {anchor}"
        );
    }
}
