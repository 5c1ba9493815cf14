//! The lab's actor: one thread with its own tokio runtime that owns every process and
//! connection of a lab, driven by plain-data commands (see `thread` for why notebooks need
//! this).
//!
//! - `command`: the `Command` enum, the only thing that crosses from the facade.
//! - `thread`: spawning the thread and calling it.
//! - `lab`: the state of one lab and how it carries out each command, split by concern.

pub(crate) mod command;
pub mod lab;
pub(crate) mod thread;
