//! What a query returned: every statement's rows, which node answered and how fast. Plain data
//! (built by `infra::client`, shown by `present::display`), so every layer can hand it on.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::vocab::error::LabError;

/// The result of one statement of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementResult {
    /// The statement's text (whitespace collapsed), as split by the lab for display.
    pub statement: String,
    /// Its rows: the elements of an array result, a single value as one row, nothing for NONE.
    pub rows: Vec<serde_json::Value>,
    /// SurrealDB's own execution time for this statement, in ms, when reported.
    pub server_ms: Option<f64>,
}

/// What `cluster.sql(..)` returns: every statement's rows, plus which node answered and how fast.
///
/// The accessors (`rows`, `first`, `take`) look at the **last** statement, because a notebook
/// query typically sets something up and then selects (`CREATE …; SELECT …`).
/// Record ids appear as text such as `"user:abc123"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    /// The node that served the query.
    pub node: String,
    /// Its port.
    pub port: u16,
    /// The query as sent.
    pub query: String,
    /// One entry per statement.
    pub statements: Vec<StatementResult>,
    /// Client-side round trip in ms.
    pub ms: f64,
}

impl QueryResult {
    /// Rows of the last statement.
    pub fn rows(&self) -> &[serde_json::Value] {
        self.statements
            .last()
            .map(|s| s.rows.as_slice())
            .unwrap_or(&[])
    }

    /// Number of rows of the last statement.
    pub fn row_count(&self) -> usize {
        self.rows().len()
    }

    /// First row of the last statement.
    pub fn first(&self) -> Option<&serde_json::Value> {
        self.rows().first()
    }

    /// The last statement's rows deserialised into `T` (e.g. `entities::User`).
    pub fn take<T: DeserializeOwned>(&self) -> Result<Vec<T>, LabError> {
        self.rows().iter().map(|r| decode(r, &self.node)).collect()
    }

    /// The last statement's first row deserialised into `T`, if there is one.
    pub fn take_one<T: DeserializeOwned>(&self) -> Result<Option<T>, LabError> {
        self.first().map(|r| decode(r, &self.node)).transpose()
    }

    /// The `i`-th statement's result.
    pub fn statement(&self, i: usize) -> Option<&StatementResult> {
        self.statements.get(i)
    }
}

fn decode<T: DeserializeOwned>(row: &serde_json::Value, node: &str) -> Result<T, LabError> {
    serde_json::from_value(row.clone()).map_err(|e| LabError::Decode {
        what: std::any::type_name::<T>().to_string(),
        node: node.to_string(),
        message: e.to_string(),
        row: crate::vocab::oplog::shorten(&row.to_string(), 200),
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[test]
    fn query_result_accessors_use_the_last_statement() {
        let qr = QueryResult {
            node: "node-a".into(),
            port: 8000,
            query: "CREATE …; SELECT …".into(),
            statements: vec![
                StatementResult {
                    statement: "CREATE".into(),
                    rows: vec![serde_json::json!({"x": 0})],
                    server_ms: None,
                },
                StatementResult {
                    statement: "SELECT".into(),
                    rows: vec![serde_json::json!({"name": "Ada", "email": "ada@example.com"})],
                    server_ms: Some(0.1),
                },
            ],
            ms: 1.0,
        };
        assert_eq!(qr.row_count(), 1);
        #[derive(Deserialize)]
        struct U {
            name: String,
        }
        let users: Vec<U> = qr.take().unwrap();
        assert_eq!(users[0].name, "Ada");
        let bad: Result<Vec<u32>, _> = qr.take();
        assert!(bad.unwrap_err().to_string().contains("u32"));
    }
}
