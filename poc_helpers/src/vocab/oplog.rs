//! The operation log: one record and one printed line per query, naming the node that served it.
//!
//! This is the spec's FR-004 ("clear logging to show which instance is handling each operation").
//! A line looks like
//!
//! ```text
//! [node-b :8001] SELECT * FROM user → 3 rows, 1.2 ms
//! [node-a :8000] CREATE user SET email = 'x' → ERROR Found 'x' for field `email`…, 0.8 ms
//! ```
//!
//! and the same facts are kept as an [`OpRecord`] so `cluster.timings()` can chart them. The text
//! helpers here (statement splitting, shortening, kind) are pure functions, unit-tested below.

use serde::{Deserialize, Serialize};

/// How many characters of a statement a log line shows: one line in a notebook cell.
pub const SHORT_STATEMENT: usize = 60;

/// How many characters of a statement a record keeps (enough to recognise it in a table).
pub const RECORD_STATEMENT: usize = 200;

/// How many characters of an error message a log line shows.
const SHORT_ERROR: usize = 90;

/// One query as the lab saw it from the client side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRecord {
    /// Node that served it, e.g. `node-b`.
    pub node: String,
    /// That node's port.
    pub port: u16,
    /// The first keyword, e.g. `SELECT`, `CREATE`, `DEFINE`, `TRANSACTION` for `BEGIN …`.
    pub kind: String,
    /// The query text, whitespace collapsed, cut at [`RECORD_STATEMENT`] characters.
    pub statement: String,
    /// How many statements the query had.
    pub statements: usize,
    /// When it was sent, in ms since the lab started (same clock as node start/fault events, so
    /// charts of several series line up; a float axis needs no date handling).
    pub started_at_ms: f64,
    /// Round-trip latency measured by the client, in ms (what the spec's "< 100 ms" is about).
    pub ms: f64,
    /// Sum of SurrealDB's own per-statement execution times, in ms, when reported. The gap to
    /// `ms` is network, serialisation and client overhead.
    pub server_ms: Option<f64>,
    /// Rows returned by the last statement (the one whose result notebooks usually look at).
    pub rows: u64,
    /// False if SurrealDB (or the connection) reported an error.
    pub ok: bool,
    /// The error message, when `ok` is false.
    pub error: Option<String>,
}

impl OpRecord {
    /// The one-line log form (see the module docs).
    pub fn line(&self) -> String {
        let head = format!(
            "[{} :{}] {}",
            self.node,
            self.port,
            shorten(&self.statement, SHORT_STATEMENT)
        );
        if self.ok {
            let rows = if self.rows == 1 {
                "1 row".to_string()
            } else {
                format!("{} rows", self.rows)
            };
            let stmts = if self.statements > 1 {
                format!("{} statements, ", self.statements)
            } else {
                String::new()
            };
            format!("{head} → {stmts}{rows}, {:.1} ms", self.ms)
        } else {
            let msg = self.error.as_deref().unwrap_or("unknown error");
            let first = msg.lines().next().unwrap_or("");
            format!(
                "{head} → ERROR {}, {:.1} ms",
                shorten(first, SHORT_ERROR),
                self.ms
            )
        }
    }
}

