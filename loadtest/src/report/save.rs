//! A report on disk: the JSON, and the HTML page beside it.

use std::path::{Path, PathBuf};

use crate::report::html;
use crate::report::model::Report;

/// Writes the JSON to `path` and the HTML report beside it (same name,
/// `.html`). Returns the HTML's path.
pub fn write(report: &Report, path: &Path) -> Result<PathBuf, String> {
    let mut json = serde_json::to_string_pretty(report)
        .map_err(|e| format!("cannot serialize report: {e}"))?;
    json.push('\n');
    std::fs::write(path, json).map_err(|e| format!("write {}: {e}", path.display()))?;
    let html_path = path.with_extension("html");
    std::fs::write(&html_path, html::render(report))
        .map_err(|e| format!("write {}: {e}", html_path.display()))?;
    Ok(html_path)
}
