//! Dropped connections: the link resets a fraction of *new* connections on accept (a flaky load
//! balancer, a firewall under pressure), while connections already open carry on.
//!
//! Why this experiment opens its own connections: the lab's own sessions were opened before the
//! fault, so a drop never touches them. The clients here behave like jobs that open a connection
//! each (a serverless function, a CLI call): connect, sign in, write one record, close. A client
//! whose connection is reset retries with a new one, up to `max_connects` times. Afterwards the
//! link is healed and the records are read on another node: every acknowledged write must be
//! there, once.

use std::time::{Duration, Instant};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::experiments::harness::Harness;
use crate::infra::client;
use crate::vocab::error::LabError;
use crate::vocab::faults::{Fault, Link, LinkFault};
use crate::vocab::frames::frame;
use crate::vocab::nodes::NodeRef;

/// The table the clients write to (one record per client: `drop_probe:<client>`).
pub const TABLE: &str = "drop_probe";

/// The drill's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DropPlan {
    /// The node whose client link drops connections.
    pub node: NodeRef,
    /// Where the records are read back afterwards (another node).
    pub read_on: NodeRef,
    /// Fraction (0.0–1.0) of new connections reset on accept.
    pub fraction: f64,
    /// Clients, each opening its own connections and writing one record.
    pub clients: usize,
    /// Connection attempts per client before it gives up.
    pub max_connects: u32,
}

impl Default for DropPlan {
    /// Half of node-a's new connections dropped; 12 clients with up to 8 tries each; read on
    /// node-b.
    fn default() -> Self {
        DropPlan {
            node: NodeRef::from("a"),
            read_on: NodeRef::from("b"),
            fraction: 0.5,
            clients: 12,
            max_connects: 8,
        }
    }
}

/// One client's story.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropClient {
    /// Client number (its record is `drop_probe:<client>`).
    pub client: usize,
    /// Connections it opened, the successful one included.
    pub connects: u32,
    /// Connections the link reset before the client could send anything.
    pub refused: u32,
    /// `acknowledged` (the write returned OK), `gave up` (never connected), or `failed` (the
    /// write itself returned an error).
    pub outcome: String,
    /// The first error this client saw, if any.
    pub first_error: Option<String>,
    /// From the first attempt to the acknowledgement (or giving up), ms.
    pub ms: f64,
}

/// What the drill saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropReport {
    /// The link, e.g. `client→node-a`.
    pub link: String,
    /// The fraction of new connections dropped.
    pub fraction: f64,
    /// The node the records were read on afterwards.
    pub reader: String,
    /// One row per client.
    pub clients: Vec<DropClient>,
    /// Whether the lab's own session, opened before the fault, still answered during it.
    pub open_session_ok: bool,
    /// The record ids (`drop_probe:3`, …) the reader found after healing, sorted.
    pub stored: Vec<String>,
}

impl DropReport {
    /// Connections the link reset, over all clients.
    pub fn refused(&self) -> u32 {
        self.clients.iter().map(|c| c.refused).sum()
    }

    /// Connections opened, over all clients.
    pub fn connects(&self) -> u32 {
        self.clients.iter().map(|c| c.connects).sum()
    }

    /// The records whose write was acknowledged.
    pub fn acknowledged(&self) -> Vec<String> {
        self.clients
            .iter()
            .filter(|c| c.outcome == "acknowledged")
            .map(|c| record_id(c.client))
            .collect()
    }

    /// Acknowledged records missing on the reader: must be empty.
    pub fn lost(&self) -> Vec<String> {
        self.acknowledged()
            .into_iter()
            .filter(|id| !self.stored.contains(id))
            .collect()
    }

    /// Records found that no client saw acknowledged (a write whose answer was lost could be
    /// one; a refused connection never can).
    pub fn unacknowledged_found(&self) -> Vec<String> {
        let acked = self.acknowledged();
        self.stored
            .iter()
            .filter(|id| !acked.contains(id))
            .cloned()
            .collect()
    }

    /// The claim: the link did drop connections, and no acknowledged write is missing.
    pub fn claim_holds(&self) -> bool {
        self.refused() > 0 && self.lost().is_empty()
    }

