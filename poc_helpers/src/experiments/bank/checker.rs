//! The bank checker: a pure function from a [`History`] (what every client saw, and what the
//! final read found) to a [`Verdict`]. No I/O, no clock, no lab: it can be unit-tested with
//! histories written by hand, including ones that must be judged invalid.
//!
//! # The rules, as in Jepsen's bank test (plus a real-time check)
//!
//! | anomaly | when |
//! |---|---|
//! | [`Anomaly::WrongTotal`] | a read (or the final state) whose accounts do not add up to the initial total |
//! | [`Anomaly::NegativeBalance`] | a read (or the final state) with a balance below zero |
//! | [`Anomaly::StaleRead`] | a read that reflects fewer transfers than were acknowledged *before it began* |
//! | [`Anomaly::LostAcknowledgedWrite`] | an acknowledged transfer missing from the final ledger |
//! | [`Anomaly::PhantomWrite`] | a ledger entry for a transfer reported as failed, or never sent |
//! | [`Anomaly::LedgerMismatch`] | final balances ≠ initial balances + the ledger's transfers |
//!
//! "Unknown" transfers (sent, no clear answer) may or may not be in the ledger: both are
//! correct, and treating them as failed would be the classic mistake.
//!
//! # Valid, unknown, invalid
//!
//! Any anomaly makes the run **invalid**. Without one, a run whose final state could not be
//! read (interrupted, or storage never came back) is **unknown**: nothing was seen to break,
//! but acknowledged writes were never checked. Only a fully audited run is **valid**.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{BankOp, OpKind, Outcome};

/// One ledger entry of the final state: transfer `id` moved `amount` from `src` to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The transfer's unique id (see `ID_STRIDE`).
    pub id: u64,
    /// Debited account.
    pub src: i64,
    /// Credited account.
    pub dst: i64,
    /// Amount moved.
    pub amount: i64,
}

/// What the final read (one snapshot, after the faults were healed) found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalState {
    /// account → balance.
    pub balances: BTreeMap<i64, i64>,
    /// Every applied transfer.
    pub ledger: Vec<LedgerEntry>,
}

/// Everything the checker judges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Number of accounts.
    pub accounts: usize,
    /// Starting balance of each.
    pub initial_balance: i64,
    /// Every transfer and read, as the clients saw them.
    pub ops: Vec<BankOp>,
    /// The final read, or why it could not be made.
    pub final_state: Result<FinalState, String>,
}

impl History {
    /// What every read must add up to.
    pub fn expected_total(&self) -> i64 {
        self.accounts as i64 * self.initial_balance
    }
}

/// Where balances were seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Observation {
    /// A client's read on `node`, started at `at_ms` (lab clock).
    Read {
        /// The node that served it.
        node: String,
        /// When it started.
        at_ms: f64,
    },
    /// The final read.
    Final,
}

impl std::fmt::Display for Observation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Observation::Read { node, at_ms } => write!(f, "read on {node} at {at_ms:.0} ms"),
            Observation::Final => f.write_str("final state"),
        }
    }
}

