//! The TiKV client suite of `client.rs` (SurrealDB's own client, `surrealdb-tikv-client` 0.5.0,
//! in all three commit paths) against the replicated tier: PD and three stores in this
//! process, every region on all three with Raft, and the key space split into six regions at
//! keys inside the suite's ranges. So its scans cross region boundaries, its transactions
//! commit across regions (two-phase, async commit's secondaries on other regions), and a
//! client that cached a region before a split is corrected by `EpochNotMatch`.

#[path = "common/regions.rs"]
mod common;

include!("suites/client.rs");
