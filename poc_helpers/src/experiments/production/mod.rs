//! Notebook 06, "Running it for real": the questions SurrealDB's multi-node users ask in its
//! public issue tracker, each answered by an experiment on the learner's lab. This module holds
//! the reports (plain data with `frame()`, `explain()` and, where time matters, `chart()`); the
//! runs are sequences of facade calls and HTTP requests (`facade::production`), because they
//! restart nodes while clients keep going.
//!
//! - [`define_race`]: concurrent `CREATE`s into an undefined table vs a defined one (issue 6136).
//! - [`feeds`]: `SHOW CHANGES` from two nodes while both write (the alternative to cross-node
//!   live queries, issues 5070 and 5068).
//! - [`life`]: SIGTERM vs SIGKILL — time to ARCHIVED and to removal, `/health` and `/ready`.
//! - [`rolling`]: a rolling restart under load: naive, failover and durable-session clients.
//! - [`schema_race`]: `DEFINE FIELD … ASSERT` on one node, a violating write on the other at once.
//! - [`backup`]: `/export` through one node while another writes, restored into a fresh lab.

pub mod backup;
pub mod define_race;
pub mod feeds;
pub mod life;
pub mod rolling;
pub mod schema_race;

/// FNV-1a, 64 bit: a checksum that is the same on every machine and Rust version (std's
/// hasher is not), over the canonical text of the records.
pub fn fnv1a(rows: impl IntoIterator<Item = String>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for row in rows {
        for b in row.bytes().chain(std::iter::once(b'\n')) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The value at quantile `q` (0–1) of `xs` (nearest rank), 0 for no values.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_sees_any_changed_record() {
        let a = fnv1a(["{\"k\":1}".to_string(), "{\"k\":2}".to_string()]);
        let b = fnv1a(["{\"k\":1}".to_string(), "{\"k\":3}".to_string()]);
        assert_ne!(a, b);
        assert_eq!(a, fnv1a(["{\"k\":1}".to_string(), "{\"k\":2}".to_string()]));
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.5), 50.0);
        assert_eq!(quantile(&xs, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
