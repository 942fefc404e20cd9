//! Process and machine figures from `/proc`: CPU time (utime + stime), RSS and its peak, the task
//! and descriptor counts, and what machine this is.

use std::sync::OnceLock;
use std::time::Instant;

use serde::Serialize;

/// Whose figures: this process or another one.
#[derive(Debug, Clone, Copy)]
pub enum Pid {
    Myself,
    Other(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::Myself => "/proc/self".into(),
            Pid::Other(p) => format!("/proc/{p}"),
        }
    }
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 when it cannot be asked.
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime of the whole process, in clock ticks.
pub fn cpu_ticks(pid: Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("{}/stat", pid.dir())).ok()?;
    // The command name may hold spaces and parentheses; the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), so utime (14) and stime (15) are at 11 and 12.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU use of a process over an interval, in % of one core.
#[derive(Debug)]
pub struct CpuMeter {
    pid: Pid,
    ticks: u64,
    at: Instant,
}

impl CpuMeter {
    pub fn start(pid: Pid) -> Self {
        Self { pid, ticks: cpu_ticks(pid).unwrap_or(0), at: Instant::now() }
    }
    pub fn percent(&self) -> f64 {
        let ticks = cpu_ticks(self.pid).unwrap_or(self.ticks).saturating_sub(self.ticks);
        let secs = self.at.elapsed().as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        ticks as f64 / clk_tck() / secs * 100.0
    }
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, `Threads` …).
pub fn status_field(pid: Pid, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("{}/status", pid.dir())).ok()?;
    status
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

pub fn rss_kb(pid: Pid) -> u64 {
    status_field(pid, "VmRSS").unwrap_or(0)
}

pub fn peak_rss_kb(pid: Pid) -> u64 {
    status_field(pid, "VmHWM").unwrap_or(0)
}

/// Reset the process's peak RSS (`VmHWM`) to its current RSS (`echo 5 > clear_refs`), so that
/// the peak read later belongs to one step. False when the kernel refuses.
pub fn reset_peak(pid: Pid) -> bool {
    std::fs::write(format!("{}/clear_refs", pid.dir()), "5").is_ok()
}

/// Open file descriptors.
pub fn fds(pid: Pid) -> u64 {
    std::fs::read_dir(format!("{}/fd", pid.dir())).map(|d| d.count() as u64).unwrap_or(0)
}

/// Soft and hard `RLIMIT_NOFILE` of this process, from `/proc/self/limits`.
pub fn nofile_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let f: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    let parse = |s: &str| if s == "unlimited" { Some(u64::MAX) } else { s.parse().ok() };
    Some((parse(f.first()?)?, parse(f.get(1)?)?))
}

/// The machine the figures were taken on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// CPUs this (load) process may run on.
    pub load_cpus: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count().max(1);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        let load_cpus = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self { cores, cpu_model: model, kernel, load_cpus }
    }
}

/// `ppid` of a process, from `/proc/PID/stat`.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// `root` and every process below it (children, grandchildren …), as `/proc` lists them now.
pub fn tree(root: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|p| Some((p, ppid(p)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// What a process of a tree is, for a CPU breakdown: Chromium's `--type=` (and
/// `--utility-sub-type=`) when it has one, else its command name.
pub fn role(pid: u32) -> String {
    // Chromium rewrites the command line of the processes its zygote forks into one
    // space-separated string, so split on spaces too.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0 || *b == b' ')
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let flag = |name: &str| args.iter().find_map(|a| a.strip_prefix(name).map(str::to_owned));
    match (flag("--type="), flag("--utility-sub-type=")) {
        (Some(t), Some(sub)) => format!("{t}:{}", sub.rsplit('.').nth(1).unwrap_or(&sub)),
        (Some(t), None) => t,
        (None, _) => std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned(),
    }
}

/// CPU use of a process and all its descendants over an interval (% of one core), with a
/// breakdown by [`role`]. Processes that started during the interval count from zero; those
/// that ended are lost.
#[derive(Debug)]
pub struct TreeCpuMeter {
    root: u32,
    ticks: std::collections::HashMap<u32, u64>,
    at: Instant,
}

impl TreeCpuMeter {
    pub fn start(root: u32) -> Self {
        let ticks = tree(root).into_iter().filter_map(|p| Some((p, cpu_ticks(Pid::Other(p))?))).collect();
        Self { root, ticks, at: Instant::now() }
    }
    /// Total % of one core, and the same per role (largest first).
    pub fn percent(&self) -> (f64, Vec<(String, f64)>) {
        let secs = self.at.elapsed().as_secs_f64().max(1e-9);
        let mut by_role: Vec<(String, f64)> = Vec::new();
        let mut total = 0.0;
        for p in tree(self.root) {
            let Some(now) = cpu_ticks(Pid::Other(p)) else { continue };
            let pct = now.saturating_sub(self.ticks.get(&p).copied().unwrap_or(0)) as f64 / clk_tck() / secs * 100.0;
            total += pct;
            let r = role(p);
            match by_role.iter_mut().find(|(n, _)| *n == r) {
                Some(e) => e.1 += pct,
                None => by_role.push((r, pct)),
            }
        }
        by_role.sort_by(|a, b| b.1.total_cmp(&a.1));
        (total, by_role)
    }
}

/// Datagrams dropped on arrival (a full receive buffer) by the UDP sockets of `pids`, as the
/// `drops` column of `/proc/net/udp{,6}` counts them; sockets are matched by inode through
/// `/proc/PID/fd`.
pub fn udp_drops(pids: &[u32]) -> u64 {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else { continue };
            let link = link.to_string_lossy();
            if let Some(inode) = link.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut drops = 0;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 13 && inodes.contains(f[9]) {
                drops += f[12].parse::<u64>().unwrap_or(0);
            }
        }
    }
    drops
}

/// utime + stime, in clock ticks, of the threads of `pid` whose name (`/proc/PID/task/TID/comm`)
/// is `name`, summed; `None` when there is no such thread.
pub fn thread_ticks(pid: u32, name: &str) -> Option<u64> {
    let mut found = None;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let dir = task.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == name) {
            let stat = std::fs::read_to_string(dir.join("stat")).ok();
            let ticks = stat.as_deref().and_then(|s| {
                let f: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            });
            *found.get_or_insert(0) += ticks.unwrap_or(0);
        }
    }
    found
}

/// CPU use of the named threads of a process over an interval, in % of one core.
#[derive(Debug)]
pub struct ThreadCpuMeter {
    pid: u32,
    name: &'static str,
    ticks: Option<u64>,
    at: Instant,
}

impl ThreadCpuMeter {
    pub fn start(pid: u32, name: &'static str) -> Self {
        Self { pid, name, ticks: thread_ticks(pid, name), at: Instant::now() }
    }
    /// `None` when the process has no thread of that name.
    pub fn percent(&self) -> Option<f64> {
        let now = thread_ticks(self.pid, self.name)?;
        let secs = self.at.elapsed().as_secs_f64().max(1e-9);
        Some(now.saturating_sub(self.ticks.unwrap_or(0)) as f64 / clk_tck() / secs * 100.0)
    }
}

/// The 1-minute load average (`/proc/loadavg`).
pub fn loadavg1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// The type of the file system holding `path` (`ext4`, `tmpfs` …): the longest mount point of
/// `/proc/self/mounts` that is a prefix of it.
pub fn fs_type(path: &std::path::Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((*f.get(1)?, *f.get(2)?))
        })
        .filter(|(mnt, _)| path.starts_with(mnt.replace("\\040", " ")))
        .max_by_key(|(mnt, _)| mnt.len())
        .map(|(_, ty)| ty.to_owned())
}
