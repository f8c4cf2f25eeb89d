//! `replyfix test-rules`: every rule's `examples:`, a line per failure and
//! a count.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::load_rules;

pub(super) fn test_rules(files: Vec<PathBuf>) -> Result<ExitCode> {
    let rules = load_rules(&files)?;
    let outcomes = rules.run_examples();
    let mut passed = 0;
    let mut failed = 0;
    for o in &outcomes {
        if o.passed {
            passed += 1;
        } else {
            failed += 1;
            out!(
                "FAIL {}:{}: rule '{}': {}\n     {}",
                o.file,
                o.line,
                o.rule,
                o.example,
                o.message
            );
        }
    }
    out!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
