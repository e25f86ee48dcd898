//! `strom verify check HISTORY [--json] [--faults FAULTS.jsonl]`: runs the checker of
//! `strom_verify` over a history and prints its report; fails (exit status 1) when it found
//! any anomaly.
//!
//! With `--faults`, each fault of the nemesis's log (one JSON object per line with at least
//! `start` and `end`, milliseconds since the epoch) is reported with the longest time a
//! partition went without acknowledging a pending write during it (`unavailable_ms`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use strom_verify::{AnomalyKind, Report};

use super::CheckArgs;

/// Anomaly lines the text summary shows; the JSON report has them all.
const MESSAGES_SHOWN_MAX: usize = 20;

pub(super) fn run(args: CheckArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&args.history).with_context(|| format!("read history {}", args.history.display()))?;
    let events = strom_verify::history::parse(&text).map_err(|e| anyhow!("{}: {e}", args.history.display()))?;
    let report = strom_verify::check(&events);
    let faults = match &args.faults {
        Some(path) => {
            let mut faults = read_faults(path)?;
            let windows: Vec<(f64, f64)> = faults.iter().map(|f| (f.start, f.end)).collect();
            for (fault, unavailable_ms) in faults.iter_mut().zip(strom_verify::unavailability(&events, &windows)) {
                fault.unavailable_ms = unavailable_ms;
            }
            Some(faults)
        }
        None => None,
    };
    if args.json {
        println!("{}", to_json(&report, faults.as_deref())?);
    } else {
        print!("{}", summary(&report, faults.as_deref())?);
    }
    if !report.is_clean() {
        bail!(
            "{} anomal{} found",
            report.anomalies.len(),
            if report.anomalies.len() == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}

/// One fault of the nemesis's log and what the workload saw during it.
#[derive(Debug, Clone, PartialEq)]
struct Fault {
    /// The whole line as given, so every field of the nemesis's comes back out.
    line: serde_json::Map<String, Value>,
    start: f64,
    end: f64,
    unavailable_ms: f64,
}

fn read_faults(path: &Path) -> anyhow::Result<Vec<Fault>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read faults {}", path.display()))?;
    parse_faults(&text).with_context(|| format!("faults {}", path.display()))
}

fn parse_faults(text: &str) -> anyhow::Result<Vec<Fault>> {
    let mut faults = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line: serde_json::Map<String, Value> =
            serde_json::from_str(line).with_context(|| format!("line {}", i + 1))?;
        let time = |key: &str| {
            line.get(key)
                .and_then(Value::as_f64)
                .ok_or_else(|| anyhow!("line {}: `{key}` is not a number of milliseconds", i + 1))
        };
        let (start, end) = (time("start")?, time("end")?);
        faults.push(Fault {
            line,
            start,
            end,
            unavailable_ms: 0.0,
        });
    }
    Ok(faults)
}

/// The report as one JSON object, with the faults under `faults` when given.
fn to_json(report: &Report, faults: Option<&[Fault]>) -> anyhow::Result<String> {
    let mut json = serde_json::to_value(report).context("serialise the report")?;
    if let (Some(faults), Value::Object(object)) = (faults, &mut json) {
        let faults = faults
            .iter()
            .map(|fault| {
                let mut line = fault.line.clone();
                let _ = line.insert("unavailable_ms".to_string(), Value::from(fault.unavailable_ms));
                Value::Object(line)
            })
            .collect();
        let _ = object.insert("faults".to_string(), Value::Array(faults));
    }
    Ok(json.to_string())
}

