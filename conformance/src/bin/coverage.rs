//! Writes conformance/COVERAGE.md from statements.tsv, mosquitto.tsv and the tests' names, and
//! reports any inconsistency between them (which the crate's tests also fail on).

use midge_conformance::coverage::{Inputs, crate_dir, render};
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = crate_dir();
    let inputs = match Inputs::load(&dir) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("coverage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = dir.join("COVERAGE.md");
    if let Err(e) = std::fs::write(&path, render(&inputs)) {
        eprintln!("coverage: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", path.display());
    let problems = inputs.problems();
    for p in &problems {
        eprintln!("coverage: {p}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
