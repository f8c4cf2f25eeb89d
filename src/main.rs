//! The `replyfix` command line.
fn main() {}
