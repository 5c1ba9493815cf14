//! `LabError`: everything that can go wrong in the lab, each with the fix.
//!
//! The learner reading an error is in the middle of a notebook or a terminal session. So every
//! variant's message has two halves: *what happened* (with the concrete node, port, path or
//! statement) and *what to do about it* (a command to run, a builder method to call). Tests assert
//! on the fix half, so the advice cannot silently rot.
//!
//! Errors are plain data (strings and numbers, no boxed sources) because they travel from the
//! lab's actor thread back to the caller over a channel, possibly between two copies of this crate
//! compiled into different notebook cells (see `actor::thread`).

use std::time::Duration;

/// The SurrealDB wire code of a transaction conflict (`QueryError::TransactionConflict`).
///
/// Kept here because it is the one code the lab reacts to programmatically: a conflict means
/// "another transaction won; run yours again", so retry helpers look for exactly this value.
pub const TRANSACTION_CONFLICT_CODE: i64 = -32009;

/// Everything the lab can report. See the module docs for the message convention.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// No `surreal` (or other lab) binary could be found anywhere we look.
    #[error(
        "could not find the `{name}` binary (looked at: {tried}).\n\
         Fix: run `{build_command}` from the repository root (the first build takes {build_time}), \
         or point {env_var} at an existing binary."
    )]
    BinaryNotFound {
        /// The binary's file name, e.g. `surreal`.
        name: String,
        /// Every place that was checked, in order, so the learner can see why none matched.
        tried: String,
        /// The environment variable that overrides the search, e.g. `SURREAL_BIN`.
        env_var: String,
        /// The command that builds the binary.
        build_command: String,
        /// A rough duration of that build, so nobody thinks it hung.
        build_time: String,
    },

    /// A binary was found or named, but it is not usable (missing, not executable, wrong version).
    #[error("the `{name}` binary at {path} cannot be used: {reason}.\nFix: {fix}")]
    BinaryUnusable {
        /// The binary's file name.
        name: String,
        /// The path that was tried.
        path: String,
        /// Why it is unusable.
        reason: String,
        /// What to do instead.
        fix: String,
    },

    /// A builder setting is out of range or contradicts another one.
    #[error("invalid lab setting `{setting}`: {reason}.\nFix: {fix}")]
    InvalidConfig {
        /// The setting's builder method or CLI flag, e.g. `nodes` or `base_port`.
        setting: String,
        /// What is wrong with the value.
        reason: String,
        /// A valid alternative.
        fix: String,
    },

    /// A port the lab needs is held by a process that is not one of this lab's nodes.
    #[error(
        "port {port} on 127.0.0.1 is already in use{by}.\n\
         Fix: stop that process, choose another base port (`.base_port(P)` / `lab up --base-port P`), \
         or use `.ephemeral_ports()` (env LAB_BASE_PORT=ephemeral) to let the lab pick free ports.",
        by = match holder { Some(h) => format!(" by {h}"), None => String::new() }
    )]
    PortInUse {
        /// The busy port.
        port: u16,
        /// `pid 1234: cmd line` of the holder when /proc lets us read it.
        holder: Option<String>,
    },

    /// A node did not become ready in time; it has been stopped.
    #[error(
        "{node} (port {port}) did not become ready within {waited:?}; it was stopped.\n\
         Last lines of its log {log}:\n{tail}\n\
         Fix: read the log above; if the machine is just slow, raise `.start_timeout(..)`."
    )]
    StartTimeout {
        /// The node name, e.g. `node-a`.
        node: String,
        /// Its port.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// Path of the node's log file.
        log: String,
        /// The last ~20 lines of that log.
        tail: String,
    },

    /// A node's process exited while starting.
    #[error(
        "{node} (port {port}) exited while starting ({status}).\n\
         Last lines of its log {log}:\n{tail}\n\
         Fix: the log above says why (a busy port, an unreadable data directory, a bad storage address)."
    )]
    NodeExited {
        /// The node name.
        node: String,
        /// Its port.
        port: u16,
        /// The exit status as text, e.g. `exit code 1`.
        status: String,
        /// Path of the node's log file.
        log: String,
        /// The last ~20 lines of that log.
        tail: String,
    },

    /// A node was asked to do something but it is not running.
    #[error(
        "{node} (port {port}) is not running (state: {state}).\n\
         Fix: start it again with `cluster.restart_node(\"{node}\")` (CLI: `lab up`)."
    )]
    NodeDown {
        /// The node name.
        node: String,
        /// Its port.
        port: u16,
        /// Its state, e.g. `killed`.
        state: String,
    },

    /// An action that the target's current state does not allow (resuming a node that is not
    /// paused, removing a node that is not the newest, adding a node while storage is down).
    #[error("cannot {action} {target}: {reason}.\nFix: {fix}")]
    WrongState {
        /// What was asked, e.g. `resume`.
        action: String,
        /// The node (`node-b`), `storage` or the lab.
        target: String,
        /// Why not, with the state it is in.
        reason: String,
        /// What to do instead.
        fix: String,
    },

    /// A node name or index that this lab does not have.
    #[error(
        "this lab has no node `{given}`; its nodes are: {known}.\nFix: use one of those names, a letter (\"a\") or a 0-based index."
    )]
    UnknownNode {
        /// What the caller passed.
        given: String,
        /// The lab's node names.
        known: String,
    },

    /// The storage tier a mode needs is not available or not reachable.
    #[error("storage mode `{mode}` is not available: {reason}.\nFix: {fix}")]
    StorageUnavailable {
        /// The mode's label, e.g. `shared`.
        mode: String,
        /// What is missing.
        reason: String,
        /// How to get it, or which mode to use instead.
        fix: String,
    },

    /// Signing in to a node was refused.
    #[error(
        "{node} (port {port}) refused the credentials for user `{user}`: {message}.\n\
         Fix: pass the credentials the node was started with to `.credentials(user, pass)` \
         (a surrealkv or shared store keeps the root user of its first start; `cleanup()` resets it)."
    )]
    Auth {
        /// The node name.
        node: String,
        /// Its port.
        port: u16,
        /// The user name that was tried (never the password).
        user: String,
        /// SurrealDB's message.
        message: String,
    },

    /// The WebSocket connection to a node failed or broke.
    #[error(
        "cannot talk to {node} (port {port}): {message}.\nFix: check `cluster.status()`; restart the node with `cluster.restart_node(\"{node}\")` if it is down."
    )]
    Connection {
        /// The node name.
        node: String,
        /// Its port.
        port: u16,
        /// What the SDK reported.
        message: String,
    },

    /// SurrealDB rejected a statement. `kind`, `detail` and `code` are SurrealDB's own
    /// classification, kept so callers can react to e.g. a retryable transaction conflict.
    #[error("{node} (port {port}) rejected `{statement}`: {message}\nFix: {fix}")]
    Query {
        /// The node name.
        node: String,
        /// Its port.
        port: u16,
        /// The failing statement, shortened.
        statement: String,
        /// SurrealDB's message.
        message: String,
        /// SurrealDB's error kind, e.g. `Validation`, `NotFound`, `Query`.
        kind: String,
        /// The kind's detail, e.g. `Parse`, `Namespace`, `TransactionConflict`, when given.
        detail: Option<String>,
        /// SurrealDB's wire code, e.g. -32009 for a transaction conflict.
        code: i64,
        /// Our advice for this kind of error.
        fix: String,
    },

    /// A row could not be turned into the Rust type the caller asked for.
    #[error(
        "a row from {node} does not fit `{what}`: {message}.\nThe row: {row}\nFix: make the struct's fields match the row (optional fields as `Option<..>`), or select only the fields it has."
    )]
    Decode {
        /// The target type.
        what: String,
        /// The node that returned the row.
        node: String,
        /// serde's message.
        message: String,
        /// The row, shortened.
        row: String,
    },

    /// An operation took longer than the lab allows.
    #[error("{what} on {node} (port {port}) did not finish within {after:?}.\nFix: {fix}")]
    Timeout {
        /// What was running, e.g. `query`.
        what: String,
        /// The node name.
        node: String,
        /// Its port.
        port: u16,
        /// The limit.
        after: Duration,
        /// What to do.
        fix: String,
    },

    /// `Cluster::attach` found no lab to attach to.
    #[error(
        "no running lab `{name}` found (expected {path}).\nFix: start one with `lab up --name {name}` or `Cluster::builder().name(\"{name}\").start()`."
    )]
    LabNotFound {
        /// The lab name or directory asked for.
        name: String,
        /// The state file that is missing or unreadable.
        path: String,
    },

    /// A file-system operation failed.
    #[error("{action} {path} failed: {message}.\nFix: {fix}")]
    Io {
        /// What we tried, e.g. `creating directory`.
        action: String,
        /// The path involved.
        path: String,
        /// The OS error.
        message: String,
        /// What to check.
        fix: String,
    },

    /// A newer start of the same lab (this process or another) reaped this handle's processes
    /// and owns the lab directory now.
    #[error(
        "lab `{name}` was started again by a newer handle, which stopped this handle's nodes and now owns {path}.\n\
         Fix: use the newer handle (in a notebook: the variable of the cell you re-ran); this one can only be dropped."
    )]
    TakenOver {
        /// The lab's name.
        name: String,
        /// The lab directory.
        path: String,
    },

    /// The lab's background thread is gone (it panicked or was shut down).
    #[error(
        "the lab's background thread is not running ({reason}).\nFix: create a new cluster with `Cluster::builder()...start()` (running nodes are reaped automatically)."
    )]
    ActorGone {
        /// What we know about why.
        reason: String,
    },

    /// A table could not be built (a bug in the lab: columns of different lengths).
    #[error(
        "building a table failed: {message}.\nFix: this is a bug in poc_helpers; please report it with the cell that ran."
    )]
    Frame {
        /// polars' message.
        message: String,
    },

    /// A chart could not be drawn.
    #[error(
        "drawing the chart `{chart}` failed: {message}.\nFix: check that the run produced data (an empty run has nothing to draw); otherwise report it."
    )]
    Chart {
        /// The chart's title.
        chart: String,
        /// The drawing backend's message.
        message: String,
    },
}

