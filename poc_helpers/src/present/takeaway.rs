//! A notebook's takeaway, printed from the learner's run.
//!
//! A takeaway written as markdown states outcomes ("no errors", "faster", "nothing lost") that
//! were true where it was written; on another machine the run above it can say otherwise. Every
//! bullet that depends on the run is therefore built by the notebook's last cells from that
//! run's reports and shown with [`Takeaway`]; only statements that hold on every machine stay in
//! markdown (and `scripts/check-docs.py` makes sure none of those names an outcome unasserted).

use super::display::{escape, print_html};

/// Bullets computed from a run, shown as a list under "Takeaway (from your run)".
///
/// ```
/// use poc_helpers::present::takeaway::Takeaway;
/// let t = Takeaway::new()
///     .bullet("3 of 3 reads saw the write")
///     .bullet_if(false, "never shown");
/// assert_eq!(t.to_string(), "Takeaway (from your run):\n- 3 of 3 reads saw the write\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Takeaway {
    bullets: Vec<String>,
}

impl Takeaway {
    /// An empty takeaway.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one bullet.
    pub fn bullet(mut self, text: impl Into<String>) -> Self {
        self.bullets.push(text.into());
        self
    }

    /// Adds a bullet only when `when` holds (a sentence that is only true for some runs).
    pub fn bullet_if(self, when: bool, text: impl Into<String>) -> Self {
        if when { self.bullet(text) } else { self }
    }

    /// The bullets, in order.
    pub fn bullets(&self) -> &[String] {
        &self.bullets
    }

    /// Called by evcxr when a `Takeaway` is a cell's last value: a list, like the markdown
    /// takeaways around it.
    pub fn evcxr_display(&self) {
        let items: String = self
            .bullets
            .iter()
            .map(|b| format!("<li>{}</li>", escape(b)))
            .collect();
        print_html(&format!(
            "<p><b>Takeaway (from your run)</b></p><ul>{items}</ul>"
        ));
    }
}

impl std::fmt::Display for Takeaway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Takeaway (from your run):")?;
        for b in &self.bullets {
            writeln!(f, "- {b}")?;
        }
        Ok(())
    }
}
