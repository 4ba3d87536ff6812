//! What a run prints and writes: a table, a JSON document and an SVG plot
//! (latency distribution of both sides, the operator's memory over time).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::measure::quantile;
use crate::run::Side;

/// One run at one N: both sides and their ratios.
#[derive(Serialize)]
pub struct Report {
    pub databases: usize,
    pub parallelism: usize,
    pub nodes: usize,
    pub commit: String,
    pub cores: usize,
    pub operator: Side,
    pub baseline: Side,
    pub time_ratio: f64,
    pub apiserver_cpu_ratio: f64,
}

impl Report {
    pub fn new(plan: &crate::run::Plan, commit: String, operator: Side, baseline: Side) -> Report {
        Report {
            databases: plan.databases,
            parallelism: plan.parallelism,
            nodes: plan.nodes,
            commit,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            time_ratio: ratio(operator.all_ready_s, baseline.all_ready_s),
            apiserver_cpu_ratio: ratio(operator.apiserver_cpu_s, baseline.apiserver_cpu_s),
            operator,
            baseline,
        }
    }

    /// The table printed at the end of a run (Markdown, so the docs can
    /// take it as it is).
    pub fn table(&self) -> String {
        let n = self.databases as f64;
        let (op, base) = (&self.operator, &self.baseline);
        let figures = op.operator.clone().unwrap_or_default();
        let q = |side: &Side| {
            let all: Vec<f64> = side.latencies_s.values().copied().collect();
            format!(
                "{:.1} / {:.1} / {:.1} s",
                quantile(&all, 0.5),
                quantile(&all, 0.95),
                quantile(&all, 0.99)
            )
        };
        // The workload's engines go round robin by index (db-0 PostgreSQL,
        // db-1 MySQL, db-2 MongoDB, …).
        let by_engine = |side: &Side| {
            (0..3)
                .map(|engine| {
                    let of: Vec<f64> = side
                        .latencies_s
                        .iter()
                        .filter(|(k, _)| {
                            crate::workload::index_of(k).is_some_and(|i| i % 3 == engine)
                        })
                        .map(|(_, v)| *v)
                        .collect();
                    format!("{:.1}", quantile(&of, 0.5))
                })
                .collect::<Vec<_>>()
                .join(" / ")
                + " s"
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "N = {} Databases ({} in flight, {} KWOK nodes, {} cores, commit {})\n",
            self.databases, self.parallelism, self.nodes, self.cores, self.commit
        );
        let _ = writeln!(out, "| figure | operator | bare client | ratio | goal |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        let mut row = |figure: &str, a: String, b: String, r: String, goal: &str| {
            let _ = writeln!(out, "| {figure} | {a} | {b} | {r} | {goal} |");
        };
        row(
            "time until all Running / all StatefulSets ready",
            format!("{:.1} s", op.all_ready_s),
            format!("{:.1} s", base.all_ready_s),
            format!("{:.2}", self.time_ratio),
            "≤ 1.10",
        );
        row(
            "p50 create → ready: PostgreSQL / MySQL / MongoDB",
            by_engine(op),
            by_engine(base),
            String::new(),
            "",
        );
        row(
            "p50 / p95 / p99 create → ready",
            q(op),
            q(base),
            String::new(),
            "",
        );
        row(
            "kube-apiserver CPU during creation",
            format!("{:.1} s", op.apiserver_cpu_s),
            format!("{:.1} s", base.apiserver_cpu_s),
            format!("{:.2}", self.apiserver_cpu_ratio),
            "≤ 1.15",
        );
        row(
            "API requests per Database during creation",
            format!("{:.1}", op.total_requests() / n),
            format!("{:.1}", base.total_requests() / n),
            String::new(),
            "",
        );
        row(
            "API writes per Database during creation",
            format!("{:.1}", op.writes() / n),
            format!("{:.1}", base.writes() / n),
            format!("{:.2}", ratio(op.writes(), base.writes())),
            "",
        );
        row(
            "operator CPU during creation",
            format!("{:.1} s", figures.cpu_s),
            "—".into(),
            String::new(),
            "",
        );
        row(
            "operator RSS: idle before / peak / at the end",
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                figures.rss_idle_before_mib, figures.rss_peak_mib, figures.rss_end_mib
            ),
            "—".into(),
            String::new(),
            "peak < 64 MiB at 1,000",
        );
        row(
            &format!(
                "API writes in {:.0} idle seconds (from {:.1} s after all Running, when every monitor had seen its Database run)",
                figures.idle_window_s, figures.monitors_settled_s
            ),
            format!("{}", figures.idle_writes),
            "—".into(),
            String::new(),
            "0",
        );
        let _ = writeln!(
            out,
            "\nRequests per Database during creation, by verb and resource:\n"
        );
        let _ = writeln!(out, "| request | operator | bare client |");
        let _ = writeln!(out, "|---|---|---|");
        let mut keys: Vec<&String> = op.requests.keys().chain(base.requests.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let get = |side: &Side| side.requests.get(key).copied().unwrap_or(0.0) / n;
            let _ = writeln!(out, "| {key} | {:.2} | {:.2} |", get(op), get(base));
        }
        if !figures.idle_writes_by.is_empty() {
            let _ = writeln!(out, "\nWrites in the idle window, by verb and resource:");
            for (key, count) in &figures.idle_writes_by {
                let _ = writeln!(out, "- {key}: {count}");
            }
        }
        if let Some(soak) = &figures.soak {
            let _ = writeln!(
                out,
                "\nSoak: {} minutes, {} Databases changed a minute (deleted, created, scaled): RSS grew {:.1} MiB after the first ten minutes (goal < 2); {} of {} Databases Running at the end.",
                soak.minutes,
                soak.changes_per_minute,
                soak.growth_after_warm_up_mib,
                soak.running_at_end,
                soak.databases_at_end
            );
            let by_minute: Vec<String> = soak
                .rss_by_minute_mib
                .iter()
                .map(|rss| format!("{rss:.1}"))
                .collect();
            let _ = writeln!(out, "RSS by minute (MiB): {}", by_minute.join(" "));
        }
        if !figures.cached.is_empty() {
            let _ = writeln!(
                out,
                "\nWhat the operator's caches hold at the end (objects its watches select, trimmed as the operator trims them; JSON, and heap once deserialised):\n"
            );
            let _ = writeln!(out, "| kind | objects | JSON KiB | heap KiB |");
            let _ = writeln!(out, "|---|---|---|---|");
            for (kind, cached) in &figures.cached {
                let _ = writeln!(
                    out,
                    "| {kind} | {} | {:.0} | {:.0} |",
                    cached.objects,
                    cached.json_bytes as f64 / 1024.0,
                    cached.heap_bytes as f64 / 1024.0
                );
            }
            let heap: usize = figures.cached.values().map(|c| c.heap_bytes).sum();
            let _ = writeln!(out, "| all | | | {:.0} |", heap as f64 / 1024.0);
        }
        if !figures.reconcile_errors.is_empty() {
            let _ = writeln!(
                out,
                "\nFailed reconciles during creation (controller, kind):"
            );
            for (key, count) in &figures.reconcile_errors {
                let _ = writeln!(out, "- {key}: {count}");
            }
        }
        out
    }

    /// Two panels: the share of Databases ready by time since their
    /// creation (both sides), and the operator's resident memory over time.
    pub fn svg(&self) -> String {
        const W: f64 = 460.0;
        const H: f64 = 300.0;
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#,
            w = 2.0 * W,
            h = H + 30.0
        );
        let _ = writeln!(
            out,
            r#"<text x="10" y="16" font-size="13">database-operator make bench: N = {} ({} in flight, {} nodes, commit {})</text>"#,
            self.databases,
            self.parallelism,
            self.nodes,
            escape(&self.commit)
        );
        // Panel 1: cumulative distribution of create -> ready.
        let max_latency = self
            .operator
            .latencies_s
            .values()
            .chain(self.baseline.latencies_s.values())
            .copied()
            .fold(1.0, f64::max);
        let cdf = |latencies: &BTreeMap<String, f64>| {
            let mut sorted: Vec<f64> = latencies.values().copied().collect();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len().max(1) as f64;
            sorted
                .iter()
                .enumerate()
                .map(|(i, t)| (*t, (i + 1) as f64 / n))
                .collect::<Vec<_>>()
        };
        let panel1 = Panel {
            x0: 0.0,
            title: "share ready by seconds since creation",
            x_max: max_latency,
            y_max: 1.0,
            x_label: "seconds",
            y_label: "share",
        };
        panel1.axes(&mut out);
        panel1.line(
            &mut out,
            &cdf(&self.baseline.latencies_s),
            "#999999",
            "bare client",
            0,
        );
        panel1.line(
            &mut out,
            &cdf(&self.operator.latencies_s),
            "#1f6feb",
            "operator",
            1,
        );
        // Panel 2: operator RSS over time.
        let samples = self
            .operator
            .operator
            .as_ref()
            .map(|f| f.rss_samples.clone())
            .unwrap_or_default();
        let t_max = samples.iter().map(|(t, _)| *t).fold(1.0, f64::max);
        let m_max = samples.iter().map(|(_, m)| *m).fold(64.0, f64::max) * 1.1;
        let panel2 = Panel {
            x0: W,
            title: "operator resident memory (MiB) over time",
            x_max: t_max,
            y_max: m_max,
            x_label: "seconds since the operator started",
            y_label: "MiB",
        };
        panel2.axes(&mut out);
        panel2.line(
            &mut out,
            &[(0.0, 64.0), (t_max, 64.0)],
            "#d1242f",
            "64 MiB",
            1,
        );
        panel2.line(&mut out, &samples, "#1f6feb", "RSS", 0);
        let _ = writeln!(out, "</svg>");
        out
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Panel<'a> {
    x0: f64,
    title: &'a str,
    x_max: f64,
    y_max: f64,
    x_label: &'a str,
    y_label: &'a str,
}