/// Collapses every run of whitespace (newlines, tabs) to one space and trims the ends.
pub fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Collapses whitespace and cuts to `max` characters, marking the cut with `…`.
pub fn shorten(s: &str, max: usize) -> String {
    let c = collapse_ws(s);
    if c.chars().count() <= max {
        c
    } else {
        let cut: String = c.chars().take(max.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    }
}

/// The kind of a query for grouping in charts: its first keyword, upper-cased.
/// `BEGIN [TRANSACTION] …` counts as `TRANSACTION`; an empty query as `EMPTY`.
pub fn op_kind(query: &str) -> String {
    let first = split_statements(query)
        .into_iter()
        .next()
        .unwrap_or_default();
    let word: String = first
        .trim_start_matches(['(', ' '])
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    match word.as_str() {
        "" => "EMPTY".into(),
        "BEGIN" => "TRANSACTION".into(),
        _ => word,
    }
}

/// Splits SurrealQL text into statements at top-level `;`.
///
/// Only for display (naming the failing statement, classifying the query): SurrealDB parses the
/// real thing. Semicolons inside strings (`'…'`, `"…"`), escaped identifiers (`` `…` ``, `⟨…⟩`),
/// comments (`--`, `//`, `#`, `/* */`) and blocks (`{ … }`, e.g. function bodies) do not split.
pub fn split_statements(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = query.chars().peekable();
    let mut depth = 0i32;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                cur.push(c);
                while let Some(d) = chars.next() {
                    cur.push(d);
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            cur.push(e);
                        }
                    } else if d == c {
                        break;
                    }
                }
            }
            '⟨' => {
                cur.push(c);
                for d in chars.by_ref() {
                    cur.push(d);
                    if d == '⟩' {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '#' => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for d in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
                cur.push(' ');
            }
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth -= 1;
                cur.push(c);
            }
            ';' if depth <= 0 => {
                let s = collapse_ws(&cur);
                if !s.is_empty() {
                    out.push(s);
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    let s = collapse_ws(&cur);
    if !s.is_empty() {
        out.push(s);
    }
    out
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for d in chars.by_ref() {
        if d == '\n' {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortening_collapses_and_cuts() {
        assert_eq!(shorten("SELECT *\n   FROM user", 60), "SELECT * FROM user");
        let long =
            "CREATE user SET name = 'a very long name indeed', email = 'someone@example.com'";
        let s = shorten(long, 30);
        assert_eq!(s.chars().count(), 30);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn kinds() {
        assert_eq!(op_kind("select * from user"), "SELECT");
        assert_eq!(op_kind("  CREATE user:1"), "CREATE");
        assert_eq!(op_kind("-- hi\nUPDATE x SET a = 1"), "UPDATE");
        assert_eq!(
            op_kind("BEGIN TRANSACTION; CREATE a; COMMIT;"),
            "TRANSACTION"
        );
        assert_eq!(op_kind("INFO FOR DB"), "INFO");
        assert_eq!(op_kind("(SELECT 1)"), "SELECT");
        assert_eq!(op_kind("   "), "EMPTY");
    }

    #[test]
    fn splitting_respects_strings_comments_and_blocks() {
        let q = "CREATE a SET t = 'x;y'; -- c;\nSELECT * FROM ⟨we;ird⟩; DEFINE FUNCTION fn::f() { RETURN 1; };";
        let parts = split_statements(q);
        assert_eq!(
            parts,
            vec![
                "CREATE a SET t = 'x;y'".to_string(),
                "SELECT * FROM ⟨we;ird⟩".to_string(),
                "DEFINE FUNCTION fn::f() { RETURN 1; }".to_string(),
            ]
        );
        assert_eq!(split_statements("SELECT 1").len(), 1);
        assert_eq!(split_statements("/* a; b */ SELECT 1;;").len(), 1);
    }

    #[test]
    fn log_lines() {
        let mut r = OpRecord {
            node: "node-b".into(),
            port: 8001,
            kind: "SELECT".into(),
            statement: "SELECT * FROM user".into(),
            statements: 1,
            started_at_ms: 5.0,
            ms: 1.234,
            server_ms: None,
            rows: 3,
            ok: true,
            error: None,
        };
        assert_eq!(
            r.line(),
            "[node-b :8001] SELECT * FROM user → 3 rows, 1.2 ms"
        );
        r.rows = 1;
        r.statements = 2;
        assert_eq!(
            r.line(),
            "[node-b :8001] SELECT * FROM user → 2 statements, 1 row, 1.2 ms"
        );
        r.ok = false;
        r.error = Some("Parse error: unexpected token\n  --> [1:8]".into());
        r.ms = 0.8;
        assert_eq!(
            r.line(),
            "[node-b :8001] SELECT * FROM user → ERROR Parse error: unexpected token, 0.8 ms"
        );
    }
}
