//! The report: a readable table on stdout and a JSON document whose schema is
//! `schema/report-v1.json` (bump `SCHEMA_VERSION` on any incompatible change).

use crate::stats::Latency;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: String,
    pub tool_version: String,
    /// RFC 3339 start time of the run.
    pub started: String,
    /// `spawned` (this tool started the broker) or `remote`.
    pub target: String,
    pub machine: Machine,
    pub scenarios: Vec<ScenarioResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    pub cpu_model: String,
    pub memory_mib: u64,
}

/// Per-step throughput and latency of the lifecycle scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepFigures {
    pub per_sec: f64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub params: BTreeMap<String, serde_json::Value>,
    /// MiB/s of the scenario's main transfer (upload, download); null for the others.
    pub mb_per_sec: Option<f64>,
    /// Whole lifecycles per second (lifecycle, mixed); null for the others.
    pub lifecycles_per_sec: Option<f64>,
    /// Failed requests (non-2xx answers and transport errors), 0 when none.
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    /// Latency per request across all steps (lifecycle, mixed) or of the transfer itself.
    pub latency_ms: Option<Latency>,
    pub steps: BTreeMap<String, StepFigures>,
    /// The broker's peak RSS during the scenario (null when the broker runs elsewhere).
    pub peak_rss_mib: Option<f64>,
    /// The broker's CPU time (user + system) during the scenario.
    pub cpu_seconds: Option<f64>,
    /// Further named figures of the scenario (e.g. `parallel_mb_per_sec`, `p99_growth`).
    pub figures: BTreeMap<String, f64>,
    /// Anchors measured in the same run (MiB/s unless the name says otherwise).
    pub anchors: BTreeMap<String, f64>,
    /// Broker figures divided by anchors.
    pub ratios: BTreeMap<String, f64>,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel,
            cpu_model,
            memory_mib,
        }
    }
}

fn fmt_latency(l: &Latency) -> String {
    format!(
        "p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        l.p50, l.p95, l.p99, l.max
    )
}

impl ScenarioResult {
    /// The readable form printed after each scenario.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!("== {} ({})\n", self.scenario, params.join(", ")));
        let mut line = |name: &str, value: String| out.push_str(&format!("  {name:<28} {value}\n"));
        if let Some(v) = self.mb_per_sec {
            line("MiB/s", format!("{v:.1}"));
        }
        if let Some(v) = self.lifecycles_per_sec {
            line("lifecycles/s", format!("{v:.1}"));
        }
        for (name, value) in &self.figures {
            line(name, format!("{value:.2}"));
        }
        if let Some(l) = &self.latency_ms {
            line("latency per request", fmt_latency(l));
        }
        for (step, f) in &self.steps {
            line(
                &format!("  {step}"),
                format!("{:.1}/s  {}", f.per_sec, fmt_latency(&f.latency_ms)),
            );
        }
        let by_status: Vec<String> = self
            .errors_by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        line(
            "errors",
            if by_status.is_empty() {
                "0".into()
            } else {
                format!("{} ({})", self.errors, by_status.join(", "))
            },
        );
        if let Some(v) = self.peak_rss_mib {
            line("broker peak RSS", format!("{v:.1} MiB"));
        }
        if let Some(v) = self.cpu_seconds {
            line("broker CPU time", format!("{v:.2} s"));
        }
        for (name, value) in &self.anchors {
            line(&format!("anchor {name}"), format!("{value:.1}"));
        }
        for (name, value) in &self.ratios {
            line(&format!("ratio {name}"), format!("{value:.2}"));
        }
        out
    }
}
