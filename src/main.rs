//! The `portcullis` command: evaluate, inspect, replay, test and serve policies, and
//! settle approvals. Errors are reported here, at the edge, with their whole cause chain.

mod cli;
mod cmd;
mod output;
mod replay;
mod serve;
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
        // Colour only on a terminal: logs written to files and CI stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Eval(args) => cmd::eval::run(&args),
        cli::Command::Inspect(args) => cmd::inspect::run(&args),
        cli::Command::Replay(args) => cmd::replay::run(&args),
        cli::Command::Test(args) => cmd::test::run(&args),
        cli::Command::Serve(args) => cmd::serve::run(&args),
        cli::Command::Check(args) => cmd::check::run(&args),
        cli::Command::Approvals(args) => cmd::approvals::run(&args),
        cli::Command::New(args) => cmd::new::run(&args),
        cli::Command::Build(args) => cmd::build::run(&args),
        cli::Command::Bench(args) => cmd::bench::run(&args),
        cli::Command::Mcp(args) => cmd::mcp::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, `a: b: c`, each said once: library errors often
/// print their source inside their own message too (`config x: policy y: setting z ...`),
/// and anyhow's `{:#}` would then repeat it.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}
