//! The official SurrealDB server (`surreal`), built from the published `surrealdb-server` crate.
//!
//! This is exactly the entry point of the upstream binary: the community feature set composed
//! into the server. The lab builds it itself because no SurrealDB release is downloadable here,
//! and pinning it in `Cargo.lock` means every learner runs the same 3.3.5 server.
#![recursion_limit = "256"]

use std::process::ExitCode;

fn main() -> ExitCode {
    surrealdb_server::init(surrealdb_server::core::CommunityComposer())
}
