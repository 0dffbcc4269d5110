//! The `portcullis` command: evaluate, inspect, and (in later commands) replay, test and
//! serve policies. Errors are reported here, at the edge, with their whole cause chain.

mod cli;
mod cmd;
mod output;
mod replay;
mod setup;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Eval(args) => cmd::eval::run(&args),
        cli::Command::Inspect(args) => cmd::inspect::run(&args),
        cli::Command::Replay(args) => cmd::replay::run(&args),
        cli::Command::Test(args) => cmd::test::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
