//! Small PromQL helpers: label matchers with escaped values, and the metric
//! names an expression reads (for the tests that hold every query to what
//! the exporters really emit).

use std::collections::BTreeSet;

/// `name="value"` with the value escaped as PromQL requires.
pub fn matcher(name: &str, op: &str, value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{name}{op}\"{escaped}\"")
}

/// Keywords and functions that look like identifiers.
const NOT_METRICS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    // Aggregation operators may be followed by `by (…)` rather than `(`.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// The metric names `expr` selects: identifiers outside label matchers,
/// strings and grouping clauses that are not function calls or keywords.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Set after by/without/on/ignoring/group_*: the next (...) lists labels.
    let mut label_list_next = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '{' || c == '[' || (c == '(' && label_list_next) {
            let close = match c {
                '{' => '}',
                '[' => ']',
                _ => ')',
            };
            label_list_next = false;
            while i < chars.len() && chars[i] != close {
                if chars[i] == '"' {
                    i += 1;
                    while i < chars.len() && chars[i] != '"' {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                }
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let lower = word.to_ascii_lowercase();
            if chars.get(j) == Some(&'(')
                && matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                )
            {
                label_list_next = true;
            } else if chars.get(j) == Some(&'(') || NOT_METRICS.contains(&lower.as_str()) {
                // A function call or keyword.
            } else {
                names.insert(word);
            }
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers and durations (5m, 1e3) are not names.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_metrics_and_skips_labels_functions_and_durations() {
        let expr = r#"sum by (namespace, database) (rate(pg_stat_database_xact_commit{datname!~"template.*",a="x\"y"}[5m])) / on (namespace) group_left max(pg_settings_max_connections) * 100 > 80 and time() - foo:bar offset 5m > 1e3"#;
        let names: Vec<String> = metric_names(expr).into_iter().collect();
        assert_eq!(
            names,
            [
                "foo:bar",
                "pg_settings_max_connections",
                "pg_stat_database_xact_commit"
            ]
        );
        assert_eq!(matcher("a", "=", r#"x"y\"#), r#"a="x\"y\\""#);
    }
}
