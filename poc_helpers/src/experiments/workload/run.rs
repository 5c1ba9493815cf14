//! Running a workload: the clients, the recorder they share, and the summary of what they saw.
//! The actor owns the sessions, prepares the records and runs the resource sampler around
//! [`run`]; this file only drives the clients over the sessions it is lent.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::report::{OpSample, OpSummary, RawCheck};
use super::{
    ErrorClass, HIST_MAX_US, MAX_SAMPLES, NodePolicy, Op, PREPARE_CHUNK, RAW_KEYS_PER_CLIENT,
    WorkloadKind, WorkloadPlan,
};
use crate::infra::client::Db;
use crate::present::charts::LatencyBucket;

/// One node as the runner sees it: its name and its borrowed session pool.
pub(crate) struct Target<'a> {
    pub name: String,
    pub sessions: &'a [Db],
}

/// What the actor hands the runner besides the spec.
pub(crate) struct RunContext<'a> {
    pub targets: Vec<Target<'a>>,
    /// Unique per run, so a read-after-write check can never be fooled by an earlier run's value.
    pub nonce: u64,
}

/// Recorded counts and latencies of one (node, operation).
struct Cell {
    hist: Histogram<u64>,
    errors: [u64; 4],
}

impl Cell {
    fn new() -> Cell {
        Cell {
            hist: Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds"),
            errors: [0; 4],
        }
    }
}

/// Shared by all clients of a run. Only the actor thread touches it (all clients are polled
/// there), so a `RefCell` suffices; no borrow is ever held across an `.await`.
struct Recorder {
    /// `cells[node * 4 + op]`, created on first use.
    cells: Vec<Option<Cell>>,
    recorded: u64,
    last_done: Option<Instant>,
    raw: RawCheck,
    error_examples: Vec<(ErrorClass, String)>,
    samples: Vec<OpSample>,
}

/// What one operation produced.
enum Outcome {
    Ok(surrealdb::types::Value),
    Failed(ErrorClass, String),
}

struct Shared<'a> {
    spec: &'a WorkloadPlan,
    targets: &'a [Target<'a>],
    measure_from: Instant,
    end: Instant,
    nonce: u64,
    rec: RefCell<Recorder>,
}

impl Shared<'_> {
    fn done(&self) -> bool {
        Instant::now() >= self.end
            || self
                .spec
                .max_ops
                .is_some_and(|max| self.rec.borrow().recorded >= max)
    }

    /// Records one finished operation if it started inside the measured window.
    fn record(
        &self,
        client: usize,
        node: usize,
        op: Op,
        started: Instant,
        outcome: &Outcome,
    ) -> bool {
        if started < self.measure_from {
            return false;
        }
        let now = Instant::now();
        let took = now.duration_since(started);
        let mut rec = self.rec.borrow_mut();
        if self.spec.max_ops.is_some_and(|max| rec.recorded >= max) {
            return false;
        }
        rec.recorded += 1;
        rec.last_done = Some(rec.last_done.map_or(now, |t| t.max(now)));
        let cell = rec.cells[node * 4 + op.index()].get_or_insert_with(Cell::new);
        let error = match outcome {
            Outcome::Ok(_) => {
                cell.hist
                    .saturating_record((took.as_micros() as u64).max(1));
                None
            }
            Outcome::Failed(class, message) => {
                cell.errors[*class as usize] += 1;
                if !rec.error_examples.iter().any(|(c, _)| c == class) {
                    rec.error_examples.push((*class, message.clone()));
                }
                Some(*class)
            }
        };
        if self.spec.keep_samples && rec.samples.len() < MAX_SAMPLES {
            rec.samples.push(OpSample {
                t_ms: started.duration_since(self.measure_from).as_secs_f64() * 1000.0,
                client: client as u32,
                node: self.targets[node].name.clone(),
                op,
                ms: took.as_secs_f64() * 1000.0,
                error,
            });
        }
        true
    }
}

/// Runs one statement with the op timeout and returns its first result.
async fn exec(db: &Db, query: String, limit: Duration) -> Outcome {
    let run = async {
        let mut response = db.query(query).await?;
        response.take::<surrealdb::types::Value>(0)
    };
    match tokio::time::timeout(limit, run).await {
        Err(_) => Outcome::Failed(
            ErrorClass::Timeout,
            format!("no answer within {limit:?} (op timeout)"),
        ),
        Ok(Err(e)) => Outcome::Failed(ErrorClass::of(&e), e.message().to_string()),
        Ok(Ok(v)) => Outcome::Ok(v),
    }
}

