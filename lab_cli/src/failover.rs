//! `lab failover [--repeat N]`: the store-failover drill of notebook 05 (section 9) on a
//! `lab up --stores 3` lab, N times in a row, with the numbers a reader of the drill wants
//! summed up: how long each kill paused writes (kill → first acknowledged write), how many
//! writes failed, and whether any acknowledged write was lost. Each drill restarts the store
//! it killed, so the lab is whole again for the next one (and afterwards).

use std::path::Path;

use poc_helpers::facade::Cluster;
use poc_helpers::vocab::error::LabError;

/// Runs the drill `repeat` times through node `node` and prints one line per run and a summary.
pub fn run(dir: &Path, node: &str, repeat: usize) -> Result<(), LabError> {
    if repeat == 0 {
        return Err(LabError::InvalidConfig {
            setting: "repeat".into(),
            reason: "0 drills asked".into(),
            fix: "use --repeat 1 or more".into(),
        });
    }
    let cluster = Cluster::attach_dir(dir)?;
    cluster.set_echo(false);
    let mut pauses = Vec::new();
    let (mut failed, mut lost, mut acked) = (0, 0, 0);
    for i in 1..=repeat {
        let d = cluster.store_failover(node)?;
        let resumed = d.first_ack_after_kill_s();
        println!(
            "drill {i}: killed leader store {} → new leader {:?}; writes resumed after {}; {} failed; {} acknowledged, {} lost",
            d.killed_store,
            d.new_leader,
            resumed.map_or("never".into(), |s| format!("{:.0} ms", s * 1000.0)),
            d.failed_after_kill(),
            d.acknowledged(),
            d.lost.len()
        );
        pauses.extend(resumed.map(|s| s * 1000.0));
        failed += d.failed_after_kill();
        lost += d.lost.len();
        acked += d.acknowledged();
    }
    pauses.sort_by(f64::total_cmp);
    let p50 = pauses.get(pauses.len() / 2).copied().unwrap_or(f64::NAN);
    let max = pauses.last().copied().unwrap_or(f64::NAN);
    println!(
        "\n{repeat} drill(s): kill → first acknowledged write p50 {p50:.0} ms, max {max:.0} ms ({} of {repeat} resumed); {failed} write(s) failed after a kill; {lost} of {acked} acknowledged writes lost",
        pauses.len()
    );
    Ok(())
}