impl Panel<'_> {
    const LEFT: f64 = 50.0;
    const TOP: f64 = 50.0;
    const WIDTH: f64 = 380.0;
    const HEIGHT: f64 = 220.0;

    fn x(&self, v: f64) -> f64 {
        self.x0 + Self::LEFT + v / self.x_max * Self::WIDTH
    }
    fn y(&self, v: f64) -> f64 {
        Self::TOP + Self::HEIGHT - v / self.y_max * Self::HEIGHT
    }

    fn axes(&self, out: &mut String) {
        let (left, bottom) = (self.x(0.0), self.y(0.0));
        let _ = writeln!(
            out,
            r#"<text x="{left}" y="{}" font-size="12">{}</text>"#,
            Self::TOP - 12.0,
            escape(self.title)
        );
        let _ = writeln!(
            out,
            r#"<path d="M{left},{} V{bottom} H{}" fill="none" stroke="black"/>"#,
            Self::TOP,
            self.x(self.x_max)
        );
        for i in 0..=4 {
            let f = f64::from(i) / 4.0;
            let (xv, yv) = (f * self.x_max, f * self.y_max);
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
                self.x(xv),
                bottom + 14.0,
                tick(xv),
                left - 4.0,
                self.y(yv) + 4.0,
                tick(yv)
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="start">{}</text>"#,
            self.x(self.x_max / 2.0),
            bottom + 28.0,
            escape(self.x_label),
            left + 4.0,
            Self::TOP + 10.0,
            escape(self.y_label)
        );
    }

    fn line(&self, out: &mut String, points: &[(f64, f64)], colour: &str, label: &str, slot: u8) {
        if points.is_empty() {
            return;
        }
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", self.x(*x), self.y(*y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#,
            path.join(" ")
        );
        let ly = Self::TOP + 20.0 + f64::from(slot) * 14.0;
        let lx = self.x0 + Self::LEFT + Self::WIDTH - 110.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 16.0,
            lx + 20.0,
            ly + 4.0,
            escape(label)
        );
    }
}

