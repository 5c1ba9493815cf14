//! Building the lab's tables. Every table the lab hands out is a polars `DataFrame` built from
//! equal-length columns by [`frame`], and every function or method that builds one is named
//! `<what>_frame` and returns `Result<DataFrame, LabError>`: one name pattern, one error type.
//! Columns use only basic dtypes (string, integers, f64, bool), so polars stays at its minimal
//! feature set.

use polars::prelude::{Column, DataFrame};

use crate::vocab::error::LabError;

/// A DataFrame from columns of equal length (the height is the first column's).
pub fn frame(columns: Vec<Column>) -> Result<DataFrame, LabError> {
    let height = columns.first().map(|c| c.len()).unwrap_or(0);
    DataFrame::new(height, columns).map_err(LabError::from)
}
