//! Placement-driver internals that are not part of the gRPC surface: the timestamp oracle, the
//! cluster registry (stores, regions, leaders, ids) and the GC safe point.
//! (The PD gRPC service itself is in [`crate::server::pd`].)

pub mod cluster;
pub mod gc;
pub mod operator;
pub mod tso;
