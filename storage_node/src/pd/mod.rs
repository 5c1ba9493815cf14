//! Placement-driver internals that are not part of the gRPC surface: the timestamp oracle.
//! (The PD gRPC service itself is in [`crate::server::pd`].)

pub mod tso;
