//! The spec's entities — `User` (name, email) and `Post` (title, content, author → a user) — as
//! serde types, their schema, and small helpers to create and list them on a chosen node.
//!
//! Record ids and record links come back from the lab as text such as `"user:8a1kz…"` (the SDK's
//! JSON form of a record id), so plain `String` fields hold them and the types work with
//! `serde_json` in notebooks without the SDK's own value traits. Sending a link back uses
//! `type::record($author)` to turn the text into a real record id again.

use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::error::LabError;
use crate::runtime::NodeRef;

/// `schema/entities.surql`, compiled in so the lab works from any working directory.
pub const SCHEMA: &str = include_str!("../schema/entities.surql");

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

impl Cluster {
    /// Creates a user on `node` and returns it with its new id.
    pub fn create_user(
        &self,
        node: impl Into<NodeRef>,
        name: &str,
        email: &str,
    ) -> Result<User, LabError> {
        let r = self.sql_bind(
            node,
            "CREATE user CONTENT { name: $name, email: $email }",
            serde_json::json!({ "name": name, "email": email }),
        )?;
        r.take_one()?.ok_or_else(|| no_row(&r.node, "CREATE user"))
    }

    /// Creates a post by `author` (a user id such as `user:abc`) on `node`.
    pub fn create_post(
        &self,
        node: impl Into<NodeRef>,
        title: &str,
        content: &str,
        author: &str,
    ) -> Result<Post, LabError> {
        let r = self.sql_bind(
            node,
            "CREATE post CONTENT { title: $title, content: $content, author: type::record($author) }",
            serde_json::json!({ "title": title, "content": content, "author": author }),
        )?;
        r.take_one()?.ok_or_else(|| no_row(&r.node, "CREATE post"))
    }

    /// All users as seen by `node`, ordered by name.
    pub fn users(&self, node: impl Into<NodeRef>) -> Result<Vec<User>, LabError> {
        self.sql(node, "SELECT * FROM user ORDER BY name")?.take()
    }

    /// All posts as seen by `node`, ordered by title.
    pub fn posts(&self, node: impl Into<NodeRef>) -> Result<Vec<Post>, LabError> {
        self.sql(node, "SELECT * FROM post ORDER BY title")?.take()
    }
}

fn no_row(node: &str, what: &str) -> LabError {
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
        for stmt in crate::oplog::split_statements(SCHEMA) {
            assert!(stmt.contains("IF NOT EXISTS"), "not idempotent: {stmt}");
        }
        assert!(SCHEMA.contains("DEFINE TABLE IF NOT EXISTS user SCHEMAFULL"));
        assert!(SCHEMA.contains("UNIQUE"));
        assert!(SCHEMA.contains("TYPE record<user>"));
    }
}
