//! The result of a run: a summary for people and a JSON object for the comparison script.

use crate::histogram::Histogram;
use std::fmt::Write;

#[derive(Debug, Default)]
pub struct Report {
    pub label: String,
    pub scenario: &'static str,
    pub fields: Vec<(&'static str, Value)>,
    pub latency: Option<Histogram>,
    /// What went wrong with delivery; empty when every check held.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Value {
    Int(u64),
    Float(f64),
    Text(String),
}

impl Report {
    pub fn new(label: &str, scenario: &'static str) -> Report {
        Report {
            label: label.to_owned(),
            scenario,
            ..Report::default()
        }
    }

    pub fn int(&mut self, name: &'static str, v: u64) {
        self.fields.push((name, Value::Int(v)));
    }

    pub fn float(&mut self, name: &'static str, v: f64) {
        self.fields.push((name, Value::Float(v)));
    }

    pub fn text(&mut self, name: &'static str, v: impl Into<String>) {
        self.fields.push((name, Value::Text(v.into())));
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.json());
        } else {
            print!("{}", self.text_summary());
        }
        for p in &self.problems {
            eprintln!("midge-bench: FAILED: {p}");
        }
    }

    fn all_fields(&self) -> Vec<(&'static str, Value)> {
        let mut all = vec![
            ("label", Value::Text(self.label.clone())),
            ("scenario", Value::Text(self.scenario.to_owned())),
        ];
        all.extend(self.fields.iter().cloned());
        if let Some(h) = self.latency.as_ref().filter(|h| h.count() > 0) {
            for (name, q) in [
                ("latency_p50_us", 0.5),
                ("latency_p99_us", 0.99),
                ("latency_p999_us", 0.999),
            ] {
                all.push((name, Value::Float(h.quantile(q).unwrap_or(0) as f64 / 1e3)));
            }
            all.push(("latency_max_us", Value::Float(h.max() as f64 / 1e3)));
        }
        all.push(("ok", Value::Int(u64::from(self.ok()))));
        all
    }

    pub fn json(&self) -> String {
        let mut s = String::from("{");
        for (i, (name, value)) in self.all_fields().iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "\"{name}\": ");
            match value {
                Value::Int(v) => {
                    let _ = write!(s, "{v}");
                }
                Value::Float(v) if v.is_finite() => {
                    let _ = write!(s, "{v:.3}");
                }
                Value::Float(_) => s.push_str("null"),
                Value::Text(t) => {
                    s.push('"');
                    for c in t.chars() {
                        match c {
                            '"' => s.push_str("\\\""),
                            '\\' => s.push_str("\\\\"),
                            c if (c as u32) < 0x20 => {
                                let _ = write!(s, "\\u{:04x}", c as u32);
                            }
                            c => s.push(c),
                        }
                    }
                    s.push('"');
                }
            }
        }
        if !self.problems.is_empty() {
            let _ = write!(s, ", \"problems\": {}", self.problems.len());
        }
        s.push('}');
        s
    }

    fn text_summary(&self) -> String {
        let mut s = String::new();
        for (name, value) in self.all_fields() {
            let v = match value {
                Value::Int(v) => v.to_string(),
                Value::Float(v) => format!("{v:.3}"),
                Value::Text(t) => t,
            };
            let _ = writeln!(s, "{name:>28}  {v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_escaped_and_complete() {
        let mut r = Report::new("mos\"quitto", "fan-in");
        r.int("delivered", 10);
        r.float("rate", 1.5);
        r.float("nan", f64::NAN);
        let j = r.json();
        assert_eq!(
            j,
            "{\"label\": \"mos\\\"quitto\", \"scenario\": \"fan-in\", \"delivered\": 10, \
             \"rate\": 1.500, \"nan\": null, \"ok\": 1}"
        );
        r.problems.push("lost 3".into());
        assert!(r.json().ends_with("\"ok\": 0, \"problems\": 1}"));
    }
}
