//! Rendering for notebooks: DataFrames and query rows as HTML tables.
//!
//! evcxr shows a cell's last value as HTML when the value's type has a method
//! `pub fn evcxr_display(&self)` that prints
//!
//! ```text
//! EVCXR_BEGIN_CONTENT text/html
//! <table>…</table>
//! EVCXR_END_CONTENT
//! ```
//!
//! polars has only a text table, so [`Table`] wraps a DataFrame to add that method:
//! `cluster.status()?.show()` (via [`ShowExt`]) renders as HTML, while the DataFrame itself stays
//! available for computing and charting.

use polars::prelude::{AnyValue, DataFrame};

use crate::vocab::error::LabError;
use crate::vocab::query::QueryResult;

/// Rows shown before the table is cut, so a 10,000-row timings frame does not flood the notebook.
pub const MAX_HTML_ROWS: usize = 50;

/// A DataFrame that renders as an HTML table in evcxr (and as polars' text table elsewhere).
#[derive(Debug, Clone)]
pub struct Table(pub DataFrame);

impl Table {
    /// The HTML table for this frame.
    pub fn to_html(&self) -> String {
        frame_html(&self.0)
    }

    /// Called by evcxr when a `Table` is a cell's last expression.
    pub fn evcxr_display(&self) {
        print_html(&self.to_html());
    }

    /// The wrapped frame.
    pub fn into_inner(self) -> DataFrame {
        self.0
    }
}