/// A named way the history breaks the bank's invariants (see the module table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Anomaly {
    /// Accounts that do not add up.
    WrongTotal {
        /// Where.
        at: Observation,
        /// Accounts seen.
        accounts: usize,
        /// Their sum.
        total: i64,
        /// What it must be.
        expected: i64,
    },
    /// A balance below zero.
    NegativeBalance {
        /// Where.
        at: Observation,
        /// The balance.
        balance: i64,
    },
    /// A read that missed transfers acknowledged before it started.
    StaleRead {
        /// The read.
        at: Observation,
        /// Transfers its snapshot reflects.
        saw: u64,
        /// Transfers acknowledged before it started.
        acknowledged_before: u64,
    },
    /// An acknowledged transfer that is not in the final ledger.
    LostAcknowledgedWrite {
        /// The transfer.
        id: u64,
    },
    /// A ledger entry whose transfer was reported failed (`reported: Some(Failed)`) or was
    /// never sent (`None`).
    PhantomWrite {
        /// The transfer.
        id: u64,
        /// What its client saw.
        reported: Option<Outcome>,
    },
    /// Final balances that are not the initial balances plus the ledger.
    LedgerMismatch {
        /// account → final balance.
        balances: BTreeMap<i64, i64>,
        /// account → initial balance + ledger.
        derived: BTreeMap<i64, i64>,
    },
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anomaly::WrongTotal {
                at,
                accounts,
                total,
                expected,
            } => write!(
                f,
                "wrong total: {at} saw {accounts} accounts totalling {total}, expected {expected}"
            ),
            Anomaly::NegativeBalance { at, balance } => {
                write!(f, "negative balance: {at} saw {balance}")
            }
            Anomaly::StaleRead {
                at,
                saw,
                acknowledged_before,
            } => write!(
                f,
                "stale read: {at} reflects {saw} transfers, but {acknowledged_before} were acknowledged before it began"
            ),
            Anomaly::LostAcknowledgedWrite { id } => {
                write!(
                    f,
                    "lost acknowledged write: transfer {id} is not in the ledger"
                )
            }
            Anomaly::PhantomWrite { id, reported } => match reported {
                Some(o) => write!(
                    f,
                    "phantom write: transfer {id} is in the ledger but was reported {o:?}"
                ),
                None => write!(
                    f,
                    "phantom write: transfer {id} is in the ledger but was never sent"
                ),
            },
            Anomaly::LedgerMismatch { balances, derived } => write!(
                f,
                "ledger mismatch: final balances {balances:?} ≠ initial balances + ledger {derived:?}"
            ),
        }
    }
}

/// Jepsen's three answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Validity {
    /// Every check ran and held.
    Valid,
    /// Nothing broke, but the checks could not all run (the final state was not read).
    Unknown,
    /// At least one anomaly.
    Invalid,
}

/// The checker's answer, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Valid, unknown or invalid.
    pub validity: Validity,
    /// Every anomaly found (empty unless invalid).
    pub anomalies: Vec<Anomaly>,
    /// Why the verdict is unknown, when it is.
    pub unknown_because: Option<String>,
    /// Transfers acknowledged.
    pub acknowledged: u64,
    /// Unknown-outcome transfers that turned out to be applied (the rest were not).
    pub unknown_applied: u64,
    /// The final balances' sum, when the final state was read.
    pub final_total: Option<i64>,
}

impl Verdict {
    /// True only for a fully checked run without anomalies.
    pub fn is_valid(&self) -> bool {
        self.validity == Validity::Valid
    }

    /// The anomalies of one kind, by the name used in the module table (`"StaleRead"`, …).
    pub fn count(&self, kind: &str) -> usize {
        self.anomalies
            .iter()
            .filter(|a| format!("{a:?}").starts_with(kind))
            .count()
    }
}

