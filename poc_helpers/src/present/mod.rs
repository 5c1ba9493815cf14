//! Showing results: charts as SVG ([`charts`], [`gantt`], [`timeline`]) and tables as HTML ([`display`]).
//!
//! Imports only [`crate::vocab`]; chart inputs are plain slices and numbers, so a notebook, a
//! test and `lab bench` draw exactly the same pictures from whatever produced the numbers.

pub mod charts;
pub mod display;
pub mod exercise;
pub mod gantt;
pub mod timeline;