impl From<polars::prelude::PolarsError> for LabError {
    fn from(e: polars::prelude::PolarsError) -> Self {
        LabError::Frame {
            message: e.to_string(),
        }
    }
}

/// An error text cut down to what a reader can act on: its first line, without the source
/// locations a dependency puts in its messages (`[…/cluster.rs:332]: `) and without debug dumps
/// of internal structs (`[Member { name: …, … }]` becomes `[Member]`). Machine paths go with the
/// locations, so a notebook's output holds nothing of the machine that ran it.
pub fn brief(text: &str) -> String {
    let mut line = text.lines().next().unwrap_or("").to_string();
    // `[path/to/file.rs:123]: ` — a location inside a dependency, not a cause.
    let mut from = 0;
    while let Some(start) = line[from..].find('[').map(|i| from + i) {
        let location = line[start..].find("]: ").filter(|len| {
            let inside = &line[start + 1..start + len];
            inside.contains(".rs:") && !inside.contains(' ')
        });
        match location {
            Some(len) => line.replace_range(start..start + len + 3, ""),
            None => from = start + 1,
        }
    }
    // `Name { field: …, … }` debug dumps (a CamelCase name): keep the name, drop the fields.
    let mut from = 0;
    while let Some(open) = line[from..].find(" { ").map(|i| from + i) {
        let name_start = line[..open]
            .rfind(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(0, |i| i + 1);
        let name = &line[name_start..open];
        let camel = name.starts_with(|c: char| c.is_ascii_uppercase())
            && name.chars().any(|c| c.is_ascii_lowercase());
        let mut depth = 0usize;
        let mut end = None;
        for (i, c) in line[open + 1..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = Some(open + 1 + i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        match (camel, end) {
            (true, Some(end)) => line.replace_range(open..end, ""),
            _ => from = open + 1,
        }
    }
    line
}

impl LabError {
    /// [`brief`] of this error's text: its message and cause, without dependency internals.
    pub fn brief(&self) -> String {
        brief(&self.to_string())
    }

    /// True when SurrealDB reported a transaction conflict: the statement lost a race with another
    /// transaction and can simply be run again. Matches the code or the error kind, not the message text.
    pub fn is_transaction_conflict(&self) -> bool {
        // A failed RPC carries code -32009; a conflict inside a multi-statement query (e.g. at
        // COMMIT) comes back per statement with the generic code and the detail kind only.
        matches!(self, LabError::Query { code, detail, .. }
            if *code == TRANSACTION_CONFLICT_CODE || detail.as_deref() == Some("TransactionConflict"))
    }

    /// Builds an [`LabError::Io`] from a `std::io::Error` with a context and advice.
    pub(crate) fn io(
        action: &str,
        path: &std::path::Path,
        err: &std::io::Error,
        fix: &str,
    ) -> Self {
        LabError::Io {
            action: action.to_string(),
            path: path.display().to_string(),
            message: err.to_string(),
            fix: fix.to_string(),
        }
    }

    /// Shorthand for an out-of-range builder setting.
    pub(crate) fn config(setting: &str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        LabError::InvalidConfig {
            setting: setting.into(),
            reason: reason.into(),
            fix: fix.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_in_use_names_port_holder_and_fix() {
        let e = LabError::PortInUse {
            port: 8000,
            holder: Some("pid 42: nc -l 8000".into()),
        };
        let text = e.to_string();
        assert!(text.contains("port 8000"), "{text}");
        assert!(text.contains("pid 42: nc -l 8000"), "{text}");
        assert!(text.contains("ephemeral_ports"), "{text}");
    }

    #[test]
    fn conflict_is_recognised_by_code() {
        let e = LabError::Query {
            node: "node-a".into(),
            port: 8000,
            statement: "UPDATE x".into(),
            message: "Transaction conflict".into(),
            kind: "Query".into(),
            detail: Some("TransactionConflict".into()),
            code: TRANSACTION_CONFLICT_CODE,
            fix: "retry".into(),
        };
        assert!(e.is_transaction_conflict());
        assert!(!LabError::ActorGone { reason: "x".into() }.is_transaction_conflict());
    }

    #[test]
    fn brief_drops_dependency_locations_and_struct_dumps() {
        let raw = "node-b (port 21350) rejected `SELECT * FROM item`: There was a problem with a \
                   transaction: [~/.cargo/registry/src/x/tikv-client-0.5.0/src/pd/cluster.rs:332]: \
                   failed to connect to [Member { name: \"storage-node\", member_id: 4, peer_urls: \
                   [\"http://127.0.0.1:1\"] }]\nsecond line";
        assert_eq!(
            brief(raw),
            "node-b (port 21350) rejected `SELECT * FROM item`: There was a problem with a \
             transaction: failed to connect to [Member]"
        );
        // Plain brackets and braces in a message stay.
        assert_eq!(
            brief("CREATE note:1 SET a = [1, 2]"),
            "CREATE note:1 SET a = [1, 2]"
        );
        assert_eq!(brief("RETURN { a: 1 }"), "RETURN { a: 1 }");
    }
}
