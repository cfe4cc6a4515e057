//! Measuring: CPU time of the server (from /proc) and of the load generator itself,
//! latency histograms, and the one-line `RESULT` report the bench script parses.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// CPU seconds (user + system, all threads) a process has used so far, from
/// `/proc/PID/stat` fields 14 and 15.
pub fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a constant of the C library.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

/// CPU seconds a process's threads have run, from the first field of each
/// `/proc/PID/task/TID/schedstat` (nanoseconds on a CPU): `/proc/PID/stat` counts in clock
/// ticks (10 ms here), too coarse for a replay that costs the server tens of milliseconds.
pub fn process_runtime(pid: u32) -> Option<f64> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let stat = std::fs::read_to_string(path).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// CPU seconds this process has used (getrusage).
pub fn self_cpu() -> f64 {
    // SAFETY: rusage is plain old data (all-zero is valid) and getrusage only writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises the soft open-files limit to the hard limit: 10,000 connections need 10,000
/// descriptors.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the rlimit struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// CPU used by the server and by us over a measured window.
pub struct CpuWindow {
    pid: Option<u32>,
    server0: Option<f64>,
    self0: f64,
}

impl CpuWindow {
    pub fn start(pid: Option<u32>) -> CpuWindow {
        CpuWindow {
            pid,
            server0: pid.and_then(process_cpu),
            self0: self_cpu(),
        }
    }

    /// (server CPU seconds, load generator CPU seconds) since `start`.
    pub fn stop(&self) -> (Option<f64>, f64) {
        let server = match (self.pid.and_then(process_cpu), self.server0) {
            (Some(b), Some(a)) => Some(b - a),
            _ => None,
        };
        (server, self_cpu() - self.self0)
    }
}

/// A latency histogram in microseconds, 1 µs to 100 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid bounds")
}

/// Records a latency, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, 100_000_000);
    let _ = h.record(us);
}

/// The machine-readable report: `RESULT key=value ...` on stdout.
pub struct Report(String);

impl Report {
    pub fn new(mode: &str) -> Report {
        Report(format!("RESULT mode={mode}"))
    }

    pub fn add(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Report {
        let _ = write!(self.0, " {key}={value}");
        self
    }

    pub fn add_f(&mut self, key: &str, value: f64) -> &mut Report {
        let _ = write!(self.0, " {key}={value:.3}");
        self
    }

    /// Adds server and load-generator CPU, and `per_server_cpu_s` = `count` / server CPU.
    pub fn add_cpu(&mut self, count: u64, secs: f64, server: Option<f64>, own: f64) -> &mut Report {
        if let Some(s) = server {
            self.add_f("server_cpu_s", s);
            self.add_f("server_cpu_pct", 100.0 * s / secs.max(1e-9));
            if s > 0.0 {
                self.add_f("per_server_cpu_s", count as f64 / s);
            }
        }
        self.add_f("loadgen_cpu_pct", 100.0 * own / secs.max(1e-9));
        self
    }

    pub fn add_latency(&mut self, h: &Histogram<u64>) -> &mut Report {
        if h.is_empty() {
            return self;
        }
        self.add("p50_us", h.value_at_quantile(0.50))
            .add("p99_us", h.value_at_quantile(0.99))
            .add("max_us", h.max())
    }

    pub fn print(&self) {
        println!("{}", self.0);
    }
}
