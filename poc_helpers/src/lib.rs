//! `poc_helpers`: start a small SurrealDB cluster on this machine, talk to each node, see which node
//! served every operation, measure it, break it, and clean up — from a notebook, a test or the
//! `lab` CLI, through one synchronous API.
//!
//! ```no_run
//! use poc_helpers::prelude::*;
//!
//! let cluster = Cluster::builder().start().expect("two nodes on 8000 and 8001");
//! cluster.create_user("a", "Ada", "ada@example.com").unwrap();   // [node-a :8000] CREATE … → 1 row
//! cluster.sql("b", "SELECT * FROM user").unwrap();               // [node-b :8001] SELECT … → 0 rows
//! cluster.status().unwrap().show();                               // HTML table in a notebook
//! cluster.cleanup().unwrap();
//! ```
//!
//! # Layout
//!
//! Five rooms, each importing only the rooms above it in this list, so a reader knows what a
//! file may touch (the `layering` test below fails on any import that goes the wrong way):
//!
//! 1. [`vocab`] — plain data every layer speaks: `NodeRef`, `NodeAction`, `NodeState`,
//!    `LabConfig` and `StorageMode`, `Fault` and the fault log, `OpRecord`, `User`/`Post`,
//!    and `LabError` (every message says what happened and how to fix it). Imports nothing else
//!    of this crate.
//! 2. [`infra`] — processes and wires: processes by pid, ports, binaries, one `surreal` node,
//!    the embedded storage node, storage tiers, the fault proxy and links, SDK sessions, the
//!    resource sampler, the storage trace, status measurements.
//! 3. [`present`] — charts (SVG) and tables (HTML); inputs are plain data.
//! 4. [`experiments`] — workload, bank (run → history, pure checker → verdict), conflicts,
//!    LIVE SELECT, membership, consistency. Each runs as `run(plan, harness)` against the
//!    narrow `Harness` trait, never against the actor or the facade.
//! 5. [`actor`] — the thread that owns a lab: the `Command` enum, the thread, and `Lab`, split
//!    by concern (start, query, load, status, faults, state file) and implementing `Harness`.
//! 6. [`facade`] — `Cluster` and `ClusterBuilder`, the synchronous API of notebooks, tests and
//!    the CLI: every method sends one command to the actor and waits for the reply.
//!
//! Only `lib.rs` names the facade, through the [`prelude`].
//!
//! Notebook cells can only name crates they `:dep` themselves, so this crate re-exports the two it
//! hands out: [`polars`] (DataFrames) and [`serde_json`] (query rows).

// `LabError` carries a whole explanation (node, statement, message, fix) by design: errors are
// rare, read by people, and cross threads as plain data, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod actor;
pub mod experiments;
pub mod facade;
pub mod infra;
pub mod present;
pub mod vocab;

pub use polars;
pub use serde_json;

/// Everything a notebook usually needs: `use poc_helpers::prelude::*;`.
pub mod prelude {
    pub use crate::experiments::bank::{Anomaly, BankPlan, BankReport, Validity, Verdict};
    pub use crate::experiments::commit_shape::CommitShape;
    pub use crate::experiments::conflicts::{ContentionPlan, RetryPolicy};
    pub use crate::experiments::consistency::Comparison;
    pub use crate::experiments::handoff::Handoff;
    pub use crate::experiments::majority_loss::MajorityLoss;
    pub use crate::experiments::partitions::drops::{DropPlan, DropReport};
    pub use crate::experiments::partitions::{ClientCutReport, LatencyReport};
    pub use crate::experiments::production::backup::BackupReport;
    pub use crate::experiments::production::define_race::DefineRace;
    pub use crate::experiments::production::feeds::FeedReport;
    pub use crate::experiments::production::life::{LifeReport, LifeRun};
    pub use crate::experiments::production::rolling::RollingRun;
    pub use crate::experiments::production::schema_race::SchemaRace;
    pub use crate::experiments::replica_cost::{ReplicaCost, WriteSample};
    pub use crate::experiments::scale_out::NodeJoin;
    pub use crate::experiments::store_failover::StoreFailover;
    pub use crate::experiments::unique::{LoserSaw, UniqueRaceReport};
    pub use crate::experiments::waterfall::Waterfall;
    pub use crate::experiments::workload::explain::compare_throughput;
    pub use crate::experiments::workload::spec_check::{DEGRADATION_K, SpecCheck};
    pub use crate::experiments::workload::{
        ErrorClass, NodePolicy, Op, SWEEP_LEVELS, ScaleOutReport, SweepReport, WorkloadKind,
        WorkloadPlan, WorkloadReport,
    };
    pub use crate::facade::{Cluster, ClusterBuilder, Endpoint, WhereIs};
    pub use crate::infra::http_api::{FailoverClient, HttpAuth};
    pub use crate::infra::metrics::Instance;
    pub use crate::infra::placement::{Placement, Region, Store};
    pub use crate::infra::trace::TraceRow;
    pub use crate::present::charts::Chart;
    pub use crate::present::display::{ShowExt, Table};
    pub use crate::present::exercise::{Check, check};
    pub use crate::present::takeaway::Takeaway;
    pub use crate::vocab::config::{Engine, LiveQueryEngine, MembershipIntervals, StorageMode};
    pub use crate::vocab::entities::{Post, User};
    pub use crate::vocab::error::LabError;
    pub use crate::vocab::faults::{Fault, FaultStep, Link, LinkFault};
    pub use crate::vocab::nodes::{NodeAction, NodeRef, NodeState};
    pub use crate::vocab::oplog::OpRecord;
    pub use crate::vocab::query::{QueryResult, StatementResult};
    pub use polars::prelude::DataFrame;
    // Cells name the crate (`serde_json::json!`, `serde_json::Value`) without a `:dep` of their own.
    pub use crate::serde_json;
    pub use serde_json::{Value, json};
}

