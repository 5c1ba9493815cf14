//! Client-level tests: SurrealDB's own TiKV client (`surrealdb-tikv-client` 0.5.0) against
//! the storage node, in all three commit paths. These are the guarantees SurrealDB relies on.
//! The same suite runs against PD plus three stores and several regions in
//! `client_regions.rs`.

mod common;

include!("suites/client.rs");
