//! `lab`: the command line over `poc_helpers` — the spec's setup, status and cleanup scripts.
//!
//! ```text
//! lab up [--nodes 2] [--base-port 8000] [--storage shared] [--name lab]   start and leave running
//! lab status                                                             the status table
//! lab sql b "SELECT * FROM user"                                         run SurrealQL on a node
//! lab add                                                                one more node on the same storage
//! lab remove c                                                           stop the newest node and forget it
//! lab kill|stop|pause|resume|restart NODE                                NODE: a, b, node-c, … or storage
//! lab down                                                               stop every node
//! lab clean                                                              stop, then delete data and logs
//! lab bench [--quick]                                                    benchmark 3 set-ups → target/bench/
//! lab bench --compare-server PATH                                        the lab's surreal against another build
//! lab bench --links                                                      a healthy fault proxy against a direct link
//! ```
//!
//! `up` starts the nodes and *detaches*: they keep running after the command exits, described by
//! `<lab dir>/state.json`. The other commands attach to that lab. Every failure exits non-zero
//! with the `LabError` message, which names the fix.

// Every fallible function here returns `LabError`, which is large on purpose: it carries the
// whole explanation (what, where, the fix) to a person reading a terminal, and an error happens
// at most once per command, so its size costs nothing (same reasoning as poc_helpers' lib.rs).
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

mod bench;
mod bench_links;
mod bench_servers;
mod bench_storage;
mod failover;
mod nodes;
use poc_helpers::facade::{Cluster, default_lab_root};
use poc_helpers::vocab::config::{MembershipIntervals, StorageMode};
use poc_helpers::vocab::error::LabError;
use poc_helpers::vocab::nodes::{NodeAction, NodeState};

