//! The book (`docs/`) and the README: their Markdown files, their YAML
//! examples, mdBook (from crates.io by `hack/docs/install.sh`, cached).

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every Markdown file users read: the README, CONTRIBUTING and the book's
/// pages.
pub fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md"), repo().join("CONTRIBUTING.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs/src"))
        .expect("docs/src")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

/// One fenced YAML block of a Markdown file.
#[derive(Debug)]
pub struct Example {
    pub file: PathBuf,
    /// The line of its opening fence.
    pub line: usize,
    pub text: String,
}

/// Every ```yaml block of `file`.
pub fn yaml_examples(file: &Path) -> Vec<Example> {
    let text = std::fs::read_to_string(file).expect("a Markdown file");
    let mut examples = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            None if fence.starts_with("```yaml") => open = Some((i + 1, String::new())),
            Some((start, body)) if fence.starts_with("```") => {
                examples.push(Example {
                    file: file.to_owned(),
                    line: *start,
                    text: std::mem::take(body),
                });
                open = None;
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    examples
}

/// mdBook (built on first use when `make mdbook` has not run).
pub fn mdbook() -> PathBuf {
    crate::paths::installed_tool("hack/docs/install.sh")
}
