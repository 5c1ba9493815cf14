//! Processes and wires: everything that touches the operating system or the network.
//!
//! Imports only [`crate::vocab`]. Each module owns one kind of thing: processes by pid
//! ([`procs`]), the life of one process the lab runs ([`process`]), ports ([`ports`]), finding
//! binaries ([`binary`]), one `surreal` node ([`node`]), one embedded storage process
//! ([`storage_node`]) and the group of them
//! ([`embedded_tier`]), the storage tier behind a mode ([`storage`]), the fault proxy and the
//! links built on it ([`proxy`], [`links`]), SDK sessions and HTTP ([`client`]), SurrealDB's
//! HTTP API with sessions and failover ([`http_api`]), record names to storage keys
//! ([`keyspace`]), process sampling ([`sampler`]), the storage trace ([`trace`]) and status
//! measurements ([`metrics`]).

pub mod binary;
pub mod client;
pub mod embedded_tier;
pub mod http_api;
pub mod keyspace;
pub mod links;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod ports;
pub mod process;
pub mod procs;
pub mod proxy;
pub mod sampler;
pub mod storage;
pub mod storage_node;
pub mod trace;