impl std::ops::Deref for Table {
    type Target = DataFrame;
    fn deref(&self) -> &DataFrame {
        &self.0
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

/// `df.show()` → a [`Table`] that renders as HTML in notebooks; `df.texts("node")` → a column's
/// values as owned strings, for `assert!`s in notebook cells.
pub trait ShowExt {
    /// Wraps (a cheap clone of) the frame for HTML display.
    fn show(&self) -> Table;

    /// The values of `column` as text (nulls as empty strings). Owned values, because an evcxr
    /// cell cannot keep a borrowed polars column in a variable, and iterating a typed column
    /// needs polars features a notebook would have to `:dep` itself. Panics naming the existing
    /// columns when there is no such column.
    fn texts(&self, column: &str) -> Vec<String>;
}

impl ShowExt for DataFrame {
    fn show(&self) -> Table {
        // Cloning a DataFrame clones reference-counted column buffers, not the data.
        Table(self.clone())
    }

    fn texts(&self, column: &str) -> Vec<String> {
        let c = self.column(column).unwrap_or_else(|_| {
            panic!(
                "no column `{column}`; the columns are {:?}",
                self.get_column_names()
            )
        });
        (0..c.len())
            .map(|i| c.get(i).map(|v| cell_text(&v)).unwrap_or_default())
            .collect()
    }
}

/// Prints an HTML block in evcxr's rich-output format.
pub fn print_html(html: &str) {
    println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT");
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A DataFrame as an HTML `<table>`, at most [`MAX_HTML_ROWS`] rows, nulls as empty cells.
pub fn frame_html(df: &DataFrame) -> String {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let columns = df.columns();
    let shown = df.height().min(MAX_HTML_ROWS);
    let rows: Vec<Vec<String>> = (0..shown)
        .map(|i| {
            columns
                .iter()
                .map(|c| c.get(i).map(|v| cell_text(&v)).unwrap_or_default())
                .collect()
        })
        .collect();
    let note = (df.height() > shown).then(|| format!("… {} more rows", df.height() - shown));
    html_table(&names, &rows, note.as_deref(), None)
}

/// A table, or the error that prevented it, as HTML (for `evcxr_display` of reports).
pub fn result_html(df: &Result<DataFrame, LabError>) -> String {
    match df {
        Ok(df) => frame_html(df),
        Err(e) => format!("<pre>{}</pre>", escape(&e.to_string())),
    }
}

/// Query rows (JSON objects) as an HTML table: one column per key, in first-seen order; nested
/// values as compact JSON.
pub fn json_rows_html(rows: &[serde_json::Value], caption: &str) -> String {
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        match row {
            serde_json::Value::Object(map) => {
                for k in map.keys() {
                    if !names.contains(k) {
                        names.push(k.clone());
                    }
                }
            }
            _ => {
                if !names.iter().any(|n| n == "value") {
                    names.push("value".into());
                }
            }
        }
    }
    // Put `id` first: it is what a learner looks for.
    if let Some(pos) = names.iter().position(|n| n == "id") {
        let id = names.remove(pos);
        names.insert(0, id);
    }
    let shown = rows.len().min(MAX_HTML_ROWS);
    let cells: Vec<Vec<String>> = rows[..shown]
        .iter()
        .map(|row| {
            names
                .iter()
                .map(|n| match row {
                    serde_json::Value::Object(map) => map.get(n).map(json_text).unwrap_or_default(),
                    other if n == "value" => json_text(other),
                    _ => String::new(),
                })
                .collect()
        })
        .collect();
    let note = (rows.len() > shown).then(|| format!("… {} more rows", rows.len() - shown));
    html_table(&names, &cells, note.as_deref(), Some(caption))
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Text of one DataFrame cell: strings unquoted, nulls empty, floats with at most 3 decimals.
fn cell_text(v: &AnyValue<'_>) -> String {
    match v {
        AnyValue::Null => String::new(),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        AnyValue::Float64(x) => trim_float(*x),
        AnyValue::Float32(x) => trim_float(*x as f64),
        other => other.to_string(),
    }
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" || s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The shared table markup: a compact, left-aligned table that reads well in JupyterLab's themes.
fn html_table(
    names: &[String],
    rows: &[Vec<String>],
    note: Option<&str>,
    caption: Option<&str>,
) -> String {
    let mut html = String::from(
        "<table style=\"border-collapse:collapse;font-family:monospace;font-size:12px\">",
    );
    if let Some(c) = caption {
        html.push_str(&format!(
            "<caption style=\"text-align:left\">{}</caption>",
            escape(c)
        ));
    }
    html.push_str("<thead><tr>");
    for n in names {
        html.push_str(&format!(
            "<th style=\"text-align:left;padding:2px 8px;border-bottom:1px solid #888\">{}</th>",
            escape(n)
        ));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            html.push_str(&format!(
                "<td style=\"text-align:left;padding:2px 8px\">{}</td>",
                escape(cell)
            ));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    if let Some(n) = note {
        html.push_str(&format!(
            "<div style=\"font-size:11px\">{}</div>",
            escape(n)
        ));
    }
    html
}

/// A query's result renders here, where the HTML lives (`QueryResult` itself is plain data in
/// the vocabulary).
impl QueryResult {
    /// Renders the last statement's rows as an HTML table when this is a notebook cell's value.
    pub fn evcxr_display(&self) {
        let caption = format!(
            "{} :{} — {} row(s), {:.1} ms",
            self.node,
            self.port,
            self.row_count(),
            self.ms
        );
        print_html(&json_rows_html(self.rows(), &caption));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::Column;

    #[test]
    fn texts_reads_a_column_as_strings() {
        let df = DataFrame::new(
            2,
            vec![
                Column::new("node".into(), vec!["node-a", "node-b"]),
                Column::new("ms".into(), vec![Some(1.5f64), None]),
            ],
        )
        .unwrap();
        assert_eq!(df.texts("node"), ["node-a", "node-b"]);
        assert_eq!(df.texts("ms"), ["1.5", ""]);
        let missing = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| df.texts("nope")))
            .unwrap_err();
        let msg = missing.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("no column `nope`") && msg.contains("node"),
            "{msg}"
        );
    }

    #[test]
    fn frame_to_html() {
        let df = DataFrame::new(
            2,
            vec![
                Column::new("node".into(), vec!["node-a", "<b>"]),
                Column::new("ms".into(), vec![Some(1.25f64), None]),
            ],
        )
        .unwrap();
        let html = frame_html(&df);
        assert!(html.starts_with("<table"));
        assert!(html.contains(
            "<th style=\"text-align:left;padding:2px 8px;border-bottom:1px solid #888\">node</th>"
        ));
        assert!(html.contains(">node-a</td>"));
        assert!(html.contains("&lt;b&gt;"), "escaped: {html}");
        assert!(html.contains(">1.25</td>"));
        assert!(
            html.contains("<td style=\"text-align:left;padding:2px 8px\"></td>"),
            "null cell is empty"
        );
        assert_eq!(html.matches("<tr>").count(), 3);
    }

    #[test]
    fn long_frames_are_cut() {
        let n = MAX_HTML_ROWS + 5;
        let df = DataFrame::new(
            n,
            vec![Column::new("i".into(), (0..n as u32).collect::<Vec<_>>())],
        )
        .unwrap();
        let html = frame_html(&df);
        assert!(html.contains("… 5 more rows"));
    }

    #[test]
    fn json_rows_put_id_first_and_render_nested_values() {
        let rows = vec![
            serde_json::json!({"name": "Ada", "id": "user:ada", "tags": ["x"]}),
            serde_json::json!({"name": "Bob", "id": "user:bob"}),
        ];
        let html = json_rows_html(&rows, "node-a");
        let id_pos = html.find(">id</th>").unwrap();
        let name_pos = html.find(">name</th>").unwrap();
        assert!(id_pos < name_pos);
        assert!(html.contains("[&quot;x&quot;]"));
        assert!(html.contains("<caption"));
    }

    #[test]
    fn floats_are_trimmed() {
        assert_eq!(trim_float(1.0), "1");
        assert_eq!(trim_float(0.1234), "0.123");
        assert_eq!(trim_float(-0.0001), "0");
    }
}
