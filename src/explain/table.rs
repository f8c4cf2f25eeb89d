//! The count tables the summaries print (`explain --log`, `explain --dsn
//! DIR`): a title, then one row per key, the largest count first.

use std::fmt;

/// Writes `title`, then `rows` as right-aligned counts and keys, the
/// largest count first (then by key); `(none)` when there is no row.
pub(crate) fn counts<K: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    title: &str,
    rows: impl IntoIterator<Item = (K, u64)>,
) -> fmt::Result {
    let mut rows: Vec<(String, u64)> = rows.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    writeln!(f, "{title}")?;
    if rows.is_empty() {
        writeln!(f, "  (none)")?;
    }
    for (k, v) in rows {
        writeln!(f, "  {v:>10}  {k}")?;
    }
    Ok(())
}
