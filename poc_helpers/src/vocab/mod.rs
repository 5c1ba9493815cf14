//! The lab's vocabulary: plain data every other layer speaks, and nothing that runs.
//!
//! Imports nothing else of this crate (a test in `lib.rs` checks the layering), so a reader can
//! learn these types first and rely on them everywhere: how a node is named ([`nodes`]), every
//! setting ([`config`]), a fault and its log ([`faults`]), one operation's record ([`oplog`]),
//! the spec's entities ([`entities`]), what a storage key means ([`key_meaning`]) and the one
//! error type ([`error`]).
//!
//! Named `vocab` rather than `core`: a module called `core` would shadow Rust's own `core`
//! crate in paths written at the crate root.

pub mod config;
pub mod entities;
pub mod error;
pub mod faults;
pub mod frames;
pub mod key_meaning;
pub mod nodes;
pub mod oplog;
pub mod query;