/// Judges a history. Pure: the same history always gets the same verdict.
pub fn check(h: &History) -> Verdict {
    let mut anomalies = Vec::new();
    let expected = h.expected_total();

    // Reads: totals, signs, and real-time order against acknowledged transfers.
    let mut acked_ends: Vec<f64> = h
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Transfer && o.outcome == Outcome::Ok)
        .map(|o| o.started_at_ms + o.ms)
        .collect();
    acked_ends.sort_by(f64::total_cmp);
    for op in h.ops.iter().filter(|o| o.kind == OpKind::Read) {
        let Some(balances) = &op.balances else {
            continue; // a read without an answer says nothing
        };
        let at = Observation::Read {
            node: op.node.clone(),
            at_ms: op.started_at_ms,
        };
        check_balances(&at, balances, h.accounts, expected, &mut anomalies);
        if let Some(saw) = op.applied {
            let before = acked_ends.partition_point(|end| *end < op.started_at_ms) as u64;
            if saw < before {
                anomalies.push(Anomaly::StaleRead {
                    at,
                    saw,
                    acknowledged_before: before,
                });
            }
        }
    }

    let acknowledged = acked_ends.len() as u64;
    let final_state = match &h.final_state {
        Ok(f) => f,
        Err(why) => {
            let validity = if anomalies.is_empty() {
                Validity::Unknown
            } else {
                Validity::Invalid
            };
            return Verdict {
                validity,
                anomalies,
                unknown_because: Some(why.clone()),
                acknowledged,
                unknown_applied: 0,
                final_total: None,
            };
        }
    };

    // The final state: total and signs, then balances = initial + ledger.
    let balances: Vec<i64> = final_state.balances.values().copied().collect();
    check_balances(
        &Observation::Final,
        &balances,
        h.accounts,
        expected,
        &mut anomalies,
    );
    let mut derived: BTreeMap<i64, i64> = (0..h.accounts as i64)
        .map(|k| (k, h.initial_balance))
        .collect();
    for e in &final_state.ledger {
        *derived.entry(e.src).or_default() -= e.amount;
        *derived.entry(e.dst).or_default() += e.amount;
    }
    if derived != final_state.balances {
        anomalies.push(Anomaly::LedgerMismatch {
            balances: final_state.balances.clone(),
            derived,
        });
    }

    // Acknowledged ⊆ ledger ⊆ acknowledged ∪ unknown.
    let in_ledger: HashSet<u64> = final_state.ledger.iter().map(|e| e.id).collect();
    let reported: HashMap<u64, Outcome> = h
        .ops
        .iter()
        .filter_map(|o| o.id.map(|id| (id, o.outcome)))
        .collect();
    let mut lost: Vec<u64> = reported
        .iter()
        .filter(|(id, o)| **o == Outcome::Ok && !in_ledger.contains(id))
        .map(|(id, _)| *id)
        .collect();
    lost.sort_unstable();
    anomalies.extend(
        lost.into_iter()
            .map(|id| Anomaly::LostAcknowledgedWrite { id }),
    );
    let mut unknown_applied = 0;
    let mut phantoms = Vec::new();
    for id in &in_ledger {
        match reported.get(id) {
            Some(Outcome::Unknown) => unknown_applied += 1,
            Some(Outcome::Ok) => {}
            Some(Outcome::Failed) => phantoms.push((*id, Some(Outcome::Failed))),
            None => phantoms.push((*id, None)),
        }
    }
    phantoms.sort_unstable_by_key(|p| p.0);
    anomalies.extend(
        phantoms
            .into_iter()
            .map(|(id, reported)| Anomaly::PhantomWrite { id, reported }),
    );

    Verdict {
        validity: if anomalies.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        anomalies,
        unknown_because: None,
        acknowledged,
        unknown_applied,
        final_total: Some(balances.iter().sum()),
    }
}

