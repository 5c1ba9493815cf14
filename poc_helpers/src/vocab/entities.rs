//! The spec's entities — `User` (name, email) and `Post` (title, content, author → a user) — as
//! serde types and their schema (`cluster.create_user(..)` and friends are in the facade).
//!
//! Record ids and record links come back from the lab as text such as `"user:8a1kz…"` (the SDK's
//! JSON form of a record id), so plain `String` fields hold them and the types work with
//! `serde_json` in notebooks without the SDK's own value traits. Sending a link back uses
//! `type::record($author)` to turn the text into a real record id again.

use serde::{Deserialize, Serialize};

use crate::vocab::error::LabError;

/// `schema/entities.surql`, compiled in so the lab works from any working directory.
pub const SCHEMA: &str = include_str!("../../schema/entities.surql");

/// A user (spec entity *User*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Record id such as `user:8a1kz…`; `None` before the record exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name.
    pub name: String,
    /// Email address; unique across users (index `user_email`).
    pub email: String,
}

/// A post (spec entity *Post*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    /// Record id such as `post:3kd9…`; `None` before the record exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Title.
    pub title: String,
    /// Body text.
    pub content: String,
    /// Record link to the author, e.g. `user:8a1kz…`.
    pub author: String,
}

pub(crate) fn no_row(node: &str, what: &str) -> LabError {
    LabError::Decode {
        what: what.to_string(),
        node: node.to_string(),
        message: "the statement returned no row".into(),
        row: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_round_trip_through_json_rows() {
        let row = serde_json::json!({"id": "user:ada", "name": "Ada", "email": "ada@example.com"});
        let u: User = serde_json::from_value(row).unwrap();
        assert_eq!(u.id.as_deref(), Some("user:ada"));
        let new = User {
            id: None,
            name: "Bob".into(),
            email: "bob@example.com".into(),
        };
        assert!(!serde_json::to_string(&new).unwrap().contains("\"id\""));
    }

    #[test]
    fn schema_is_idempotent_and_complete() {
        for stmt in crate::vocab::oplog::split_statements(SCHEMA) {
            assert!(stmt.contains("IF NOT EXISTS"), "not idempotent: {stmt}");
        }
        assert!(SCHEMA.contains("DEFINE TABLE IF NOT EXISTS user SCHEMAFULL"));
        assert!(SCHEMA.contains("UNIQUE"));
        assert!(SCHEMA.contains("TYPE record<user>"));
    }
}
