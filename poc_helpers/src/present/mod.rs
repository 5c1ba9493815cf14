//! Showing results: charts as SVG ([`charts`], [`gantt`], [`timeline`], [`placement_chart`]),
//! tables as HTML
//! ([`display`]) and takeaways computed from a run ([`takeaway`]).
//!
//! Imports only [`crate::vocab`]; chart inputs are plain slices and numbers, so a notebook, a
//! test and `lab bench` draw exactly the same pictures from whatever produced the numbers.

pub mod charts;
pub mod display;
pub mod exercise;
pub mod gantt;
pub mod placement_chart;
pub mod takeaway;
pub mod timeline;