/// Total and sign checks of one set of balances.
fn check_balances(
    at: &Observation,
    balances: &[i64],
    accounts: usize,
    expected: i64,
    out: &mut Vec<Anomaly>,
) {
    let total: i64 = balances.iter().sum();
    if balances.len() != accounts || total != expected {
        out.push(Anomaly::WrongTotal {
            at: at.clone(),
            accounts: balances.len(),
            total,
            expected,
        });
    }
    if let Some(b) = balances.iter().find(|b| **b < 0) {
        out.push(Anomaly::NegativeBalance {
            at: at.clone(),
            balance: *b,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transfer `id` that started at `t` ms, took 10 ms and ended as `outcome`.
    fn transfer(id: u64, t: f64, outcome: Outcome) -> BankOp {
        BankOp {
            node: "node-a".into(),
            kind: OpKind::Transfer,
            started_at_ms: t,
            ms: 10.0,
            outcome,
            id: Some(id),
            reason: None,
            detail: None,
            balances: None,
            applied: None,
        }
    }

    /// A read at `t` ms that saw `balances`, reflecting `applied` transfers.
    fn read(t: f64, balances: &[i64], applied: u64) -> BankOp {
        BankOp {
            node: "node-b".into(),
            kind: OpKind::Read,
            started_at_ms: t,
            ms: 5.0,
            outcome: Outcome::Ok,
            id: None,
            reason: None,
            detail: None,
            balances: Some(balances.to_vec()),
            applied: Some(applied),
        }
    }

    /// Two accounts of 100; transfer 1 (acknowledged) moved 10 from 0 to 1.
    fn good() -> History {
        History {
            accounts: 2,
            initial_balance: 100,
            ops: vec![
                read(0.0, &[100, 100], 0),
                transfer(1, 5.0, Outcome::Ok),
                read(20.0, &[90, 110], 1),
            ],
            final_state: Ok(FinalState {
                balances: BTreeMap::from([(0, 90), (1, 110)]),
                ledger: vec![LedgerEntry {
                    id: 1,
                    src: 0,
                    dst: 1,
                    amount: 10,
                }],
            }),
        }
    }

    fn kinds(v: &Verdict) -> Vec<String> {
        v.anomalies
            .iter()
            .map(|a| {
                format!("{a:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn a_consistent_history_is_valid() {
        let v = check(&good());
        assert_eq!(v.validity, Validity::Valid, "{:?}", v.anomalies);
        assert_eq!((v.acknowledged, v.final_total), (1, Some(200)));
    }

    #[test]
    fn an_unread_final_state_is_unknown_not_failed() {
        let mut h = good();
        h.final_state = Err("storage never came back".into());
        let v = check(&h);
        assert_eq!(v.validity, Validity::Unknown);
        assert_eq!(
            v.unknown_because.as_deref(),
            Some("storage never came back")
        );
        // …but an anomaly seen in the reads still makes it invalid.
        h.ops.push(read(30.0, &[90, 100], 1));
        assert_eq!(check(&h).validity, Validity::Invalid);
    }

    #[test]
    fn a_read_with_money_in_flight_is_a_wrong_total() {
        let mut h = good();
        h.ops.push(read(30.0, &[90, 100], 1));
        let v = check(&h);
        assert_eq!(v.validity, Validity::Invalid);
        assert_eq!(kinds(&v), ["WrongTotal"]);
        assert!(
            v.anomalies[0].to_string().contains("totalling 190"),
            "{}",
            v.anomalies[0]
        );
    }

    #[test]
    fn a_negative_balance_is_named() {
        let mut h = good();
        h.ops.push(read(30.0, &[-10, 210], 1));
        assert_eq!(kinds(&check(&h)), ["NegativeBalance"]);
    }

    #[test]
    fn a_read_missing_an_earlier_acknowledged_transfer_is_stale() {
        let mut h = good();
        // Transfer 1 ended at 15 ms; a read starting at 40 ms must reflect it.
        h.ops.push(read(40.0, &[100, 100], 0));
        let v = check(&h);
        assert_eq!(kinds(&v), ["StaleRead"]);
        // A read that began before the acknowledgement may miss it: not an anomaly.
        let mut h = good();
        h.ops.push(read(12.0, &[100, 100], 0));
        assert!(check(&h).is_valid());
    }

    #[test]
    fn an_acknowledged_transfer_missing_from_the_ledger_is_lost() {
        let mut h = good();
        h.ops.push(transfer(2, 30.0, Outcome::Ok));
        let v = check(&h);
        assert_eq!(kinds(&v), ["LostAcknowledgedWrite"]);
        assert_eq!(v.anomalies[0], Anomaly::LostAcknowledgedWrite { id: 2 });
    }

    #[test]
    fn failed_or_unsent_transfers_in_the_ledger_are_phantoms_and_unknown_ones_are_fine() {
        let mut h = good();
        h.ops.push(transfer(2, 30.0, Outcome::Failed));
        h.ops.push(transfer(3, 30.0, Outcome::Unknown));
        let f = h.final_state.as_mut().unwrap();
        for (id, src, dst) in [(2, 1, 0), (3, 0, 1), (4, 1, 0)] {
            f.ledger.push(LedgerEntry {
                id,
                src,
                dst,
                amount: 5,
            });
        }
        f.balances = BTreeMap::from([(0, 95), (1, 105)]);
        let v = check(&h);
        assert_eq!(kinds(&v), ["PhantomWrite", "PhantomWrite"]);
        assert_eq!(
            v.anomalies,
            vec![
                Anomaly::PhantomWrite {
                    id: 2,
                    reported: Some(Outcome::Failed)
                },
                Anomaly::PhantomWrite {
                    id: 4,
                    reported: None
                },
            ]
        );
        assert_eq!(v.unknown_applied, 1);
    }

    #[test]
    fn balances_that_disagree_with_the_ledger_are_a_mismatch() {
        let mut h = good();
        let f = h.final_state.as_mut().unwrap();
        f.balances = BTreeMap::from([(0, 80), (1, 120)]);
        assert_eq!(kinds(&check(&h)), ["LedgerMismatch"]);
    }

    #[test]
    fn unanswered_reads_are_not_judged() {
        let mut h = good();
        let mut r = read(40.0, &[], 0);
        r.outcome = Outcome::Failed;
        r.balances = None;
        r.applied = None;
        h.ops.push(r);
        assert!(check(&h).is_valid());
    }
}
