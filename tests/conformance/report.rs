//! The outcome of every spec of one suite run, printed as a table.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Pull,
    Push,
    ContentDiscovery,
    ContentManagement,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Pull,
        Category::Push,
        Category::ContentDiscovery,
        Category::ContentManagement,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Category::Pull => "Pull",
            Category::Push => "Push",
            Category::ContentDiscovery => "Content Discovery",
            Category::ContentManagement => "Content Management",
        }
    }
}

/// What a spec body concluded; an `Err(String)` from a body is a failure.
#[derive(Clone, Debug)]
pub enum Status {
    Pass,
    /// `Warn(...)` in the Go suite: the spec passes, with a note.
    Warn(String),
    /// `RunOnlyIf`/`RunOnlyIfNot` skipped it.
    Skip(String),
    Fail(String),
}

#[derive(Clone, Debug)]
pub struct SpecResult {
    pub category: Category,
    pub context: &'static str,
    pub name: &'static str,
    pub status: Status,
}

#[derive(Default, Debug)]
pub struct Report {
    pub target: String,
    pub specs: Vec<SpecResult>,
}

impl Report {
    pub fn failures(&self) -> Vec<&SpecResult> {
        self.specs
            .iter()
            .filter(|s| matches!(s.status, Status::Fail(_)))
            .collect()
    }
    /// (passed incl. warnings, failed, skipped) for one category.
    pub fn counts(&self, c: Category) -> (usize, usize, usize) {
        let mut n = (0, 0, 0);
        for s in self.specs.iter().filter(|s| s.category == c) {
            match s.status {
                Status::Pass | Status::Warn(_) => n.0 += 1,
                Status::Fail(_) => n.1 += 1,
                Status::Skip(_) => n.2 += 1,
            }
        }
        n
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "OCI distribution-spec v1.1.1 conformance — {}",
            self.target
        )?;
        let w = self
            .specs
            .iter()
            .map(|s| s.context.len() + s.name.len() + 3)
            .max()
            .unwrap_or(10);
        writeln!(f, "{:<w$}  {:<18}  result", "spec", "category")?;
        writeln!(f, "{}", "-".repeat(w + 30))?;
        for s in &self.specs {
            let (r, note) = match &s.status {
                Status::Pass => ("PASS", String::new()),
                Status::Warn(m) => ("PASS", format!(" (warning: {m})")),
                Status::Skip(m) => ("skip", format!(" ({m})")),
                Status::Fail(m) => ("FAIL", format!("\n      └─ {m}")),
            };
            let spec = format!("{} › {}", s.context, s.name);
            writeln!(f, "{spec:<w$}  {:<18}  {r}{note}", s.category.title())?;
        }
        writeln!(f, "{}", "-".repeat(w + 30))?;
        for c in Category::ALL {
            let (p, fl, sk) = self.counts(c);
            writeln!(
                f,
                "{:<18}  {p:>2} passed  {fl:>2} failed  {sk:>2} skipped",
                c.title()
            )?;
        }
        let total = self.specs.len();
        writeln!(
            f,
            "total registered specs: {total}, failures: {}",
            self.failures().len()
        )
    }
}
