//! Resource sampling: the memory (RSS) and CPU of every lab process, every few hundred ms,
//! while a workload runs — so "< 200 MB per instance" (spec PR-004) is a chart over time, not a
//! single number read after the fact.
//!
//! # Why a plain OS thread
//!
//! The sampler must keep ticking while the load generator saturates the lab's tokio runtime,
//! and it must not add work to that runtime (that would distort the latencies it sits next to).
//! A dedicated `std::thread` that sleeps between samples does both; it stops when told, through
//! a channel, and hands its rows back when joined. It carries no tokio state, so it also works
//! from a notebook cell ([`crate::facade::Cluster::sample_resources`]).
//!
//! # RSS and private memory
//!
//! RSS counts every page a process has in RAM, including the pages of its executable: for a
//! `surreal` node ~60 MB of its RSS is the 220 MB binary's code, which the kernel shares between
//! all nodes. `anon_mb` (Linux `RssAnon`) is the process's own memory — heap, stacks, buffers —
//! and is what grows with load; two nodes cost about `2 × anon + one binary`, not `2 × RSS`.
//!
//! # What CPU % means
//!
//! `sysinfo` reports a process's CPU use since the previous refresh as a percentage of *one*
//! core, so a busy process on a 2-core machine can show up to 200 %. The first sample of each
//! process has no previous refresh and reads 0; it is kept (its RSS is valid) and
//! [`mean_cpu`] leaves it out.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::vocab::error::LabError;
use crate::vocab::frames::frame;
use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// The default interval: fine enough to see a spike, coarse enough to cost nothing measurable.
pub const DEFAULT_EVERY: Duration = Duration::from_millis(250);

/// Bytes per MB in every table of the lab (1 MB = 1,048,576 bytes, like `ps` and `top`).
const MB: f64 = 1024.0 * 1024.0;

/// One process at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// Milliseconds since the sampler started.
    pub t_ms: f64,
    /// `node-a`, …, `storage`, or `client` (the process running the load generator).
    pub process: String,
    /// Its pid.
    pub pid: u32,
    /// Resident memory in MB.
    pub rss_mb: f64,
    /// The private part of it (heap, stacks; not the shared code of the binary), in MB. Linux
    /// only.
    #[serde(default)]
    pub anon_mb: Option<f64>,
    /// CPU since the previous sample, in % of one core (0 on the first sample).
    pub cpu_pct: f64,
}

/// A running sampler; [`Sampler::stop`] ends it and returns every row.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Vec<ResourceSample>>,
}

impl Sampler {
    /// Starts sampling `targets` (`(process name, pid)`) every `every` (at least 20 ms). One
    /// sample is taken at once, so even a very short run has a row for every process.
    pub fn start(targets: Vec<(String, u32)>, every: Duration) -> Sampler {
        let every = every.max(Duration::from_millis(20));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lab-sampler".into())
            .spawn(move || sample_loop(&targets, every, &stopped))
            .expect("spawning the sampler thread");
        Sampler { stop, thread }
    }

    /// Stops the thread (after one last sample) and returns the rows in time order.
    pub fn stop(self) -> Vec<ResourceSample> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

fn sample_loop(
    targets: &[(String, u32)],
    every: Duration,
    stopped: &mpsc::Receiver<()>,
) -> Vec<ResourceSample> {
    let Ok(mut sys) = System::new() else {
        return Vec::new();
    };
    let pids: Vec<Pid> = targets.iter().map(|(_, p)| Pid::from_u32(*p)).collect();
    let t0 = Instant::now();
    let mut rows = Vec::new();
    loop {
        sample_once(&mut sys, targets, &pids, t0, &mut rows);
        // `recv_timeout` doubles as the sleep: a stop request ends the wait at once.
        match stopped.recv_timeout(every) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            // Stopped (or the owner is gone): one final sample, so the end of the run is covered.
            _ => {
                sample_once(&mut sys, targets, &pids, t0, &mut rows);
                return rows;
            }
        }
    }
}

fn sample_once(
    sys: &mut System,
    targets: &[(String, u32)],
    pids: &[Pid],
    t0: Instant,
    rows: &mut Vec<ResourceSample>,
) {
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(pids),
        true,
        ProcessRefreshKind::nothing().with_memory().with_cpu(),
    );
    let t_ms = t0.elapsed().as_secs_f64() * 1000.0;
    for ((name, pid), spid) in targets.iter().zip(pids) {
        // A process that has exited (or was never there) simply has no row at this instant.
        if let Some(p) = sys.process(*spid) {
            rows.push(ResourceSample {
                t_ms,
                process: name.clone(),
                pid: *pid,
                rss_mb: p.memory() as f64 / MB,
                anon_mb: anon_mb(*pid),
                cpu_pct: p.cpu_usage() as f64,
            });
        }
    }
}