/// The text summary: the statistics, the anomalies per kind and the first messages, the
/// faults.
fn summary(report: &Report, faults: Option<&[Fault]>) -> anyhow::Result<String> {
    let mut out = String::new();
    // The statistics by their serialised names, so new ones show without a change here.
    let stats = serde_json::to_value(&report.stats).context("serialise the statistics")?;
    if let Value::Object(stats) = stats {
        let line: Vec<String> = stats.iter().map(|(key, value)| format!("{key} {value}")).collect();
        let _ = writeln!(out, "checked: {}", line.join(", "));
    }
    if report.is_clean() {
        let _ = writeln!(out, "anomalies: none");
    } else {
        let mut counts: BTreeMap<AnomalyKind, usize> = BTreeMap::new();
        for anomaly in &report.anomalies {
            *counts.entry(anomaly.kind).or_default() += 1;
        }
        let counts: Vec<String> = counts
            .iter()
            .map(|(kind, n)| format!("{} {n}", kind.as_str()))
            .collect();
        let _ = writeln!(out, "anomalies: {} ({})", report.anomalies.len(), counts.join(", "));
        for anomaly in report.anomalies.iter().take(MESSAGES_SHOWN_MAX) {
            let _ = writeln!(out, "  {}: {}", anomaly.kind.as_str(), anomaly.message);
        }
        if report.anomalies.len() > MESSAGES_SHOWN_MAX {
            let _ = writeln!(
                out,
                "  ... and {} more (--json lists them all)",
                report.anomalies.len() - MESSAGES_SHOWN_MAX
            );
        }
    }
    for fault in faults.unwrap_or_default() {
        let kind = fault.line.get("kind").and_then(Value::as_str).unwrap_or("fault");
        let _ = writeln!(
            out,
            "fault {kind} {:.0}..{:.0} ({:.1} s): unavailable {:.0} ms",
            fault.start,
            fault.end,
            (fault.end - fault.start) / 1000.0,
            fault.unavailable_ms
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_verify::Anomaly;

    fn fault(start: f64, end: f64) -> Fault {
        let text = format!(r#"{{"kind":"kill","start":{start},"end":{end},"node":2}}"#);
        parse_faults(&text).unwrap().remove(0)
    }

    #[test]
    fn faults_keep_their_fields_and_need_times() {
        let parsed = fault(10.0, 20.5);
        assert_eq!((parsed.start, parsed.end), (10.0, 20.5));
        assert_eq!(parsed.line["node"], 2);
        assert!(parse_faults("\n\n").unwrap().is_empty());
        let err = parse_faults(r#"{"kind":"kill","start":"soon","end":1}"#).unwrap_err();
        assert!(format!("{err:#}").contains("`start`"), "{err:#}");
        assert!(parse_faults("{").is_err());
    }

    #[test]
    fn summary_counts_kinds_and_shows_the_first_messages() {
        let mut report = Report::default();
        assert!(summary(&report, None).unwrap().contains("anomalies: none"));
        for i in 0..25 {
            let kind = if i % 5 == 0 {
                AnomalyKind::Duplicate
            } else {
                AnomalyKind::LostWrite
            };
            report.anomalies.push(Anomaly {
                kind,
                message: format!("record {i}"),
            });
        }
        let text = summary(&report, Some(&[fault(1000.0, 3000.0)])).unwrap();
        assert!(text.contains("anomalies: 25 (lost_write 20, duplicate 5)"), "{text}");
        assert!(text.contains("  duplicate: record 0\n"), "{text}");
        assert!(!text.contains("record 20"), "{text}");
        assert!(text.contains("and 5 more"), "{text}");
        assert!(
            text.contains("fault kill 1000..3000 (2.0 s): unavailable 0 ms"),
            "{text}"
        );
        assert!(text.starts_with("checked: ") && text.contains(" events 0,"), "{text}");
    }

    #[test]
    fn json_report_carries_faults_with_their_unavailability() {
        let mut with_time = fault(1.0, 2.0);
        with_time.unavailable_ms = 42.0;
        let json: Value = serde_json::from_str(&to_json(&Report::default(), Some(&[with_time])).unwrap()).unwrap();
        assert_eq!(json["faults"][0]["unavailable_ms"], 42.0);
        assert_eq!(json["faults"][0]["node"], 2);
        assert_eq!(json["anomalies"], Value::Array(vec![]));
        assert!(json["stats"].is_object());
    }
}