    /// One row per client: client, connects, refused, outcome, ms, first_error.
    pub fn clients_frame(&self) -> Result<DataFrame, LabError> {
        let c = &self.clients;
        frame(vec![
            Column::new(
                "client".into(),
                c.iter().map(|x| x.client as u32).collect::<Vec<_>>(),
            ),
            Column::new(
                "connects".into(),
                c.iter().map(|x| x.connects).collect::<Vec<_>>(),
            ),
            Column::new(
                "refused".into(),
                c.iter().map(|x| x.refused).collect::<Vec<_>>(),
            ),
            Column::new(
                "outcome".into(),
                c.iter().map(|x| x.outcome.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "ms".into(),
                c.iter()
                    .map(|x| (x.ms * 10.0).round() / 10.0)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "first_error".into(),
                c.iter().map(|x| x.first_error.clone()).collect::<Vec<_>>(),
            ),
        ])
    }

    /// What happened, in sentences computed from this run.
    pub fn explain(&self) -> String {
        let acked = self.acknowledged().len();
        let n = self.clients.len();
        let example = self
            .clients
            .iter()
            .find_map(|c| c.first_error.clone())
            .unwrap_or_else(|| "(no error: no connection was dropped)".into());
        let open = if self.open_session_ok {
            "The lab's own session, opened before the fault, kept answering: a drop hits new \
             connections only."
        } else {
            "Even the lab's own session, opened before the fault, failed during it."
        };
        let lost = self.lost();
        let durable = if lost.is_empty() {
            format!(
                "After healing, {} read {} record(s): all {acked} acknowledged writes are there, \
                 each once.",
                self.reader,
                self.stored.len()
            )
        } else {
            format!(
                "After healing, {} is missing {} acknowledged write(s): {lost:?}.",
                self.reader,
                lost.len()
            )
        };
        let extra = self.unacknowledged_found();
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(
                " {} record(s) were found although their client never saw the acknowledgement \
                 ({extra:?}): their answer was lost, not their write.",
                extra.len()
            )
        };
        format!(
            "{} of the {} connections the {n} clients opened through {} were reset by the link \
             ({:.0}% set). A client sees this while connecting, e.g. \"{example}\": the reset \
             came before any query was sent, so nothing was written and retrying with a new \
             connection is safe. Retrying that way (the unluckiest client needed {} connection(s)), \
             {acked} of {n} clients got their write acknowledged. {open} {durable}{extra}",
            self.refused(),
            self.connects(),
            self.link,
            self.fraction * 100.0,
            self.clients
                .iter()
                .map(|c| c.connects)
                .max()
                .unwrap_or(0)
                .max(1),
        )
    }
}

/// `drop_probe:<k>`.
pub fn record_id(client: usize) -> String {
    format!("{TABLE}:{client}")
}

/// Refuses a plan that would show nothing.
pub fn validate(plan: &DropPlan) -> Result<(), LabError> {
    if plan.clients == 0 || plan.max_connects == 0 {
        return Err(LabError::config(
            "DropPlan",
            "clients and max_connects must be at least 1",
            "start from DropPlan::default() and change one field",
        ));
    }
    Fault::Link(
        Link::ClientToNode(plan.node.clone()),
        LinkFault::Drop {
            fraction: plan.fraction,
        },
    )
    .validate()
}

/// The drill, inside the actor: set the drop fraction, run the clients one after another, check
/// the lab's open session, heal, and read the records on `plan.read_on`.
pub(crate) async fn run(plan: DropPlan, h: &mut impl Harness) -> Result<DropReport, LabError> {
    validate(&plan)?;
    let i = h.resolve(&plan.node)?;
    let reader = h.node_name(&plan.read_on);
    let (_, r) = h
        .sql(
            plan.read_on.clone(),
            format!("REMOVE TABLE IF EXISTS {TABLE}; DEFINE TABLE {TABLE} SCHEMALESS;"),
        )
        .await;
    r?;
    // Open the lab's session to the node now, so it exists before the fault.
    let (_, r) = h.sql(plan.node.clone(), "RETURN 1".into()).await;
    r?;
    let link = Link::ClientToNode(plan.node.clone());
    let drop = LinkFault::Drop {
        fraction: plan.fraction,
    };
    h.inject(&Fault::Link(link.clone(), drop)).await?;
    let mut spec = h.connect_spec(i);
    // A reset handshake fails at once; a short limit only guards against a hung one.
    spec.timeout = spec.timeout.min(Duration::from_secs(5));
    let mut clients = Vec::with_capacity(plan.clients);
    for k in 0..plan.clients {
        clients.push(one_client(k, &spec, plan.max_connects).await);
    }
    let (_, open) = h.sql(plan.node.clone(), "RETURN 1".into()).await;
    h.inject(&Fault::Link(link, LinkFault::Heal)).await?;
    let (_, found) = h
        .sql(
            plan.read_on.clone(),
            format!("SELECT VALUE id FROM {TABLE}"),
        )
        .await;
    let mut stored: Vec<String> = found?
        .rows()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    stored.sort();
    let node = h.node_name(&plan.node);
    Ok(DropReport {
        link: format!("client→{node}"),
        fraction: plan.fraction,
        reader,
        clients,
        open_session_ok: open.is_ok(),
        stored,
    })
}

