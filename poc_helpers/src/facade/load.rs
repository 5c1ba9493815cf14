//! Load: workloads and sweeps on the lab's session pools, and sampling the processes.

use std::time::Duration;

use polars::prelude::DataFrame;

use crate::experiments::workload::{ScaleOutReport, SweepReport, WorkloadPlan, WorkloadReport};

use super::Cluster;
use crate::actor::command::Command;
use crate::vocab::error::LabError;

impl Cluster {
    /// Runs a load workload and returns what it measured (see [`crate::experiments::workload`]):
    ///
    /// ```no_run
    /// # use poc_helpers::prelude::*;
    /// # let cluster = Cluster::builder().start().unwrap();
    /// let report = cluster
    ///     .run_workload(WorkloadPlan::read_after_write().concurrency(100))
    ///     .unwrap();
    /// report.summary_frame().unwrap().show();
    /// ```
    ///
    /// The run blocks this thread for `warmup + duration` (plus a one-time set-up: opening the
    /// session pools and inserting the records). Prints the report's headline unless
    /// `set_echo(false)`. Individual operations are not added to the operation log.
    pub fn run_workload(&self, spec: WorkloadPlan) -> Result<WorkloadReport, LabError> {
        let report = self
            .actor
            .call(|reply| Command::Workload { plan: spec, reply })??;
        self.say(&format!("[load] {}", report.headline()));
        Ok(report)
    }

    /// The same workload at each concurrency level in turn (e.g. [`SWEEP_LEVELS`](crate::experiments::workload::SWEEP_LEVELS): 1 → 200
    /// clients), for percentile and throughput charts against concurrency.
    pub fn run_sweep(&self, spec: WorkloadPlan, levels: &[usize]) -> Result<SweepReport, LabError> {
        let mut runs = Vec::with_capacity(levels.len());
        for (k, level) in levels.iter().enumerate() {
            // The records only need preparing once.
            let spec = spec
                .clone()
                .concurrency(*level)
                .prepare(spec.prepare && k == 0);
            runs.push(self.run_workload(spec)?);
        }
        Ok(SweepReport { runs })
    }

    /// The same workload served by the first `n` query nodes, for each `n` of `node_counts`
    /// (e.g. `&[1, 2, 3]`), on this lab and its storage: throughput, latency and every process's
    /// CPU share per node count (see [`ScaleOutReport`]). The lab needs the most nodes asked
    /// for: add them first with [`add_node`](Self::add_node).
    pub fn run_scale_out(
        &self,
        spec: WorkloadPlan,
        node_counts: &[usize],
    ) -> Result<ScaleOutReport, LabError> {
        let mut runs = Vec::with_capacity(node_counts.len());
        for (k, n) in node_counts.iter().enumerate() {
            let spec = spec.clone().on_nodes(*n).prepare(spec.prepare && k == 0);
            runs.push(self.run_workload(spec)?);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(ScaleOutReport { runs, cores })
    }

    /// `(name, pid)` of every running lab process: `node-a`, …, then `storage` (shared mode).
    pub fn processes(&self) -> Result<Vec<(String, u32)>, LabError> {
        self.actor.call(|reply| Command::Processes { reply })
    }

    /// Samples the RSS and CPU of every lab process every `every` for `duration` (blocking),
    /// e.g. while the lab idles: t_ms, process, pid, rss_mb, cpu_pct. Workload reports carry the
    /// same table for their run ([`WorkloadReport::resources`]).
    pub fn sample_resources(
        &self,
        duration: Duration,
        every: Duration,
    ) -> Result<DataFrame, LabError> {
        let rows = crate::infra::sampler::sample_for(self.processes()?, duration, every);
        crate::infra::sampler::resources_frame(&rows)
    }
}
