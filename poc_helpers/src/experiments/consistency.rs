//! The same query on every node, compared: the "do all nodes agree?" check of notebook 03.
//!
//! Over shared storage every node reads the same committed data, so a read-only query must
//! return identical rows on all of them. Over isolated stores they differ — which is the point
//! of the contrast in notebook 02. Rows are compared as JSON values, in the order the query
//! returns them, so a query whose order is not fixed needs an `ORDER BY` to compare fairly.

use serde::{Deserialize, Serialize};

use crate::present::display::{escape, print_html};

/// What each node returned for one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The query that ran on every node.
    pub query: String,
    /// Per node: its name and the rows of the query's last statement.
    pub per_node: Vec<(String, Vec<serde_json::Value>)>,
}

impl Comparison {
    /// True if every node returned the same rows in the same order.
    pub fn identical(&self) -> bool {
        self.per_node.windows(2).all(|w| w[0].1 == w[1].1)
    }

    /// Panics with both results when the nodes disagree: for `assert`-style notebook cells.
    pub fn assert_identical(&self) {
        assert!(
            self.identical(),
            "the nodes disagree on `{}`:\n{:#?}",
            self.query,
            self.per_node
        );
    }

    /// A one-line verdict, e.g. `✔ 2 nodes agree: 3 row(s) for SELECT …`.
    pub fn verdict(&self) -> String {
        let rows = self.per_node.first().map(|(_, r)| r.len()).unwrap_or(0);
        if self.identical() {
            format!(
                "✔ {} nodes agree: {} row(s) for {}",
                self.per_node.len(),
                rows,
                crate::vocab::oplog::shorten(&self.query, 80)
            )
        } else {
            let counts: Vec<String> = self
                .per_node
                .iter()
                .map(|(n, r)| format!("{n}: {} row(s)", r.len()))
                .collect();
            format!(
                "✘ nodes disagree ({}) for {}",
                counts.join(", "),
                crate::vocab::oplog::shorten(&self.query, 80)
            )
        }
    }

    /// The verdict and each node's rows side by side, as HTML for notebooks.
    pub fn to_html(&self) -> String {
        let mut html = format!(
            "<p><b>{}</b></p><table><tr><th>node</th><th>rows</th></tr>",
            escape(&self.verdict())
        );
        for (node, rows) in &self.per_node {
            // Each row on its own line, long results cut so a big table cannot flood the page.
            let cells: Vec<String> = rows
                .iter()
                .map(|r| escape(&crate::vocab::oplog::shorten(&r.to_string(), 300)))
                .collect();
            html.push_str(&format!(
                "<tr><td>{}</td><td style=\"text-align:left\"><code>{}</code></td></tr>",
                escape(node),
                cells.join("<br>")
            ));
        }
        html.push_str("</table>");
        html
    }

    /// Called by evcxr when a `Comparison` is a cell's last expression.
    pub fn evcxr_display(&self) {
        print_html(&self.to_html());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cmp(a: Vec<serde_json::Value>, b: Vec<serde_json::Value>) -> Comparison {
        Comparison {
            query: "SELECT * FROM user ORDER BY name".into(),
            per_node: vec![("node-a".into(), a), ("node-b".into(), b)],
        }
    }

    #[test]
    fn equal_rows_agree_and_different_rows_do_not() {
        let same = cmp(vec![json!({"name": "Ada"})], vec![json!({"name": "Ada"})]);
        assert!(same.identical());
        assert!(same.verdict().starts_with("✔ 2 nodes agree: 1 row(s)"));
        same.assert_identical();
        let differ = cmp(vec![json!({"name": "Ada"})], vec![]);
        assert!(!differ.identical());
        assert!(differ.verdict().contains("node-b: 0 row(s)"));
        assert!(differ.to_html().contains("<table>"));
    }

    #[test]
    #[should_panic(expected = "the nodes disagree")]
    fn assert_identical_panics_with_both_results() {
        cmp(vec![json!(1)], vec![json!(2)]).assert_identical();
    }
}