/// The layout above, checked: every `crate::` path in the crate's code (not its docs or tests)
/// must point to the same room or a room listed before it, the module graph must have no circle,
/// and no file may grow past ~600 lines. A new import that goes the wrong way fails here with
/// the file and the path, so the rooms stay as documented.
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    /// The rooms, lowest first: a room may use only itself and the rooms before it.
    const ROOMS: [&str; 6] = [
        "vocab",
        "infra",
        "present",
        "experiments",
        "actor",
        "facade",
    ];
    /// `present` draws plain data, so it may use only the vocabulary, not `infra`.
    const PRESENT_MAY_USE: [&str; 2] = ["vocab", "present"];
    /// Longest file allowed (the issue's "~600 lines", with a little slack).
    const MAX_LINES: usize = 650;

    fn rank(room: &str) -> usize {
        ROOMS.iter().position(|r| *r == room).unwrap_or(usize::MAX)
    }

    /// Every `.rs` file under `dir`.
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// A module of the graph: `infra::storage`, `experiments::bank`, `actor::lab`. The facade
    /// is one node: it is one type (`Cluster`) split by concern.
    fn node(room: &str, module: &str) -> String {
        if room == "facade" {
            "facade".into()
        } else {
            format!("{room}::{}", module.trim_end_matches(".rs"))
        }
    }

    /// The code of a file without comments and without its `#[cfg(test)]` part.
    fn code(text: &str) -> String {
        let body = text.split("#[cfg(test)]").next().unwrap_or("");
        body.lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `(room, module)` of every `crate::room::module` path in `code`.
    fn uses(code: &str) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for part in code.split("crate::").skip(1) {
            let mut segs = part.split("::").map(|s| {
                s.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            });
            let (Some(room), Some(module)) = (segs.next(), segs.next()) else {
                continue;
            };
            if ROOMS.contains(&room.as_str()) {
                out.insert((room, module));
            }
        }
        out
    }

    #[test]
    fn rooms_only_use_rooms_below_them_and_modules_form_no_circle() {
        // The folder `cargo test` runs this from, read at run time: the compile-time
        // `env!("CARGO_MANIFEST_DIR")` names the clone that first compiled this test, and a clone
        // elsewhere sharing the lab's cache target folder reuses that binary (cargo tracks the
        // sources by relative path). A CI run once failed here on a clone that no longer existed.
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        let src = manifest.join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let mut wrong = Vec::new();
        let mut long = Vec::new();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for path in &all {
            let text = std::fs::read_to_string(path).unwrap();
            let lines = text.lines().count();
            let rel = path.strip_prefix(&src).unwrap();
            if lines > MAX_LINES {
                long.push(format!("{} ({lines} lines)", rel.display()));
            }
            let parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let [room, module, ..] = parts.as_slice() else {
                continue; // lib.rs: the map of the rooms, allowed to name them all
            };
            let from = node(room, module);
            for (to_room, to_module) in uses(&code(&text)) {
                let allowed = if room == "present" {
                    PRESENT_MAY_USE.contains(&to_room.as_str())
                } else {
                    rank(&to_room) <= rank(room)
                };
                if !allowed {
                    wrong.push(format!(
                        "{} uses crate::{to_room}::{to_module}",
                        rel.display()
                    ));
                }
                let to = node(&to_room, &to_module);
                if to != from {
                    graph.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports against the layering:\n{}",
            wrong.join("\n")
        );
        assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
        // Depth-first search for a back edge.
        fn visit(
            n: &str,
            g: &BTreeMap<String, BTreeSet<String>>,
            state: &mut BTreeMap<String, u8>,
            stack: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            match state.get(n) {
                Some(2) => return None,
                Some(1) => {
                    let at = stack.iter().position(|s| s == n).unwrap();
                    let mut circle = stack[at..].to_vec();
                    circle.push(n.to_string());
                    return Some(circle);
                }
                _ => {}
            }
            state.insert(n.to_string(), 1);
            stack.push(n.to_string());
            for m in g.get(n).into_iter().flatten() {
                if let Some(c) = visit(m, g, state, stack) {
                    return Some(c);
                }
            }
            stack.pop();
            state.insert(n.to_string(), 2);
            None
        }
        let mut state = BTreeMap::new();
        for n in graph.keys() {
            if let Some(circle) = visit(n, &graph, &mut state, &mut Vec::new()) {
                panic!("import circle: {}", circle.join(" → "));
            }
        }
    }
}
