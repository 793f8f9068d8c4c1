//! The `midge` binary, the production daemon of midge: a thin mio event loop that owns the
//! sockets, TLS, files and timers, turns what they report into inputs for midge-core's broker
//! state machine, and carries out the outputs that state machine asks for. All protocol logic
//! lives in midge-core; this crate only performs I/O. The event loop is not built yet: for now
//! the binary prints its version and says so.

use std::ffi::OsString;
use std::process::ExitCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    /// No arguments: start the broker.
    Run,
    /// `-V` or `--version`.
    Version,
    /// `-h` or `--help`.
    Help,
    /// Anything else; carries the first argument that was not understood.
    Unknown(String),
}

/// Parses the arguments that follow the program name.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Command {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Command::Run;
    };
    let command = match first.to_str() {
        Some("-V" | "--version") => Command::Version,
        Some("-h" | "--help") => Command::Help,
        _ => return Command::Unknown(first.to_string_lossy().into_owned()),
    };
    match args.next() {
        None => command,
        Some(extra) => Command::Unknown(extra.to_string_lossy().into_owned()),
    }
}

fn usage() -> String {
    format!(
        "midge {VERSION}, an MQTT 3.1, 3.1.1 and 5.0 broker

Usage: midge [OPTIONS]

Options:
  -h, --help       Print this help and exit
  -V, --version    Print the version and exit

The network daemon is not built yet: run without options, midge prints its version and exits."
    )
}

fn main() -> ExitCode {
    match parse_args(std::env::args_os().skip(1)) {
        Command::Run => {
            println!("midge {VERSION}");
            println!("The network daemon is not built yet; this build only prints its version.");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("midge {VERSION}");
            ExitCode::SUCCESS
        }
        Command::Help => {
            println!("{}", usage());
            ExitCode::SUCCESS
        }
        Command::Unknown(arg) => {
            eprintln!("midge: unrecognized argument '{arg}'");
            eprintln!("Run 'midge --help' for usage.");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn no_arguments_runs_the_broker() {
        assert_eq!(parse(&[]), Command::Run);
    }

    #[test]
    fn version_and_help_flags() {
        assert_eq!(parse(&["--version"]), Command::Version);
        assert_eq!(parse(&["-V"]), Command::Version);
        assert_eq!(parse(&["--help"]), Command::Help);
        assert_eq!(parse(&["-h"]), Command::Help);
    }

    #[test]
    fn anything_else_is_rejected() {
        assert_eq!(parse(&["--verbose"]), Command::Unknown("--verbose".into()));
        assert_eq!(parse(&["-v"]), Command::Unknown("-v".into()));
        assert_eq!(parse(&["--version", "x"]), Command::Unknown("x".into()));
        assert_eq!(parse(&[""]), Command::Unknown(String::new()));
    }
}