fn tick(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{OperatorFigures, Plan, Side};

    fn latencies(values: &[f64]) -> BTreeMap<String, f64> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("b-{}/db-{i}", i % 10), *v))
            .collect()
    }

    fn report() -> Report {
        let plan = Plan {
            databases: 4,
            parallelism: 2,
            nodes: 1,
            idle: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(1),
            operator_binary: "op".into(),
            out_dir: "out".into(),
            soak_minutes: 0,
        };
        let operator = Side {
            all_ready_s: 11.0,
            latencies_s: latencies(&[1.0, 2.0, 3.0, 4.0]),
            apiserver_cpu_s: 6.0,
            requests: [
                ("create secrets".to_owned(), 4.0),
                ("get secrets".to_owned(), 8.0),
            ]
            .into(),
            operator: Some(OperatorFigures {
                rss_samples: vec![(0.0, 20.0), (1.0, 30.0)],
                rss_peak_mib: 30.0,
                ..OperatorFigures::default()
            }),
        };
        let baseline = Side {
            all_ready_s: 10.0,
            latencies_s: latencies(&[1.0, 1.0, 2.0, 2.0]),
            apiserver_cpu_s: 5.0,
            requests: [("create secrets".to_owned(), 4.0)].into(),
            operator: None,
        };
        Report::new(&plan, "abc<1>".into(), operator, baseline)
    }

    #[test]
    fn the_table_gives_ratios_and_per_database_requests() {
        let r = report();
        assert!((r.time_ratio - 1.1).abs() < 1e-9);
        assert!((r.apiserver_cpu_ratio - 1.2).abs() < 1e-9);
        let table = r.table();
        assert!(table.contains("| time until all Running / all StatefulSets ready | 11.0 s | 10.0 s | 1.10 | ≤ 1.10 |"), "{table}");
        assert!(
            table.contains("| API requests per Database during creation | 3.0 | 1.0 |"),
            "{table}"
        );
        assert!(table.contains("| get secrets | 2.00 | 0.00 |"), "{table}");
        assert!(
            table.contains(
                "| p50 / p95 / p99 create → ready | 2.0 / 4.0 / 4.0 s | 1.0 / 2.0 / 2.0 s |"
            ),
            "{table}"
        );
        // db-0 and db-3 are PostgreSQL (1.0, 4.0: nearest rank gives 1.0),
        // db-1 MySQL, db-2 MongoDB.
        assert!(
            table.contains(
                "| p50 create → ready: PostgreSQL / MySQL / MongoDB | 1.0 / 2.0 / 3.0 s | 1.0 / 1.0 / 2.0 s |"
            ),
            "{table}"
        );
    }

    #[test]
    fn the_plot_is_one_svg_document_with_both_sides_and_escaped_text() {
        let svg = report().svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            4,
            "two CDFs, the limit, the RSS"
        );
        assert!(svg.contains("abc&lt;1&gt;"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
