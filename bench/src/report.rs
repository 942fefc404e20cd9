//! Results: one JSON object per scenario (stdout, one line each) and a readable table per
//! scenario with the targets beside the figures (pass/miss, never an assertion).

use serde::Serialize;
use serde_json::Value;

use crate::hostprobe::HostProbe;
use crate::procstat::Machine;
use crate::stats::Hist;

/// A target printed next to what was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: String,
    pub target: String,
    pub measured: String,
    /// `None`: not measured in this run (e.g. the step was not run).
    pub pass: Option<bool>,
}

impl Target {
    pub fn new(
        what: impl Into<String>,
        target: impl Into<String>,
        measured: impl Into<String>,
        pass: Option<bool>,
    ) -> Self {
        Self { what: what.into(), target: target.into(), measured: measured.into(), pass }
    }
}

/// Where and how the figures were taken.
#[derive(Debug, Clone, Serialize)]
pub struct Env {
    pub machine: Machine,
    /// The host's speed, read on the tool's CPU before the scenarios (`hostprobe`).
    pub host_probe: Option<HostProbe>,
    pub git: Option<String>,
    pub profile: &'static str,
    pub server_bin: String,
    pub server_cpu: Option<String>,
    pub load_cpu: Option<String>,
    pub smoke: bool,
    pub date: String,
}

#[derive(Debug, Default, Clone)]
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    /// The scenario ran to the end and measured something (not: met its targets).
    pub ok: bool,
    pub errors: Vec<String>,
    pub wall_s: f64,
    pub env: Env,
    pub steps: Vec<Value>,
    pub targets: Vec<Target>,
    #[serde(skip)]
    pub table: Table,
}

/// Latency quantiles in µs, for JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub p999_us: Option<u64>,
    pub max_us: Option<u64>,
    pub mean_us: Option<f64>,
}

impl From<&Hist> for Latency {
    fn from(h: &Hist) -> Self {
        Self {
            samples: h.n,
            p50_us: h.quantile(0.5),
            p99_us: h.quantile(0.99),
            p999_us: h.quantile(0.999),
            max_us: (h.n > 0).then_some(h.max_us),
            mean_us: h.mean_us(),
        }
    }
}

pub fn ms(us: Option<u64>) -> String {
    us.map(|u| format!("{:.2}", u as f64 / 1000.0)).unwrap_or_else(|| "-".into())
}

pub fn pct(f: Option<f64>) -> String {
    f.map(|f| format!("{:.3}%", f * 100.0)).unwrap_or_else(|| "-".into())
}

pub fn mark(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "pass",
        Some(false) => "MISS",
        None => "n/a",
    }
}

fn render_rows(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(&format!("{c:>w$}"));
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect()));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The readable form of one scenario.
pub fn render(r: &ScenarioReport) -> String {
    let mut out = format!(
        "\n== {} ({}, {:.1} s){}\n",
        r.scenario,
        if r.ok { "ran" } else { "FAILED" },
        r.wall_s,
        if r.env.smoke { " [smoke: tiny sizes, figures not meaningful]" } else { "" }
    );
    if !r.table.rows.is_empty() {
        out.push_str(&render_rows(&r.table.headers, &r.table.rows));
    }
    if !r.targets.is_empty() {
        out.push_str("targets:\n");
        let rows: Vec<Vec<String>> = r
            .targets
            .iter()
            .map(|t| vec![t.what.clone(), t.target.clone(), t.measured.clone(), mark(t.pass).to_owned()])
            .collect();
        out.push_str(&render_rows(&["what", "target", "measured", "result"], &rows));
    }
    for e in &r.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    out
}

pub fn render_env(env: &Env) -> String {
    let probe = match &env.host_probe {
        Some(p) => format!(
            "; host probe: AES-128-GCM {:.0} MB/s, a loopback UDP datagram {:.1} µs",
            p.aes_gcm_mb_s, p.udp_loopback_us
        ),
        None => String::new(),
    };
    format!(
        "railcast-bench {} build, git {}, {} — {} cores ({}), kernel {}; server CPU {}, load CPU {} (allowed: {}){}\n",
        env.profile,
        env.git.as_deref().unwrap_or("?"),
        env.date,
        env.machine.cores,
        env.machine.cpu_model,
        env.machine.kernel,
        env.server_cpu.as_deref().unwrap_or("any"),
        env.load_cpu.as_deref().unwrap_or("any"),
        env.machine.load_cpus,
        probe,
    )
}

/// What a scenario hands back; `main` adds the environment and the wall time.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ok: bool,
    pub errors: Vec<String>,
    pub steps: Vec<Value>,
    pub targets: Vec<Target>,
    pub table: Table,
}

impl Outcome {
    pub fn new(headers: Vec<&'static str>) -> Self {
        Self { ok: true, table: Table { headers, rows: Vec::new() }, ..Self::default() }
    }
    /// A failure that makes the scenario count as not run.
    pub fn fail(&mut self, e: impl std::fmt::Display) {
        self.ok = false;
        self.errors.push(e.to_string());
    }
    pub fn step(&mut self, step: &impl Serialize) {
        self.steps.push(serde_json::to_value(step).unwrap_or(Value::Null));
    }
}
