//! Figures, percentiles, and the printed table / JSON output.

use std::time::Duration;

use serde_json::{Value, json};

/// One line of the table: a figure, its same-run baseline, and the target.
pub struct Row {
    pub figure: String,
    pub value: f64,
    pub unit: &'static str,
    pub baseline: Option<f64>,
    /// value / baseline, when that ratio is meaningful.
    pub ratio: Option<f64>,
    /// Target text and whether it was met.
    pub target: Option<(String, bool)>,
}

impl Row {
    pub fn new(figure: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self { figure: figure.into(), value, unit, baseline: None, ratio: None, target: None }
    }

    /// A baseline in the same unit; the ratio is value / baseline.
    pub fn vs(mut self, baseline: f64) -> Self {
        self.baseline = Some(baseline);
        self.ratio = (baseline > 0.0).then(|| self.value / baseline);
        self
    }

    /// A baseline printed beside the value, without a ratio (e.g. latencies).
    pub fn beside(mut self, baseline: f64) -> Self {
        self.baseline = Some(baseline);
        self
    }

    pub fn target(mut self, text: impl Into<String>, met: bool) -> Self {
        self.target = Some((text.into(), met));
        self
    }
}

pub struct Report {
    pub title: String,
    pub params: Value,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

fn num(v: f64, unit: &str) -> String {
    match unit {
        "/s" | "" => format!("{v:.0}"),
        "MiB" => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

impl Report {
    pub fn new(title: &str, params: Value) -> Self {
        Self { title: title.into(), params, rows: Vec::new(), notes: Vec::new() }
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn print(&self) {
        println!("\n{} ({})", self.title, self.params);
        let w = self.rows.iter().map(|r| r.figure.len()).max().unwrap_or(6).max(6);
        println!("{:<w$}  {:>14}  {:>14}  {:>7}  target", "figure", "value", "baseline", "ratio");
        println!("{}", "-".repeat(w + 60));
        for r in &self.rows {
            let value = format!("{} {}", num(r.value, r.unit), r.unit);
            let base = r.baseline.map(|b| format!("{} {}", num(b, r.unit), r.unit)).unwrap_or_default();
            let ratio = r.ratio.map(|x| format!("{x:.3}")).unwrap_or_default();
            let target = match &r.target {
                Some((t, met)) => format!("{t} {}", if *met { "MET" } else { "MISSED" }),
                None => String::new(),
            };
            println!("{:<w$}  {value:>14}  {base:>14}  {ratio:>7}  {target}", r.figure);
        }
        for n in &self.notes {
            println!("note: {n}");
        }
    }

    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "figure": r.figure, "value": r.value, "unit": r.unit, "baseline": r.baseline, "ratio": r.ratio,
                    "target": r.target.as_ref().map(|t| &t.0), "met": r.target.as_ref().map(|t| t.1),
                })
            })
            .collect();
        json!({ "benchmark": self.title, "params": self.params, "rows": rows, "notes": self.notes })
    }
}

/// p50/p95/p99 (nearest rank) of some samples, in ms.
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn percentiles(samples: &mut [Duration]) -> Percentiles {
    samples.sort_unstable();
    let at = |q: f64| {
        if samples.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1].as_secs_f64() * 1000.0
    };
    Percentiles { p50: at(0.50), p95: at(0.95), p99: at(0.99), max: at(1.0) }
}
