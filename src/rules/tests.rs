use super::*;

#[test]
fn builtin_rules_load_without_errors_or_warnings() {
    let loaded = RuleSet::from_sources(&[(BUILTIN_NAME.to_string(), BUILTIN_YAML.to_string())])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let set = RuleSet::builtin();
    assert!(set.version().starts_with("builtin-"), "{}", set.version());
    assert!(!set.is_empty());
}

#[test]
fn builtin_examples_all_pass() {
    let set = RuleSet::builtin();
    let outcomes = set.run_examples();
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed).collect();
    for f in &failed {
        eprintln!(
            "{}:{}: {}: {}: {}",
            f.file, f.line, f.rule, f.example, f.message
        );
    }
    assert!(failed.is_empty());
    assert!(outcomes.len() >= 30, "{} examples", outcomes.len());
}