/// One client: picks nodes and keys from its own seeded generator until the run ends.
async fn client(k: usize, sh: &Shared<'_>) {
    let spec = sh.spec;
    let n = sh.targets.len();
    let mut rng = fastrand::Rng::with_seed(
        spec.seed
            .wrapping_add((k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    );
    // A fixed value per client: the content does not matter, its size does.
    let payload: String = (0..spec.value_bytes).map(|_| rng.alphanumeric()).collect();
    let mut turn = k; // round-robin position; starting at k spreads clients over the nodes
    let mut seq: u64 = 0;
    let table = &spec.table;
    while !sh.done() {
        if !spec.think_time.is_zero() && seq > 0 {
            // Paced clients: the pause is not part of any operation's latency.
            tokio::time::sleep(spec.think_time).await;
            if sh.done() {
                break;
            }
        }
        let node = match spec.nodes {
            NodePolicy::RoundRobin => {
                turn = turn.wrapping_add(1);
                turn % n
            }
            NodePolicy::Pinned(i) => i,
            NodePolicy::Random => rng.usize(0..n),
        };
        let session = |i: usize| {
            let pool = sh.targets[i].sessions;
            &pool[k % pool.len()]
        };
        seq += 1;
        let read = match spec.kind {
            WorkloadKind::ReadOnly => Some(true),
            WorkloadKind::WriteOnly => Some(false),
            WorkloadKind::Mixed { read_percent } => Some(rng.u8(0..100) < read_percent),
            WorkloadKind::ReadAfterWrite => None,
        };
        match read {
            Some(read) => {
                let key = rng.u64(0..spec.records);
                let (op, query) = if read {
                    (Op::Read, format!("SELECT * FROM ONLY {table}:{key}"))
                } else {
                    (
                        Op::Write,
                        format!("UPSERT {table}:{key} SET v = '{payload}', n = {seq} RETURN NONE"),
                    )
                };
                let started = Instant::now();
                let outcome = exec(session(node), query, spec.op_timeout).await;
                sh.record(k, node, op, started, &outcome);
            }
            None => {
                // The token is unique per run, client and step: seeing it proves the read saw
                // exactly this write, not an older value of the same record.
                let key = k as u64 * RAW_KEYS_PER_CLIENT + seq % RAW_KEYS_PER_CLIENT;
                let token = format!("{}-{k}-{seq}", sh.nonce);
                let started = Instant::now();
                let written = exec(
                    session(node),
                    format!("UPSERT {table}_raw:{key} SET v = '{token}' RETURN NONE"),
                    spec.op_timeout,
                )
                .await;
                let write_counted = sh.record(k, node, Op::RawWrite, started, &written);
                if !matches!(written, Outcome::Ok(_)) {
                    continue;
                }
                let reader = (node + 1) % n;
                let started = Instant::now();
                let read = exec(
                    session(reader),
                    format!("SELECT VALUE v FROM ONLY {table}_raw:{key}"),
                    spec.op_timeout,
                )
                .await;
                let counted = sh.record(k, reader, Op::RawRead, started, &read);
                // A pair counts only when both halves were measured: a write from the warm-up
                // whose read falls in the window would make more pairs than measured writes.
                if let (true, Outcome::Ok(value)) = (write_counted && counted, read) {
                    let seen = value.into_json_value() == serde_json::Value::String(token);
                    let mut rec = sh.rec.borrow_mut();
                    rec.raw.pairs += 1;
                    if seen {
                        rec.raw.seen += 1;
                    } else {
                        rec.raw.missed += 1;
                    }
                }
            }
        }
    }
}

/// Runs the workload on the given session pools and summarises it. The caller (the actor)
/// owns the sessions, prepared the records and runs the resource sampler around this.
pub(crate) async fn run(spec: &WorkloadPlan, ctx: RunContext<'_>) -> Measured {
    let n = ctx.targets.len();
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration.max(Duration::from_millis(1));
    let end = if spec.duration.is_zero() {
        // Only `max_ops` limits the run; an hour is the safety net.
        measure_from + Duration::from_secs(3600)
    } else {
        end
    };
    let shared = Shared {
        spec,
        targets: &ctx.targets,
        measure_from,
        end,
        nonce: ctx.nonce,
        rec: RefCell::new(Recorder {
            cells: (0..n * 4).map(|_| None).collect(),
            recorded: 0,
            last_done: None,
            raw: RawCheck {
                pairs: 0,
                seen: 0,
                missed: 0,
                cross_node: n > 1,
            },
            error_examples: Vec::new(),
            samples: Vec::new(),
        }),
    };
    futures::future::join_all((0..spec.concurrency).map(|k| client(k, &shared))).await;
    let rec = shared.rec.into_inner();
    let measured = rec
        .last_done
        .map(|t| t.saturating_duration_since(measure_from))
        .unwrap_or_default()
        .max(Duration::from_millis(1));
    let names: Vec<String> = ctx.targets.iter().map(|t| t.name.clone()).collect();
    summarise(rec, &names, measured.as_secs_f64(), spec)
}

/// The runner's result before the actor adds resources and context.
pub(crate) struct Measured {
    pub measured_s: f64,
    pub rows: Vec<OpSummary>,
    pub raw: Option<RawCheck>,
    pub histogram: Vec<LatencyBucket>,
    pub error_examples: Vec<(ErrorClass, String)>,
    pub samples: Vec<OpSample>,
}

fn summarise(rec: Recorder, names: &[String], secs: f64, spec: &WorkloadPlan) -> Measured {
    let row = |node: &str, op: &str, cells: &[&Cell]| -> OpSummary {
        let mut hist = Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3).expect("bounds");
        let mut errors = [0u64; 4];
        for c in cells {
            hist.add(&c.hist).expect("same bounds");
            for (e, x) in errors.iter_mut().zip(c.errors) {
                *e += x;
            }
        }
        let errs: u64 = errors.iter().sum();
        let ops = hist.len() + errs;
        let ms = |us: u64| us as f64 / 1000.0;
        let (mean, p50, p95, p99, max) = if hist.is_empty() {
            (f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN)
        } else {
            (
                hist.mean() / 1000.0,
                ms(hist.value_at_quantile(0.50)),
                ms(hist.value_at_quantile(0.95)),
                ms(hist.value_at_quantile(0.99)),
                ms(hist.max()),
            )
        };
        OpSummary {
            node: node.to_string(),
            op: op.to_string(),
            ops,
            errors: errs,
            conflicts: errors[ErrorClass::Conflict as usize],
            timeouts: errors[ErrorClass::Timeout as usize],
            connection: errors[ErrorClass::Connection as usize],
            other: errors[ErrorClass::Other as usize],
            ops_per_s: ops as f64 / secs,
            mean_ms: mean,
            p50_ms: p50,
            p95_ms: p95,
            p99_ms: p99,
            max_ms: max,
        }
    };
    let cell = |node: usize, op: Op| rec.cells[node * 4 + op.index()].as_ref();
    let used_ops: Vec<Op> = Op::ALL
        .into_iter()
        .filter(|op| (0..names.len()).any(|i| cell(i, *op).is_some()))
        .collect();
    let mut rows = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for op in &used_ops {
            if let Some(c) = cell(i, *op) {
                rows.push(row(name, op.as_str(), &[c]));
            }
        }
    }
    let mut histogram = Vec::new();
    for op in &used_ops {
        let cells: Vec<&Cell> = (0..names.len()).filter_map(|i| cell(i, *op)).collect();
        rows.push(row("all", op.as_str(), &cells));
        histogram.extend(buckets(op.as_str(), &cells));
    }
    let all: Vec<&Cell> = rec.cells.iter().flatten().collect();
    rows.push(row("all", "all", &all));
    Measured {
        measured_s: secs,
        rows,
        raw: (spec.kind == WorkloadKind::ReadAfterWrite).then_some(rec.raw),
        histogram,
        error_examples: rec.error_examples,
        samples: rec.samples,
    }
}