#[derive(Parser, Debug)]
#[command(
    name = "lab",
    about = "Run a local SurrealDB 3.3.5 cluster for learning",
    version
)]
struct Cli {
    /// Lab name; its files live in <lab dir>/<name>.
    #[arg(long, global = true, default_value = "lab")]
    name: String,
    /// Lab root directory [default: <workspace>/target/lab].
    #[arg(long, global = true, env = "LAB_DIR")]
    lab_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start the nodes and leave them running.
    Up {
        /// Number of nodes (1-9).
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        /// Port of node-a; node-b gets the next one. [env: LAB_BASE_PORT, default 8000]
        #[arg(long)]
        base_port: Option<u16>,
        /// Let the lab pick free ports (also LAB_BASE_PORT=ephemeral).
        #[arg(long, conflicts_with = "base_port")]
        ephemeral: bool,
        /// shared (the embedded storage node, as in the notebooks) | memory | surrealkv (each
        /// node its own store) | tikv://HOST:PORT (a real PD) | tiup
        #[arg(long, default_value = "shared")]
        storage: String,
        /// Stores of the shared storage tier: 1 (PD and one store in one process) or 3 (PD
        /// plus three stores, every region replicated with Raft, as TiKV runs).
        #[arg(long, default_value_t = 1)]
        stores: usize,
        /// Keep HTTP RPC sessions in storage (`surreal start --durable-sessions`), so a session
        /// attached on one node continues on another.
        #[arg(long)]
        durable_sessions: bool,
        /// Membership intervals REFRESH,CHECK,CLEANUP for every node, e.g. `1s,1s,10s`
        /// (SurrealDB's defaults: 3s,15s,300s).
        #[arg(long)]
        membership: Option<String>,
    },
    /// Show every node's state, pid, version, memory and uptime.
    Status,
    /// Every node's `/health` and `/ready` status now (what a load balancer polls).
    Ready,
    /// Export the lab's database through NODE as a SurrealQL script (one consistent snapshot).
    Export {
        /// The node (a, b, node-c, …).
        node: String,
        /// The file to write; `-` (the default) writes to stdout.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Import a SurrealQL script (an export) through NODE.
    Import {
        /// The node (a, b, node-c, …).
        node: String,
        /// The .surql file to read.
        file: PathBuf,
    },
    /// Where the data lives, as PD sees it: the regions (key ranges), the stores holding a
    /// replica of each, and which store leads each region.
    #[command(alias = "regions")]
    Placement,
    /// Which region holds RECORD (e.g. `user:ada`), which store leads it, which hold copies.
    Where {
        /// The record, as `table:id`.
        record: String,
    },
    /// Split the regions where TABLE's records begin (like TiDB's `SPLIT TABLE`), then show
    /// the regions.
    Split {
        /// A table of the lab's database.
        table: String,
    },
    /// Move REGION's leader to STORE (PD's transfer-leader operator), then show the regions.
    TransferLeader {
        /// The region id, as `lab placement` lists it.
        region: u64,
        /// The store that should lead it (it must hold a replica).
        store: u64,
    },
    /// Cut STORE (`store-2`) off from the other stores: a network partition inside the storage
    /// tier. Raft messages between them are dropped; clients and PD still reach it.
    Partition {
        /// `store-N`.
        store: String,
    },
    /// Heal STORE's partition (`store-2`): it hears from the other stores again and catches up.
    Heal {
        /// `store-N`.
        store: String,
    },
    /// Start one more store (a `--stores 3` lab): it joins with no replica and PD moves
    /// replicas onto it until no store holds two more than another; then show the regions.
    AddStore,
    /// Ask PD to remove STORE: its replicas move to the other stores, then it is a tombstone.
    RemoveStore {
        /// The store id, as `lab placement` lists it.
        store: u64,
    },
    /// Replace STORE whose machine is lost: kill it, delete its data folder, remove it in PD
    /// and start a new store that takes its replicas; then show the regions.
    ReplaceStore {
        /// The store id, as `lab placement` lists it.
        store: u64,
    },
    /// The store-failover drill (a `--stores 3` lab): a writer through NODE, the store that
    /// leads the region killed, the pause measured, every write read back, the store restarted.
    Failover {
        /// The node the writer uses.
        #[arg(long, default_value = "a")]
        node: String,
        /// How many drills to run in a row.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// Run SurrealQL on one node (a, b, node-a, 0, ...).
    Sql {
        /// The node.
        node: String,
        /// The query.
        query: String,
    },
    /// Start one more node on the lab's storage (node-c after a and b): it joins the
    /// membership and serves the existing data at once, nothing copied.
    Add,
    /// Stop the newest node gracefully and forget it (the reverse of `add`).
    Remove {
        /// The newest node (c, node-c, …).
        node: String,
    },
    /// SIGKILL a node, like a crash. NODE: a, b, node-c, …, `storage` (the whole tier) or
    /// `store-2` (one store of a `--stores 3` lab).
    Kill {
        /// The node, `storage`, `pd` or `store-N`.
        node: String,
    },
    /// Stop a node gracefully (SIGTERM, then SIGKILL after the grace period).
    Stop {
        /// The node, `storage`, `pd` or `store-N`.
        node: String,
    },
    /// Freeze a node with SIGSTOP: it keeps its sockets but answers nothing.
    Pause {
        /// The node, `storage`, `pd` or `store-N`.
        node: String,
    },
    /// Unfreeze a paused node with SIGCONT.
    Resume {
        /// The node, `storage`, `pd` or `store-N`.
        node: String,
    },
    /// Start a node again on the same port and data (after a stop or kill, or while running).
    Restart {
        /// The node, `storage`, `pd` or `store-N`.
        node: String,
    },
    /// Stop every node (data of surrealkv nodes is kept).
    Down,
    /// Stop every node and delete the lab's data, logs and pidfiles.
    Clean {
        /// Every lab under the lab directory, not only --name (e.g. after crashed test runs).
        #[arg(long)]
        all: bool,
    },
    /// Benchmark: the same workloads on (a) 2 nodes over the embedded storage node, (b) 1 node
    /// on surrealkv (the baseline) and (c) 1 node over the storage node; medians of several
    /// repetitions, goals checked, CSV + SVG written to --out. Takes ~15 min (--quick: ~1 min).
    Bench {
        /// One short repetition of two workloads at 1, 10 and 100 clients, to iterate quickly.
        #[arg(long)]
        quick: bool,
        /// Only the first part: the disk's fdatasync, the storage node's service times and three
        /// statements at 1 client over the storage node and on SurrealKV (~20 s).
        #[arg(long)]
        storage_only: bool,
        /// Runs per statement in that first part (0 skips it).
        #[arg(long, default_value_t = 100)]
        samples: usize,
        /// Repetitions per point (the table shows their median).
        #[arg(long)]
        reps: Option<usize>,
        /// Measured seconds per run.
        #[arg(long)]
        duration: Option<f64>,
        /// Warm-up seconds per run.
        #[arg(long)]
        warmup: Option<f64>,
        /// Concurrency levels, e.g. 1,10,100,200.
        #[arg(long, value_delimiter = ',')]
        concurrency: Option<Vec<usize>>,
        /// Workloads: mixed (90/10), raw (read-after-write across nodes), raw-paced (the same
        /// with 500 ms think time per client), read, write.
        #[arg(long, value_delimiter = ',')]
        workloads: Option<Vec<String>>,
        /// Set-ups: shared-2, surrealkv-1, shared-1.
        #[arg(long, value_delimiter = ',')]
        setups: Option<Vec<String>>,
        /// Records the workloads address.
        #[arg(long)]
        records: Option<u64>,
        /// SDK sessions per node [default: min(clients, 2)].
        #[arg(long)]
        sessions: Option<usize>,
        /// Output directory [default: <workspace>/target/bench].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Instead of the set-ups: the lab's `surreal` against this one (e.g. built with the
        /// official binary's jemalloc), 2 nodes over the storage node each, alternated, --reps
        /// times [default 3]: idle, peak and after-load memory, throughput and p99, as ratios.
        /// Uses the first --workloads [mixed] and --concurrency [100].
        #[arg(long, value_name = "PATH")]
        compare_server: Option<PathBuf>,
        /// Instead of the set-ups: what a healthy fault proxy costs against a direct link, in one
        /// run — small raw TCP echoes (2000 round trips per size) and --samples runs of three
        /// statements on a 1-node lab with and without `.fault_links(true)` (~30 s).
        #[arg(long, conflicts_with = "compare_server")]
        links: bool,
    },
}

fn main() -> ExitCode {
    // polars' text tables hide columns past 8 and show dtypes; the status table has 9 columns
    // and is for people. Set before any thread exists (set_var is only sound then).
    for (key, value) in [
        ("POLARS_FMT_MAX_COLS", "-1"),
        ("POLARS_FMT_MAX_ROWS", "-1"),
        ("POLARS_FMT_TABLE_HIDE_COLUMN_DATA_TYPES", "1"),
        ("POLARS_FMT_TABLE_HIDE_DATAFRAME_SHAPE_INFORMATION", "1"),
        ("POLARS_FMT_TABLE_HIDE_COLUMN_SEPARATOR", "1"),
    ] {
        // SAFETY: still single-threaded here, so no other thread can read the environment.
        unsafe { std::env::set_var(key, value) };
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), LabError> {
    let root = cli.lab_dir.clone().unwrap_or_else(default_lab_root);
    let dir = root.join(&cli.name);
    match cli.command {
        Cmd::Up {
            nodes,
            base_port,
            ephemeral,
            storage,
            stores,
            durable_sessions,
            membership,
        } => {
            // `lab up` twice would otherwise reap the running lab; say so instead.
            if let Ok(existing) = Cluster::attach_dir(&dir) {
                let running: Vec<_> = existing
                    .instances()?
                    .into_iter()
                    .filter(|i| i.state == NodeState::Running)
                    .collect();
                if !running.is_empty() {
                    let list: Vec<String> = running
                        .iter()
                        .map(|i| format!("{} :{}", i.node, i.port))
                        .collect();
                    return Err(LabError::InvalidConfig {
                        setting: "name".into(),
                        reason: format!("lab `{}` is already running ({})", cli.name, list.join(", ")),
                        fix: "see it with `lab status`, stop it with `lab down`, or use another --name".into(),
                    });
                }
            }
            let mut builder = Cluster::builder()
                .name(&cli.name)
                .lab_root(root)
                .nodes(nodes)
                .storage(StorageMode::parse(&storage)?)
                .stores(stores)
                .durable_sessions(durable_sessions)
                .echo(false);
            if let Some(m) = membership {
                builder = builder.membership_intervals(MembershipIntervals::parse(&m)?);
            }
            if let Some(p) = base_port {
                builder = builder.base_port(p);
            }
            if ephemeral {
                builder = builder.ephemeral_ports();
            }
            let spinner = indicatif::ProgressBar::new_spinner();
            spinner.set_message(format!("starting {nodes} SurrealDB node(s) ({storage})…"));
            spinner.enable_steady_tick(Duration::from_millis(100));
            let t = Instant::now();
            let started = builder.start();
            spinner.finish_and_clear();
            let cluster = started?;
            let took = t.elapsed();
            let report = cluster.start_report().to_vec();
            let dir = cluster.lab_dir().to_path_buf();
            let status = cluster.status()?;
            // Detach before printing: the nodes are meant to outlive this command even if its
            // output goes nowhere (e.g. a closed pipe).
            cluster.detach();
            for line in report {
                println!("{line}");
            }
            println!(
                "lab `{}` up in {:.1} s ({})",
                cli.name,
                took.as_secs_f64(),
                dir.display()
            );
            println!("{status}");
            Ok(())
        }
        Cmd::Status => {
            let cluster = Cluster::attach_dir(&dir)?;
            println!("{}", cluster.status()?);
            Ok(())
        }
        Cmd::Ready => {
            let cluster = Cluster::attach_dir(&dir)?;
            println!("{}", cluster.readiness()?);
            Ok(())
        }
        Cmd::Export { node, file } => {
            let cluster = Cluster::attach_dir(&dir)?;
            let script = cluster.export_sql(node.as_str())?;
            if file == "-" {
                print!("{script}");
            } else {
                std::fs::write(&file, &script).map_err(|e| LabError::Io {
                    action: "write the export to".into(),
                    path: file.clone(),
                    message: e.to_string(),
                    fix: "pass a file in a folder that exists and you can write, or - for stdout"
                        .into(),
                })?;
                eprintln!("exported {} bytes through {node} to {file}", script.len());
            }
            Ok(())
        }
        Cmd::Import { node, file } => {
            let script = std::fs::read_to_string(&file).map_err(|e| LabError::Io {
                action: "read the script".into(),
                path: file.display().to_string(),
                message: e.to_string(),
                fix: "pass the path of a .surql export, e.g. one written by `lab export b backup.surql`".into(),
            })?;
            let cluster = Cluster::attach_dir(&dir)?;
            let t = Instant::now();
            cluster.import_sql(node.as_str(), &script)?;
            eprintln!(
                "imported {} bytes through {node} in {:.2} s",
                script.len(),
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Cmd::Placement => {
            let cluster = Cluster::attach_dir(&dir)?;
            let placement = cluster.placement()?;
            println!("{}", placement.regions_frame()?);
            println!("{}", placement.stores_frame()?);
            Ok(())
        }
        Cmd::Where { record } => {
            let cluster = Cluster::attach_dir(&dir)?;
            println!("{}", cluster.where_is(&record)?.explain());
            Ok(())
        }
        Cmd::Split { table } => {
            let cluster = Cluster::attach_dir(&dir)?;
            let placement = cluster.split_table(&table)?;
            println!("{}", placement.regions_frame()?);
            Ok(())
        }
        Cmd::TransferLeader { region, store } => {
            let cluster = Cluster::attach_dir(&dir)?;
            let placement = cluster.transfer_leader(region, store)?;
            println!("{}", placement.regions_frame()?);
            Ok(())
        }
        Cmd::Partition { store } => {
            let cluster = Cluster::attach_dir(&dir)?;
            cluster.partition_store(store_id(&store)?)?;
            println!("{}", cluster.status()?);
            Ok(())
        }
        Cmd::Heal { store } => {
            let cluster = Cluster::attach_dir(&dir)?;
            cluster.heal_store(store_id(&store)?)?;
            println!("{}", cluster.status()?);
            Ok(())
        }
        Cmd::AddStore => {
            let cluster = Cluster::attach_dir(&dir)?;
            let id = cluster.add_store()?;
            eprintln!("store-{id} joined; waiting for PD to move replicas onto it…");
            let (placement, took) = cluster.wait_settled(Duration::from_secs(120))?;
            eprintln!("settled in {:.1} s", took.as_secs_f64());
            println!("{}", placement.stores_frame()?);
            Ok(())
        }
        Cmd::RemoveStore { store } => {
            let cluster = Cluster::attach_dir(&dir)?;
            eprintln!("PD: {}", cluster.remove_store(store)?);
            let (placement, took) = cluster.wait_settled(Duration::from_secs(120))?;
            eprintln!("settled in {:.1} s", took.as_secs_f64());
            println!("{}", placement.stores_frame()?);
            Ok(())
        }
        Cmd::ReplaceStore { store } => {
            let cluster = Cluster::attach_dir(&dir)?;
            let id = cluster.replace_store(store)?;
            eprintln!("store-{store} removed, store-{id} joined; waiting for its replicas…");
            let (placement, took) = cluster.wait_settled(Duration::from_secs(120))?;
            eprintln!("settled in {:.1} s", took.as_secs_f64());
            println!("{}", placement.stores_frame()?);
            Ok(())
        }
        Cmd::Failover { node, repeat } => failover::run(&dir, &node, repeat),
        Cmd::Sql { node, query } => {
            let cluster = Cluster::attach_dir(&dir)?;
            let result = cluster.sql(node.as_str(), &query)?;
            for s in &result.statements {
                println!("{}", serde_json_pretty(&s.rows));
            }
            Ok(())
        }
        Cmd::Add => nodes::add(&dir),
        Cmd::Remove { node } => nodes::remove(&dir, &node),
        Cmd::Kill { node } => nodes::act(&dir, NodeAction::Kill, &node),
        Cmd::Stop { node } => nodes::act(&dir, NodeAction::Stop, &node),
        Cmd::Pause { node } => nodes::act(&dir, NodeAction::Pause, &node),
        Cmd::Resume { node } => nodes::act(&dir, NodeAction::Resume, &node),
        Cmd::Restart { node } => nodes::act(&dir, NodeAction::Restart, &node),
        Cmd::Down => {
            let cluster = Cluster::attach_dir(&dir)?;
            cluster.stop_all()?;
            Ok(())
        }
        Cmd::Clean { all: false } => clean(&dir),
        Cmd::Clean { all: true } => {
            let entries = match std::fs::read_dir(&root) {
                Ok(e) => e,
                Err(_) => {
                    println!("nothing to clean: {} does not exist", root.display());
                    return Ok(());
                }
            };
            // Keep going past a lab that fails to clean, so one bad directory cannot leave the
            // others' processes running; report the first error at the end.
            let mut first_err = None;
            for entry in entries.flatten() {
                if entry.path().is_dir()
                    && let Err(e) = clean(&entry.path())
                {
                    eprintln!("{}: {e}", entry.path().display());
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        }
        Cmd::Bench {
            quick,
            storage_only,
            samples,
            reps,
            duration,
            warmup,
            concurrency,
            workloads,
            setups,
            records,
            sessions,
            out,
            compare_server,
            links,
        } => {
            let flags = BenchFlags {
                storage_only,
                samples,
                reps,
                duration,
                warmup,
                concurrency,
                workloads,
                setups,
                records,
                sessions,
                out,
            };
            match compare_server {
                Some(other) => run_compare_servers(&other, quick, flags),
                None if links => run_links(flags),
                None => run_bench(quick, flags),
            }
        }
    }
}

/// The optional flags of `lab bench`; unset ones keep the full (or `--quick`) defaults.
struct BenchFlags {
    storage_only: bool,
    samples: usize,
    reps: Option<usize>,
    duration: Option<f64>,
    warmup: Option<f64>,
    concurrency: Option<Vec<usize>>,
    workloads: Option<Vec<String>>,
    setups: Option<Vec<String>>,
    records: Option<u64>,
    sessions: Option<usize>,
    out: Option<PathBuf>,
}

/// `lab bench`: builds the options, runs with a progress bar, prints the table and the verdicts.
fn run_bench(quick: bool, flags: BenchFlags) -> Result<(), LabError> {
    let BenchFlags {
        storage_only,
        samples,
        reps,
        duration,
        warmup,
        concurrency,
        workloads,
        setups,
        records,
        sessions,
        out,
    } = flags;
    let out =
        out.unwrap_or_else(|| poc_helpers::infra::binary::workspace_root().join("target/bench"));
    let mut opts = if quick {
        bench::BenchOptions::quick(out.clone())
    } else {
        bench::BenchOptions::full(out.clone())
    };
    if let Some(n) = reps {
        opts.reps = n.max(1);
    }
    if let Some(s) = duration {
        opts.duration = Duration::from_secs_f64(s.max(0.1));
    }
    if let Some(s) = warmup {
        opts.warmup = Duration::from_secs_f64(s.max(0.0));
    }
    if let Some(levels) = concurrency {
        opts.levels = levels;
    }
    if let Some(w) = workloads {
        opts.workloads = w;
    }
    if let Some(s) = setups {
        let known: Vec<&str> = bench::SETUPS.iter().map(|s| s.name).collect();
        if let Some(bad) = s.iter().find(|x| !known.contains(&x.as_str())) {
            return Err(LabError::InvalidConfig {
                setting: "setups".into(),
                reason: format!("`{bad}` is not a set-up"),
                fix: format!("use a comma-separated list of: {}", known.join(", ")),
            });
        }
        opts.setups = s;
    }
    if let Some(r) = records {
        opts.records = r.max(1);
    }
    if let Some(n) = sessions {
        opts.sessions = n;
    }
    // The labs live next to the results, so `target/bench/` holds everything of a run.
    let lab_root = out.join("labs");
    if samples > 0 {
        println!("lab bench: where a statement's time goes ({samples} runs per statement)…");
        let b = bench_storage::run(&lab_root, samples)?;
        print!("{}", bench_storage::table(&b));
        std::fs::create_dir_all(&out)
            .and_then(|_| std::fs::write(out.join("storage.csv"), bench_storage::csv(&b)))
            .map_err(|e| LabError::Io {
                action: "writing".into(),
                path: out.join("storage.csv").display().to_string(),
                message: e.to_string(),
                fix: "check that --out is writable".into(),
            })?;
        println!();
    }
    if storage_only {
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let t = Instant::now();
    let result = bench::run(&opts, &lab_root, &|done, total, msg| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(msg.to_string());
    });
    bar.finish_and_clear();
    let (rows, verdicts, files) = result?;
    println!(
        "lab bench: {} run(s) of {:.1} s (+{:.1} s warm-up), median of {} repetition(s), {} CPU core(s), {:.0} s in total",
        opts.runs_count(),
        opts.duration.as_secs_f64(),
        opts.warmup.as_secs_f64(),
        opts.reps,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        t.elapsed().as_secs_f64()
    );
    for s in bench::SETUPS
        .iter()
        .filter(|s| opts.setups.iter().any(|n| n == s.name))
    {
        println!("  {:<12} {}", s.name, s.label);
    }
    println!();
    print!("{}", bench::table(&rows));
    println!(
        "\nconc = concurrent clients; latencies in ms (median of the repetitions); rawR99 = p99 of the read half of \
         read-after-write; errs = errors + stale reads; rss* = peak RSS MB; prvA = node-a's private part of it; readyms = slowest node start-to-ready; \
         ×ops/×p99 = ratio to {}.\n",
        bench::BASELINE
    );
    for v in &verdicts {
        let mark = match v.met {
            Some(true) => "MET    ",
            Some(false) => "NOT MET",
            None => "n/a    ",
        };
        println!("  [{mark}] {} — {}", v.what, v.measured);
    }
    println!();
    for f in files {
        println!("  wrote {}", f.display());
    }
    Ok(())
}

/// `lab bench --links`: a healthy fault proxy against a direct link, in one invocation.
fn run_links(flags: BenchFlags) -> Result<(), LabError> {
    let out = flags
        .out
        .unwrap_or_else(|| poc_helpers::infra::binary::workspace_root().join("target/bench"));
    let round_trips = 2000;
    println!(
        "lab bench --links: {round_trips} raw TCP echoes per size, direct and through a healthy proxy, alternated…"
    );
    let mut rows = bench_links::echo(round_trips).map_err(|e| LabError::Io {
        action: "echoing over loopback through".into(),
        path: "a fault proxy".into(),
        message: e.to_string(),
        fix: "free some ports or file descriptors".into(),
    })?;
    print!("{}", bench_links::table(&rows));
    if flags.samples > 0 {
        println!(
            "\nthe same statement on 1 node over the storage node, without and with fault links \
             (client→node and node→storage proxied, as in notebook 05), {} runs each, alternated…",
            flags.samples
        );
        let statements = bench_links::statements(&out.join("labs"), flags.samples)?;
        print!("{}", bench_links::table(&statements));
        rows.extend(statements);
    }
    std::fs::create_dir_all(&out)
        .and_then(|_| std::fs::write(out.join("links.csv"), bench_links::csv(&rows)))
        .map_err(|e| LabError::Io {
            action: "writing".into(),
            path: out.join("links.csv").display().to_string(),
            message: e.to_string(),
            fix: "check that --out is writable".into(),
        })
}

/// `lab bench --compare-server PATH`: the lab's server against another, in one invocation.
fn run_compare_servers(
    other: &std::path::Path,
    quick: bool,
    flags: BenchFlags,
) -> Result<(), LabError> {
    if quick || flags.storage_only || flags.setups.is_some() {
        return Err(LabError::InvalidConfig {
            setting: "compare-server".into(),
            reason: "--compare-server runs its own set-up (2 nodes over the storage node)".into(),
            fix:
                "leave out --quick, --storage-only and --setups (--reps and --duration shorten it)"
                    .into(),
        });
    }
    let servers = bench_servers::Servers::locate(other)?;
    let full = bench::BenchOptions::full(PathBuf::new());
    let clients = flags
        .concurrency
        .as_ref()
        .and_then(|c| c.first().copied())
        .unwrap_or(100);
    let name = flags
        .workloads
        .as_ref()
        .and_then(|w| w.first().cloned())
        .unwrap_or("mixed".into());
    let plan = bench::workload_plan(&name)?
        .records(flags.records.unwrap_or(full.records).max(1))
        .sessions_per_node(flags.sessions.unwrap_or(0))
        .duration(
            flags
                .duration
                .map_or(full.duration, |s| Duration::from_secs_f64(s.max(0.1))),
        )
        .warmup(
            flags
                .warmup
                .map_or(full.warmup, |s| Duration::from_secs_f64(s.max(0.0))),
        )
        .concurrency(clients);
    let reps = flags.reps.unwrap_or(3).max(1);
    let out = flags
        .out
        .unwrap_or_else(|| poc_helpers::infra::binary::workspace_root().join("target/bench"));
    let t = Instant::now();
    println!(
        "lab bench --compare-server: {name} at {clients} clients, {reps} repetition(s) per binary, alternated…"
    );
    let runs = bench_servers::run(&servers, &plan, reps, &out.join("labs"), &|step| {
        println!("  {:>4.0} s  {step}", t.elapsed().as_secs_f64())
    })?;
    println!();
    print!("{}", bench_servers::table(&servers, &runs));
    Ok(())
}

fn serde_json_pretty(rows: &[poc_helpers::serde_json::Value]) -> String {
    poc_helpers::serde_json::to_string_pretty(rows).unwrap_or_default()
}

/// Stops one lab's processes (if any are left) and deletes its directory.
fn clean(dir: &std::path::Path) -> Result<(), LabError> {
    match Cluster::attach_dir(dir) {
        Ok(cluster) => cluster.cleanup(),
        Err(LabError::LabNotFound { .. }) if dir.exists() => {
            std::fs::remove_dir_all(dir).map_err(|e| LabError::Io {
                action: "deleting".into(),
                path: dir.display().to_string(),
                message: e.to_string(),
                fix: "check permissions, then delete it by hand".into(),
            })?;
            println!("deleted {}", dir.display());
            Ok(())
        }
        Err(LabError::LabNotFound { .. }) => {
            println!("nothing to clean: {} does not exist", dir.display());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// `store-2` (or `2`) → 2; anything else is refused, naming the form.
fn store_id(given: &str) -> Result<u64, LabError> {
    let g = given.trim().to_ascii_lowercase();
    g.strip_prefix("store-")
        .unwrap_or(&g)
        .parse()
        .map_err(|_| LabError::InvalidConfig {
            setting: "store".into(),
            reason: format!("`{given}` is not a store"),
            fix: "name a store as `store-2` (see `lab placement` for the stores there are)".into(),
        })
}

#[cfg(test)]
mod store_arg_tests {
    use super::store_id;

    #[test]
    fn a_store_is_named_store_n_or_n_and_anything_else_names_the_form() {
        assert_eq!(store_id("store-2").unwrap(), 2);
        assert_eq!(store_id(" Store-3 ").unwrap(), 3);
        assert_eq!(store_id("4").unwrap(), 4);
        let err = store_id("node-b").unwrap_err().to_string();
        assert!(err.contains("`node-b` is not a store"), "{err}");
        assert!(err.contains("store-2"), "{err}");
    }
}
