//! Rendering a [`Comparison`]: the human table (per namespace, then totals), one JSON document,
//! and the Markdown report file. Only differences are listed unless `show_ok`.

use std::fmt::Write as _;

use super::compare::{Comparison, Item, Status, Totals};

/// Context printed in the headers.
pub struct Header<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    pub seconds: f64,
}

fn listed(c: &Comparison, show_ok: bool) -> impl Iterator<Item = &Item> {
    c.items
        .iter()
        .filter(move |i| show_ok || i.status != Status::Ok)
}

fn short(d: &Option<String>) -> String {
    match d {
        Some(d) => {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            hex[..hex.len().min(12)].to_string()
        }
        None => "-".into(),
    }
}

fn totals_line(t: &Totals) -> String {
    format!(
        "{} ok, {} missing, {} different, {} platform-converted, {} extra",
        t.ok, t.missing, t.different, t.platform_converted, t.extra
    )
}

fn verdict(c: &Comparison) -> String {
    if c.complete() {
        "COMPLETE: every source item is at the destination with the same digest".into()
    } else {
        format!(
            "INCOMPLETE: {} missing, {} different",
            c.totals.missing, c.totals.different
        )
    }
}

/// The human table.
pub fn table(c: &Comparison, h: &Header, show_ok: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "source:      {}", h.source);
    let _ = writeln!(out, "destination: {}", h.destination);
    for (ns, t) in &c.namespaces {
        let _ = writeln!(out, "\nnamespace {ns}: {}", totals_line(t));
        let rows: Vec<&Item> = listed(c, show_ok).filter(|i| &i.namespace == ns).collect();
        if rows.is_empty() {
            continue;
        }
        let w = rows
            .iter()
            .map(|i| i.repository.len() + i.tag.len() + 1)
            .max()
            .unwrap_or(0)
            .max(10);
        let _ = writeln!(
            out,
            "  {:<18} {:<6} {:<w$} {:<12} {:<12}",
            "STATUS", "KIND", "ITEM", "SOURCE", "DESTINATION"
        );
        for i in rows {
            let name = format!("{}:{}", i.repository, i.tag);
            let _ = write!(
                out,
                "  {:<18} {:<6} {:<w$} {:<12} {:<12}",
                i.status.as_str(),
                kind(i),
                name,
                short(&i.source_digest),
                short(&i.destination_digest)
            );
            if i.destination != i.repository {
                let _ = write!(out, " → {}", i.destination);
            }
            if let Some(n) = &i.note {
                let _ = write!(out, " ({n})");
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "\ntotal: {}", totals_line(&c.totals));
    let _ = writeln!(out, "{} ({:.1} s)", verdict(c), h.seconds);
    out
}

fn kind(i: &Item) -> &'static str {
    match i.kind {
        super::compare::Kind::Image => "image",
        super::compare::Kind::Chart => "chart",
    }
}

/// One JSON document: `{source, destination, complete, totals, namespaces, items}`.
pub fn json(c: &Comparison, h: &Header, show_ok: bool) -> String {
    let items: Vec<&Item> = listed(c, show_ok).collect();
    let v = serde_json::json!({
        "source": h.source,
        "destination": h.destination,
        "complete": c.complete(),
        "seconds": h.seconds,
        "totals": c.totals,
        "namespaces": c.namespaces,
        "items": items,
    });
    serde_json::to_string_pretty(&v).expect("serializable") + "\n"
}

/// The Markdown report.
pub fn markdown(c: &Comparison, h: &Header, show_ok: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Migration verification\n");
    let _ = writeln!(out, "- Source: `{}`", h.source);
    let _ = writeln!(out, "- Destination: `{}`", h.destination);
    let _ = writeln!(
        out,
        "- Generated: {} ({:.1} s)",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        h.seconds
    );
    let _ = writeln!(out, "- **{}**\n", verdict(c));
    let _ = writeln!(out, "## Totals\n");
    let _ = writeln!(
        out,
        "| Namespace | ok | missing | different | platform-converted | extra |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for (ns, t) in c
        .namespaces
        .iter()
        .chain([(&"**total**".to_string(), &c.totals)])
    {
        let _ = writeln!(
            out,
            "| {ns} | {} | {} | {} | {} | {} |",
            t.ok, t.missing, t.different, t.platform_converted, t.extra
        );
    }
    let rows: Vec<&Item> = listed(c, show_ok).collect();
    if !rows.is_empty() {
        let _ = writeln!(out, "\n## Items\n");
        let _ = writeln!(
            out,
            "| Status | Kind | Source | Destination | Source digest | Destination digest | Note |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for i in rows {
            let d = |x: &Option<String>| x.clone().map_or("-".into(), |d| format!("`{d}`"));
            let _ = writeln!(
                out,
                "| {} | {} | `{}:{}` | `{}:{}` | {} | {} | {} |",
                i.status.as_str(),
                kind(i),
                i.repository,
                i.tag,
                i.destination,
                i.tag,
                d(&i.source_digest),
                d(&i.destination_digest),
                i.note.as_deref().unwrap_or("")
            );
        }
    }
    out
}
