use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    hubreview::run::main(hubreview::cli::Cli::parse())
}