/// Buckets per decade of a latency histogram: 10 gives bars ~26 % wide — fine enough to see
/// two modes (e.g. reads vs. reads that waited for a lock), coarse enough to have counts.
const BUCKETS_PER_DECADE: f64 = 10.0;

/// The cells' latencies as log-spaced buckets (only non-empty ones).
fn buckets(op: &str, cells: &[&Cell]) -> Vec<LatencyBucket> {
    let mut counts: std::collections::BTreeMap<i64, u64> = std::collections::BTreeMap::new();
    for c in cells {
        for v in c.hist.iter_recorded() {
            let ms = v.value_iterated_to() as f64 / 1000.0;
            let b = (ms.max(1e-3).log10() * BUCKETS_PER_DECADE).floor() as i64;
            *counts.entry(b).or_default() += v.count_at_value();
        }
    }
    counts
        .into_iter()
        .map(|(b, count)| LatencyBucket {
            op: op.to_string(),
            lo_ms: 10f64.powf(b as f64 / BUCKETS_PER_DECADE),
            hi_ms: 10f64.powf((b + 1) as f64 / BUCKETS_PER_DECADE),
            count,
        })
        .collect()
}

/// The statements that make sure `records` records exist in `table` (and that both tables are
/// defined, so the first concurrent writes do not race to create them).
pub(crate) fn prepare_statements(spec: &WorkloadPlan) -> Vec<String> {
    let t = &spec.table;
    let mut out = vec![format!(
        "DEFINE TABLE IF NOT EXISTS {t} SCHEMALESS; DEFINE TABLE IF NOT EXISTS {t}_raw SCHEMALESS"
    )];
    let value: String = "x".repeat(spec.value_bytes);
    let mut from = 0;
    while from < spec.records {
        let to = (from + PREPARE_CHUNK).min(spec.records);
        let rows: Vec<String> = (from..to)
            .map(|k| format!("{{ id: {k}, v: '{value}', n: 0 }}"))
            .collect();
        // IGNORE: records already there are left as they are, so preparing twice is cheap.
        out.push(format!("INSERT IGNORE INTO {t} [{}]", rows.join(", ")));
        from = to;
    }
    out
}

