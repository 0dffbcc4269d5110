//! `portcullis serve`: run the configured front doors.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::ServeArgs;

/// Serves until SIGINT or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    crate::serve::run(&args.config, args.ready_file.as_deref())?;
    Ok(ExitCode::SUCCESS)
}
