//! "Try it yourself" checks: the verdict a notebook's check cell shows after the learner's edit.
//!
//! An exercise is two cells: one the learner edits (it runs unedited too, with a placeholder, so
//! a notebook executed top to bottom never fails on it), and a check cell whose last value is a
//! [`Check`]. The check says *why*: what was verified when solved, and the next step when not.
//! `scripts/run-notebooks.py` runs the reference solution (`notebooks/solutions/<id>.rs`) after
//! the notebook's own run and requires the check to print [`SOLVED`], so every exercise is known
//! to be solvable.

use crate::present::display::{escape, print_html};

/// The marker a solved check prints first (the test runner looks for it).
pub const SOLVED: &str = "✅ Solved";
/// The marker an unsolved check prints first.
pub const NOT_YET: &str = "✏️ Not yet";

/// The outcome of an exercise's check cell: solved or not, and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Whether the learner's edit does what the exercise asks.
    pub solved: bool,
    /// When solved, what the check verified; when not, what to do next.
    pub why: String,
}

/// `check(cond, when_solved, hint)`: a [`Check`] that explains itself either way.
///
/// ```
/// use poc_helpers::present::exercise::check;
/// let rows_on_c = 1;
/// let c = check(rows_on_c == 1, "node-c read the note node-a wrote", "read note:1 on node \"c\"");
/// assert!(c.solved);
/// assert!(c.to_string().starts_with("✅ Solved"));
/// ```
pub fn check(solved: bool, when_solved: impl Into<String>, hint: impl Into<String>) -> Check {
    Check {
        solved,
        why: if solved {
            when_solved.into()
        } else {
            hint.into()
        },
    }
}

impl Check {
    /// Called by evcxr when a `Check` is a cell's last value: one coloured line.
    pub fn evcxr_display(&self) {
        let colour = if self.solved { "#1a7f37" } else { "#9a6700" };
        print_html(&format!(
            "<p style=\"font-weight:bold;color:{colour}\">{}</p>",
            escape(&self.to_string())
        ));
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let marker = if self.solved { SOLVED } else { NOT_YET };
        write!(f, "{marker}: {}", self.why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsolved_check_gives_the_hint_not_the_success_message() {
        let c = check(false, "done", "add a node first");
        assert_eq!(c.to_string(), "✏️ Not yet: add a node first");
        assert!(!c.to_string().contains(SOLVED));
    }

    #[test]
    fn a_solved_check_starts_with_the_marker_the_runner_looks_for() {
        assert_eq!(
            check(true, "node-c served it", "x").to_string(),
            "✅ Solved: node-c served it"
        );
    }
}