/// Runs the preparation statements on one session.
pub(crate) async fn prepare(db: &Db, spec: &WorkloadPlan) -> Result<(), surrealdb::Error> {
    for statement in prepare_statements(spec) {
        db.query(statement).await?.check()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::workload::WorkloadPlan;

    #[test]
    fn preparation_is_chunked_and_idempotent() {
        let s = prepare_statements(&WorkloadPlan::read_only().records(1200).value_bytes(3));
        assert_eq!(s.len(), 1 + 3);
        assert!(s[0].contains("DEFINE TABLE IF NOT EXISTS bench_raw"));
        assert!(s[1].starts_with("INSERT IGNORE INTO bench [{ id: 0, v: 'xxx', n: 0 }"));
        assert!(s[3].contains("id: 1199"));
        assert!(!s[3].contains("id: 1200"));
    }

    fn cell_with(values_us: &[u64], errors: [u64; 4]) -> Cell {
        let mut c = Cell::new();
        for v in values_us {
            c.hist.record(*v).unwrap();
        }
        c.errors = errors;
        c
    }

    #[test]
    fn summaries_have_ordered_percentiles_and_totals() {
        let mut rec = Recorder {
            cells: (0..8).map(|_| None).collect(),
            recorded: 0,
            last_done: None,
            raw: RawCheck {
                pairs: 3,
                seen: 3,
                missed: 0,
                cross_node: true,
            },
            error_examples: Vec::new(),
            samples: Vec::new(),
        };
        let values: Vec<u64> = (1..=1000).map(|i| i * 10).collect();
        rec.cells[Op::Read.index()] = Some(cell_with(&values, [0; 4]));
        rec.cells[4 + Op::Write.index()] = Some(cell_with(&[5_000], [2, 0, 0, 1]));
        let m = summarise(
            rec,
            &["node-a".into(), "node-b".into()],
            2.0,
            &WorkloadPlan::mixed(50),
        );
        let names: Vec<(String, String)> = m
            .rows
            .iter()
            .map(|r| (r.node.clone(), r.op.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("node-a".into(), "read".into()),
                ("node-b".into(), "write".into()),
                ("all".into(), "read".into()),
                ("all".into(), "write".into()),
                ("all".into(), "all".into()),
            ]
        );
        let total = m.rows.last().unwrap();
        assert_eq!(total.ops, 1000 + 1 + 3);
        assert_eq!((total.errors, total.conflicts, total.other), (3, 2, 1));
        assert!((total.ops_per_s - 502.0).abs() < 1e-9);
        let read = &m.rows[0];
        assert!(
            read.p50_ms <= read.p95_ms && read.p95_ms <= read.p99_ms && read.p99_ms <= read.max_ms
        );
        assert!((read.p50_ms - 5.0).abs() < 0.01, "{}", read.p50_ms);
        assert!((read.max_ms - 10.0).abs() < 0.01);
        assert!(m.raw.is_none(), "only read-after-write reports the check");
        let bucketed: u64 = m.histogram.iter().map(|b| b.count).sum();
        assert_eq!(bucketed, 1001);
        assert!(m.histogram.iter().all(|b| b.lo_ms < b.hi_ms));
    }
}
