//! The tenantry binary: parses the command line, loads the configuration, wires the control plane, runs one
//! command, and reports errors as a stable code and a one-line message on stderr with a non-zero exit.

mod app;
mod cli;
mod commands;
mod config;
mod output;

use clap::Parser;
use std::process::ExitCode;
use tenantry_core::{Error as CodedError, ErrorCode};

/// How a command failed: with a stable code, or in a way only the binary sees (IO, serialization), which is
/// reported as `E_INTERNAL` unless classified where it happens (`Failure::bad_input`).
#[derive(Debug)]
pub enum Failure {
    Coded(CodedError),
    Other(anyhow::Error),
}

impl From<CodedError> for Failure {
    fn from(error: CodedError) -> Self {
        Failure::Coded(error)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Other(error)
    }
}

impl Failure {
    /// An error in what the operator gave (the configuration file, a variable): `E_INVALID_INPUT`, said so where
    /// it happens, because any error not classified is `E_INTERNAL`.
    pub fn bad_input(error: anyhow::Error) -> Failure {
        Failure::Coded(CodedError::invalid_input(format!("{error:#}")))
    }

    /// The code and message to print. An error nobody classified is unexpected: `E_INTERNAL`, never bad input
    /// (which would send the operator to correct input that was fine).
    fn into_coded(self) -> CodedError {
        match self {
            Failure::Coded(error) => error,
            Failure::Other(error) => CodedError::new(ErrorCode::Internal, format!("{error:#}")),
        }
    }
}

pub type CommandResult = Result<ExitCode, Failure>;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a log file or a journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(failure) => {
            let error = failure.into_coded();
            let message = error.message.replace('\n', " ");
            eprintln!("error: {}: {message}", error.code);
            if json {
                let body = serde_json::json!({ "error_code": error.code, "message": message });
                println!("{body}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unclassified_error_is_internal_and_bad_input_stays_bad_input() {
        let unexpected = Failure::from(anyhow::anyhow!("disk full")).into_coded();
        assert_eq!(unexpected.code, ErrorCode::Internal);
        assert_eq!(unexpected.message, "disk full");
        let bad_config =
            Failure::bad_input(anyhow::anyhow!("the lease TTL must be at least one second"));
        assert_eq!(bad_config.into_coded().code, ErrorCode::InvalidInput);
        let coded = Failure::from(CodedError::new(ErrorCode::NoCapacity, "full")).into_coded();
        assert_eq!(coded.code, ErrorCode::NoCapacity);
    }
}