/// One job: connect (retrying a reset connection), write its record, close.
async fn one_client(k: usize, spec: &client::ConnectSpec, max_connects: u32) -> DropClient {
    let t = Instant::now();
    let mut out = DropClient {
        client: k,
        connects: 0,
        refused: 0,
        outcome: "gave up".into(),
        first_error: None,
        ms: 0.0,
    };
    while out.connects < max_connects {
        out.connects += 1;
        match client::connect(spec).await {
            Err(e) => {
                out.refused += 1;
                out.first_error
                    .get_or_insert_with(|| e.to_string().lines().next().unwrap_or("").to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(db) => {
                let q = format!("CREATE {} SET client = {k}", record_id(k));
                let ok = match client::run_query(&db, &q, None).await {
                    Ok(outs) => outs.iter().all(|o| o.is_ok()),
                    Err(_) => false,
                };
                out.outcome = if ok { "acknowledged" } else { "failed" }.into();
                break;
            }
        }
    }
    out.ms = t.elapsed().as_secs_f64() * 1000.0;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(k: usize, refused: u32, outcome: &str) -> DropClient {
        DropClient {
            client: k,
            connects: refused + u32::from(outcome != "gave up"),
            refused,
            outcome: outcome.into(),
            first_error: (refused > 0).then(|| "cannot talk to node-a: connection reset".into()),
            ms: 10.0,
        }
    }

    fn report(stored: &[&str]) -> DropReport {
        DropReport {
            link: "client→node-a".into(),
            fraction: 0.5,
            reader: "node-b".into(),
            clients: vec![
                client(0, 2, "acknowledged"),
                client(1, 0, "acknowledged"),
                client(2, 3, "gave up"),
            ],
            open_session_ok: true,
            stored: stored.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn every_acknowledged_write_must_be_found() {
        let ok = report(&["drop_probe:0", "drop_probe:1"]);
        assert_eq!(ok.refused(), 5);
        assert_eq!(ok.connects(), 7);
        assert!(ok.lost().is_empty() && ok.claim_holds());
        let e = ok.explain();
        assert!(
            e.contains("5 of the 7") && e.contains("all 2 acknowledged"),
            "{e}"
        );
        assert!(e.contains("connection reset"), "{e}");
        let lost = report(&["drop_probe:0"]);
        assert_eq!(lost.lost(), vec!["drop_probe:1".to_string()]);
        assert!(!lost.claim_holds());
        assert!(lost.explain().contains("missing 1"), "{}", lost.explain());
        let extra = report(&["drop_probe:0", "drop_probe:1", "drop_probe:2"]);
        assert_eq!(
            extra.unacknowledged_found(),
            vec!["drop_probe:2".to_string()]
        );
        assert_eq!(extra.clients_frame().unwrap().height(), 3);
    }

    #[test]
    fn plans_that_show_nothing_are_refused() {
        assert!(validate(&DropPlan::default()).is_ok());
        let none = DropPlan {
            clients: 0,
            ..DropPlan::default()
        };
        assert!(validate(&none).is_err());
        let bad = DropPlan {
            fraction: 2.0,
            ..DropPlan::default()
        };
        assert!(
            validate(&bad)
                .unwrap_err()
                .to_string()
                .contains("between 0.0")
        );
    }
}
