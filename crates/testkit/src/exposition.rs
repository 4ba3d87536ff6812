//! A strict parser of the OpenMetrics text format (what the operator serves
//! on `/metrics`), so a test can both read values and prove the exposition
//! is valid: metadata before samples, one block per family, sample names
//! that fit the family's type, well-formed labels and values, no duplicate
//! series, histograms with ordered, cumulative buckets ending in `+Inf`
//! that equals `_count`, and `# EOF` last.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub families: Vec<Family>,
}

impl Exposition {
    /// Every sample name (with its suffix: `_total`, `_bucket`, …).
    pub fn sample_names(&self) -> BTreeSet<String> {
        self.families
            .iter()
            .flat_map(|f| f.samples.iter().map(|s| s.name.clone()))
            .collect()
    }

    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The value of the one sample called `name` whose labels include `labels`;
    /// `None` when there is none, panics when several match.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self.matching(name, labels).collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} matches {matching:?}"
        );
        matching.first().copied()
    }

    /// The sum of every sample called `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).sum()
    }

    /// The values of the samples called `name` whose labels include `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = f64> + 'a {
        let wanted = move |s: &&Sample| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        };
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(wanted)
            .map(|s| s.value)
    }
}

const TYPES: [&str; 8] = [
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
    "unknown",
];

fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_count", "_sum", "_created"],
        "gaugehistogram" => &["_bucket", "_gcount", "_gsum"],
        "summary" => &["", "_count", "_sum", "_created"],
        "info" => &["_info"],
        _ => &[""],
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("bad value {text:?}")),
    }
}

/// `name{a="1",b="x"} 2` → the sample (timestamps are rejected: the
/// operator sends none).
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let consumed;
        loop {
            if let Some(&(i, '}')) = chars.peek() {
                consumed = i + 1;
                break;
            }
            let start = chars.peek().map(|&(i, _)| i).ok_or("unterminated labels")?;
            let mut end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c == '=' {
                    break;
                }
                end = i + c.len_utf8();
                chars.next();
            }
            let key = &after[start..end];
            if !valid_label_name(key) {
                return Err(format!("bad label name {key:?} in {line:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('=')
                || chars.next().map(|(_, c)| c) != Some('"')
            {
                return Err(format!("label {key} is not =\"…\" in {line:?}"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in {line:?}")),
                    },
                    Some('\n') | None => return Err(format!("unterminated value in {line:?}")),
                    Some(c) => value.push(c),
                }
            }
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} twice in {line:?}"));
            }
            match chars.peek().map(|&(_, c)| c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                _ => return Err(format!("expected , or }} in {line:?}")),
            }
        }
        rest = &after[consumed..];
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value in {line:?}"))?;
    if value.contains(' ') {
        return Err(format!("unexpected timestamp or exemplar in {line:?}"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// Parses and validates a whole exposition.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("the exposition does not end with \"# EOF\"")?;
    let mut families: Vec<Family> = Vec::new();
    let mut seen_series = BTreeSet::new();
    for line in body.lines() {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (keyword, name, rest) = (
                parts.next().unwrap_or_default(),
                parts.next().ok_or_else(|| format!("bad line {line:?}"))?,
                parts.next().unwrap_or_default(),
            );
            if !valid_metric_name(name) {
                return Err(format!("bad family name {name:?}"));
            }
            let current = families
                .last()
                .filter(|f| f.name == name && f.samples.is_empty());
            if current.is_none() {
                if families.iter().any(|f| f.name == name) {
                    return Err(format!("family {name} appears twice"));
                }
                families.push(Family {
                    name: name.to_owned(),
                    kind: "unknown".into(),
                    help: String::new(),
                    samples: Vec::new(),
                });
            }
            let family = families.last_mut().expect("pushed above");
            match keyword {
                "TYPE" if TYPES.contains(&rest) => family.kind = rest.to_owned(),
                "TYPE" => return Err(format!("unknown type {rest:?} of {name}")),
                "HELP" => family.help = rest.to_owned(),
                "UNIT" if name.ends_with(&format!("_{rest}")) => {}
                "UNIT" => return Err(format!("{name} does not end with its unit {rest}")),
                _ => return Err(format!("unknown metadata {line:?}")),
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            return Err(format!("unexpected line {line:?}"));
        }
        let sample = parse_sample(line)?;
        let family = families
            .last_mut()
            .ok_or_else(|| format!("sample before any metadata: {line:?}"))?;
        let suffix = sample
            .name
            .strip_prefix(&family.name)
            .filter(|s| suffixes(&family.kind).contains(s))
            .ok_or_else(|| {
                format!(
                    "sample {} does not belong to {} family {}",
                    sample.name, family.kind, family.name
                )
            })?;
        if family.kind == "counter"
            && suffix == "_total"
            && (sample.value.is_nan() || sample.value < 0.0)
        {
            return Err(format!("negative counter {line:?}"));
        }
        if !seen_series.insert(format!("{}{:?}", sample.name, sample.labels)) {
            return Err(format!("duplicate series {line:?}"));
        }
        family.samples.push(sample);
    }
    for family in &families {
        if family.kind == "histogram" {
            check_histogram(family)?;
        }
    }
    Ok(Exposition { families })
}

fn check_histogram(family: &Family) -> Result<(), String> {
    /// Per label set: the (le, value) buckets and the `_count`.
    type Series = (Vec<(f64, f64)>, Option<f64>);
    let mut series: BTreeMap<BTreeMap<String, String>, Series> = BTreeMap::new();
    for sample in &family.samples {
        let mut labels = sample.labels.clone();
        if sample.name.ends_with("_bucket") {
            let le = labels
                .remove("le")
                .ok_or_else(|| format!("bucket without le in {}", family.name))?;
            series
                .entry(labels)
                .or_default()
                .0
                .push((parse_value(&le)?, sample.value));
        } else if sample.name.ends_with("_count") {
            series.entry(labels).or_default().1 = Some(sample.value);
        }
    }
    for (labels, (buckets, count)) in series {
        let ordered = buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        let last = buckets.last().copied();
        if !ordered || last.map(|b| b.0) != Some(f64::INFINITY) || last.map(|b| b.1) != count {
            return Err(format!(
                "histogram {} {labels:?}: buckets {buckets:?}, count {count:?}",
                family.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_not_openmetrics() {
        let good = "# TYPE a counter\n# HELP a A.\na_total{x=\"1\"} 2\n# EOF\n";
        assert!(parse(good).is_ok());
        for bad in [
            "# TYPE a counter\na_total 1\n",                     // no EOF
            "# TYPE a counter\na 1\n# EOF\n",                    // counter without _total
            "# TYPE a gauge\na{x=1} 1\n# EOF\n",                 // unquoted label
            "# TYPE a gauge\na 1\n# TYPE a gauge\na 2\n# EOF\n", // family twice
            "# TYPE a gauge\na 1\na 1\n# EOF\n",                 // duplicate series
            "# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\na_count 1\n# EOF\n",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