/// `RssAnon` from `/proc/<pid>/status`, in MB (None elsewhere than Linux, or when unreadable).
pub fn anon_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The highest private memory (`anon_mb`) seen per process, in first-seen order.
pub fn peak_anon(rows: &[ResourceSample]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for r in rows {
        let Some(mb) = r.anon_mb else { continue };
        match out.iter_mut().find(|(p, _)| *p == r.process) {
            Some((_, peak)) => *peak = peak.max(mb),
            None => out.push((r.process.clone(), mb)),
        }
    }
    out
}

/// Samples `targets` for `duration` in the calling thread and returns the rows.
pub fn sample_for(
    targets: Vec<(String, u32)>,
    duration: Duration,
    every: Duration,
) -> Vec<ResourceSample> {
    let sampler = Sampler::start(targets, every);
    std::thread::sleep(duration);
    sampler.stop()
}

/// RSS over time per process, in sampling order: `(process, [(seconds, MB)])`, the input of
/// `present::charts::rss_over_time`.
pub fn rss_series(rows: &[ResourceSample]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for s in rows {
        let point = (s.t_ms / 1000.0, s.rss_mb);
        match series.iter_mut().find(|(p, _)| *p == s.process) {
            Some((_, points)) => points.push(point),
            None => series.push((s.process.clone(), vec![point])),
        }
    }
    series
}

/// The highest RSS seen per process, in first-seen order: `(process, peak MB)`.
pub fn peak_rss(rows: &[ResourceSample]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|(p, _)| *p == r.process) {
            Some((_, peak)) => *peak = peak.max(r.rss_mb),
            None => out.push((r.process.clone(), r.rss_mb)),
        }
    }
    out
}

/// Mean CPU % per process, leaving out each process's first sample (which has no previous
/// refresh to measure against and always reads 0).
pub fn mean_cpu(rows: &[ResourceSample]) -> Vec<(String, f64)> {
    // (process, sum, samples after the first)
    let mut acc: Vec<(String, f64, usize)> = Vec::new();
    for r in rows {
        match acc.iter_mut().find(|(p, _, _)| *p == r.process) {
            Some((_, sum, n)) => {
                *sum += r.cpu_pct;
                *n += 1;
            }
            None => acc.push((r.process.clone(), 0.0, 0)),
        }
    }
    acc.into_iter()
        .map(|(p, sum, n)| (p, if n == 0 { 0.0 } else { sum / n as f64 }))
        .collect()
}

/// The rows as a table: t_ms, process, pid, rss_mb, anon_mb, cpu_pct.
pub fn resources_frame(rows: &[ResourceSample]) -> Result<DataFrame, LabError> {
    frame(vec![
        Column::new(
            "t_ms".into(),
            rows.iter().map(|r| r.t_ms).collect::<Vec<_>>(),
        ),
        Column::new(
            "process".into(),
            rows.iter().map(|r| r.process.clone()).collect::<Vec<_>>(),
        ),
        Column::new("pid".into(), rows.iter().map(|r| r.pid).collect::<Vec<_>>()),
        Column::new(
            "rss_mb".into(),
            rows.iter().map(|r| r.rss_mb).collect::<Vec<_>>(),
        ),
        Column::new(
            "anon_mb".into(),
            rows.iter().map(|r| r.anon_mb).collect::<Vec<_>>(),
        ),
        Column::new(
            "cpu_pct".into(),
            rows.iter().map(|r| r.cpu_pct).collect::<Vec<_>>(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process_and_skips_missing_ones() {
        let me = std::process::id();
        let rows = sample_for(
            vec![("client".into(), me), ("ghost".into(), u32::MAX - 7)],
            Duration::from_millis(120),
            Duration::from_millis(40),
        );
        assert!(rows.len() >= 2, "{rows:?}");
        assert!(rows.iter().all(|r| r.process == "client" && r.rss_mb > 0.0));
        assert!(rows.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
        let peaks = peak_rss(&rows);
        assert_eq!(peaks.len(), 1);
        let df = resources_frame(&rows).unwrap();
        assert_eq!(df.height(), rows.len());
        assert_eq!(df.width(), 6);
        if cfg!(target_os = "linux") {
            let anon = rows[0].anon_mb.expect("RssAnon on Linux");
            assert!(anon > 0.0 && anon <= rows[0].rss_mb + 1.0);
            assert_eq!(peak_anon(&rows).len(), 1);
        }
    }
}
