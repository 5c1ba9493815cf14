//! Checks behind the notebooks' "Try it yourself" cells that need the running lab.
//!
//! A check cell should stay one line, and its verdict should teach: each method here looks at the
//! lab (and the operating system) and returns a [`Check`] that says what was verified, or what to
//! try next.

use super::Cluster;
use crate::infra::procs;
use crate::present::exercise::{Check, check};
use crate::vocab::error::LabError;
use crate::vocab::nodes::NodeRef;

impl Cluster {
    /// Notebook 01: is `pid` the process of `node`? Asks the operating system what runs under
    /// that pid, so the learner sees a node *is* a `surreal start` process with its own port.
    pub fn check_node_pid(&self, node: impl Into<NodeRef>, pid: u32) -> Result<Check, LabError> {
        let e = self.endpoint(node)?;
        let inst = self
            .instances()?
            .into_iter()
            .find(|i| i.node == e.node)
            .expect("endpoint() found this node");
        if pid == 0 {
            return Ok(check(
                false,
                "",
                format!(
                    "put {}'s pid in the cell above: it is in the status table's pid column",
                    e.node
                ),
            ));
        }
        let cmd = procs::inspect(pid).map(|p| p.cmd.join(" "));
        Ok(match (inst.pid == Some(pid), cmd) {
            (true, Some(cmd)) => check(
                true,
                format!(
                    "pid {pid} is `{cmd}`: {}'s own operating-system process, listening on port {}, \
                     with its data in the storage tier (the tikv:// address), not in files of its own",
                    e.node, inst.port
                ),
                "",
            ),
            (_, None) => check(
                false,
                "",
                format!(
                    "no process has pid {pid}; copy {}'s pid from the status table",
                    e.node
                ),
            ),
            (false, Some(cmd)) => check(
                false,
                "",
                format!(
                    "pid {pid} is `{}`, not {}: look for the row whose node is {}",
                    cmd.chars().take(80).collect::<String>(),
                    e.node,
                    e.node
                ),
            ),
        })
    }

    /// Notebook 02, exercise 02-1: was `record` written on `new_node` (a node added to the
    /// running lab) and then read on node-a, which returned `rows_on_a` rows? Reads the
    /// operation log, which names the node that served every query, so the verdict knows where
    /// each step ran (see `experiments::scale_out::write_on_new_node_read_on_a`).
    pub fn check_write_on_new_node(
        &self,
        new_node: Option<&str>,
        record: &str,
        rows_on_a: usize,
    ) -> Result<Check, LabError> {
        Ok(crate::experiments::scale_out::write_on_new_node_read_on_a(
            new_node,
            &self.op_log()?,
            record,
            rows_on_a,
        ))
    }
}
