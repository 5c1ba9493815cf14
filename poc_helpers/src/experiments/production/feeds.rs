//! Changefeeds instead of cross-node live queries: a LIVE SELECT on node A never hears of a
//! write on node B (issues 5070, 5068), but a table's changefeed is data in the shared
//! storage, so `SHOW CHANGES FOR TABLE … SINCE …` should read the same feed from any node.
//! [`FeedReport`] holds what each node returned, by versionstamp and by datetime, and checks
//! that the feeds are equal and in write order.

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::vocab::error::LabError;
use crate::vocab::frames::frame;

/// One change set of a feed: its versionstamp and the records it changed, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// The versionstamp (grows with every committed transaction that wrote the table).
    pub versionstamp: u64,
    /// Ids of the records updated in this change set (`feed:3`).
    pub ids: Vec<String>,
}

/// Parses `SHOW CHANGES` rows: `[{versionstamp, changes: [{update: {id, …}} | {define_table: …}]}]`.
pub fn parse_changes(rows: &[Value]) -> Vec<ChangeSet> {
    rows.iter()
        .map(|r| ChangeSet {
            versionstamp: r["versionstamp"]
                .as_u64()
                .or_else(|| r["versionstamp"].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0),
            ids: r["changes"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c.get("update"))
                        .map(|u| match &u["id"] {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// What every node's `SHOW CHANGES` returned, with the writes that made the feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedReport {
    /// The table (defined with `CHANGEFEED`).
    pub table: String,
    /// The writes in the order they were acknowledged: `(node, record id)`.
    pub writes: Vec<(String, String)>,
    /// `(node, feed)` read with `SINCE <versionstamp>` (0: from the start).
    pub by_versionstamp: Vec<(String, Vec<ChangeSet>)>,
    /// `(node, feed)` read with `SINCE d'<datetime before the first write>'`.
    pub by_datetime: Vec<(String, Vec<ChangeSet>)>,
}

impl FeedReport {
    fn ids(feed: &[ChangeSet]) -> Vec<String> {
        feed.iter().flat_map(|c| c.ids.clone()).collect()
    }
    /// True when every node returned the same feed by versionstamp.
    pub fn identical_by_versionstamp(&self) -> bool {
        self.by_versionstamp.windows(2).all(|w| w[0].1 == w[1].1)
    }
    /// True when every node returned the same feed by datetime.
    pub fn identical_by_datetime(&self) -> bool {
        self.by_datetime.windows(2).all(|w| w[0].1 == w[1].1)
    }
    /// True when a feed's versionstamps strictly grow and its records are the writes, in the
    /// order they were acknowledged.
    pub fn in_write_order(&self, feed: &[ChangeSet]) -> bool {
        let grows = feed
            .windows(2)
            .all(|w| w[0].versionstamp < w[1].versionstamp);
        let written: Vec<String> = self.writes.iter().map(|(_, id)| id.clone()).collect();
        grows && Self::ids(feed) == written
    }
    /// Records in node `i`'s feed by versionstamp.
    pub fn len_by_versionstamp(&self, i: usize) -> usize {
        self.by_versionstamp
            .get(i)
            .map(|(_, f)| Self::ids(f).len())
            .unwrap_or(0)
    }
    /// Records in node `i`'s feed by datetime.
    pub fn len_by_datetime(&self, i: usize) -> usize {
        self.by_datetime
            .get(i)
            .map(|(_, f)| Self::ids(f).len())
            .unwrap_or(0)
    }

    /// One row per node and way of asking: node, since, change_sets, records, first_vs,
    /// last_vs, in_write_order.
    pub fn frame(&self) -> Result<DataFrame, LabError> {
        let rows: Vec<(&str, &str, &Vec<ChangeSet>)> = self
            .by_versionstamp
            .iter()
            .map(|(n, f)| (n.as_str(), "versionstamp 0", f))
            .chain(
                self.by_datetime
                    .iter()
                    .map(|(n, f)| (n.as_str(), "datetime before the writes", f)),
            )
            .collect();
        frame(vec![
            Column::new("node".into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()),
            Column::new("since".into(), rows.iter().map(|r| r.1).collect::<Vec<_>>()),
            Column::new(
                "change_sets".into(),
                rows.iter().map(|r| r.2.len() as u64).collect::<Vec<_>>(),
            ),
            Column::new(
                "records".into(),
                rows.iter()
                    .map(|r| Self::ids(r.2).len() as u64)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "first_vs".into(),
                rows.iter()
                    .map(|r| r.2.first().map(|c| c.versionstamp).unwrap_or(0))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "last_vs".into(),
                rows.iter()
                    .map(|r| r.2.last().map(|c| c.versionstamp).unwrap_or(0))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "in_write_order".into(),
                rows.iter()
                    .map(|r| self.in_write_order(r.2))
                    .collect::<Vec<_>>(),
            ),
        ])
    }

    /// The answer in sentences, from this run.
    pub fn explain(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let ordered = self
            .by_versionstamp
            .iter()
            .all(|(_, f)| self.in_write_order(f));
        format!(
            "{} writes alternating between nodes. By versionstamp: identical on every node: {}; \
             lengths {}; in write order: {}. By datetime: identical: {}; lengths {}.",
            self.writes.len(),
            yes(self.identical_by_versionstamp()),
            (0..self.by_versionstamp.len())
                .map(|i| self.len_by_versionstamp(i).to_string())
                .collect::<Vec<_>>()
                .join(" and "),
            yes(ordered),
            yes(self.identical_by_datetime()),
            (0..self.by_datetime.len())
                .map(|i| self.len_by_datetime(i).to_string())
                .collect::<Vec<_>>()
                .join(" and "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_updates_and_checks_order() {
        let rows = vec![
            json!({"versionstamp": 10, "changes": [{"define_table": {"name": "feed"}}]}),
            json!({"versionstamp": 20, "changes": [{"update": {"id": "feed:1", "n": 1}}]}),
            json!({"versionstamp": 30, "changes": [{"update": {"id": "feed:2", "n": 2}}]}),
        ];
        let feed = parse_changes(&rows);
        assert_eq!(feed[1].ids, vec!["feed:1".to_string()]);
        let mut r = FeedReport {
            table: "feed".into(),
            writes: vec![
                ("node-a".into(), "feed:1".into()),
                ("node-b".into(), "feed:2".into()),
            ],
            by_versionstamp: vec![
                ("node-a".into(), feed.clone()),
                ("node-b".into(), feed.clone()),
            ],
            by_datetime: vec![],
        };
        assert!(r.identical_by_versionstamp() && r.in_write_order(&feed));
        // A swapped pair is out of write order; a missing change set makes the feeds differ.
        r.writes.swap(0, 1);
        assert!(!r.in_write_order(&feed));
        r.by_versionstamp[1].1.pop();
        assert!(!r.identical_by_versionstamp());
    }
}
