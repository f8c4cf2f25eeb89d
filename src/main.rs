//! The `replyfix` binary: the command line lives in [`cli`] (one file per
//! subcommand); anyhow lives in the binary only.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
