//! Naming nodes and what can happen to them: [`NodeRef`] (how a caller names a node),
//! [`NodeAction`] (a lifecycle action on a node or the storage node) and [`NodeState`] (what a
//! process is doing, as status tables show it).
//!
//! Plain data, shared by every layer: the facade sends these to the actor, the actor's
//! processes report them, experiments schedule them.

use serde::{Deserialize, Serialize};

/// Which node a command is about: a 0-based index or a name (`node-b`, `b`, `B`, `"1"`).
///
/// Notebook code passes `0`, `"b"` or `"node-b"` and conversion happens through `Into<NodeRef>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    /// 0-based: 0 is node-a.
    Index(usize),
    /// A name as the user typed it; resolved by the lab.
    Name(String),
}

impl From<usize> for NodeRef {
    fn from(i: usize) -> Self {
        NodeRef::Index(i)
    }
}
impl From<i32> for NodeRef {
    /// Integer literals in notebook cells default to `i32`; negative values resolve to no node.
    fn from(i: i32) -> Self {
        if i < 0 {
            NodeRef::Name(i.to_string())
        } else {
            NodeRef::Index(i as usize)
        }
    }
}
impl From<&str> for NodeRef {
    fn from(s: &str) -> Self {
        NodeRef::Name(s.to_string())
    }
}
impl From<String> for NodeRef {
    fn from(s: String) -> Self {
        NodeRef::Name(s)
    }
}
impl From<&String> for NodeRef {
    fn from(s: &String) -> Self {
        NodeRef::Name(s.clone())
    }
}

/// A single-node lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    /// SIGTERM, grace period, SIGKILL.
    Stop,
    /// SIGKILL at once.
    Kill,
    /// Stop if running, start again on the same port and data directory, wait until ready.
    Restart,
    /// SIGSTOP: the process stays, but stops answering (a hung machine).
    Pause,
    /// SIGCONT after a pause.
    Resume,
}

impl NodeAction {
    /// The fault log's name for the action.
    pub fn name(&self) -> &'static str {
        match self {
            NodeAction::Stop => "stop",
            NodeAction::Kill => "kill",
            NodeAction::Restart => "restart",
            NodeAction::Pause => "pause",
            NodeAction::Resume => "resume",
        }
    }
}

/// The most nodes a lab runs, started or added later: node-a … node-i.
pub const MAX_NODES: usize = 9;

/// The node's name for index `i`: node-a, node-b, … (the lab allows at most [`MAX_NODES`]: a–i).
pub fn node_name(i: usize) -> String {
    format!("node-{}", (b'a' + i as u8) as char)
}

/// What a node is doing, as shown in status tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Created but never started.
    NotStarted,
    /// The process is alive.
    Running,
    /// The process is alive but frozen by SIGSTOP (failure experiments).
    Paused,
    /// Stopped by the lab with SIGTERM (or SIGKILL after the grace period).
    Stopped,
    /// Killed on purpose with SIGKILL (`kill_node`).
    Killed,
    /// The process ended by itself; the text says how (e.g. `exit code 1`).
    Exited(String),
    /// A process the lab does not own — external storage (`StorageMode::ExternalTikv`): the lab
    /// neither started it nor ever stops it, so it has no pid or uptime here, only an address.
    External,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeState::NotStarted => f.write_str("not started"),
            NodeState::Running => f.write_str("running"),
            NodeState::Paused => f.write_str("paused"),
            NodeState::Stopped => f.write_str("stopped"),
            NodeState::Killed => f.write_str("killed"),
            NodeState::Exited(how) => write!(f, "exited({how})"),
            NodeState::External => f.write_str("external"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_refs_from_notebook_literals() {
        fn r(x: impl Into<NodeRef>) -> NodeRef {
            x.into()
        }
        assert_eq!(r(0), NodeRef::Index(0)); // an untyped literal is i32
        assert_eq!(r(1usize), NodeRef::Index(1));
        assert_eq!(r("b"), NodeRef::Name("b".into()));
        assert_eq!(r(String::from("node-b")), NodeRef::Name("node-b".into()));
    }
}
