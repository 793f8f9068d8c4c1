//! Replays every committed input of every target through the target's logic, on stable and
//! without libFuzzer: the seed corpora in `corpus/<target>/` and the inputs that once crashed a
//! target, kept in `regressions/<target>/` (each named after what it found; see README.md).

use std::fs;
use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs each file of `dir/<target>` through the target, naming the file if it panics.
fn replay(dir: &str, must_exist: bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut total = 0;
    for (target, run) in midge_fuzz::TARGETS {
        let files = inputs(&root.join(target));
        if must_exist {
            assert!(!files.is_empty(), "{dir}/{target} has no inputs");
        }
        for file in files {
            let data = fs::read(&file).expect("readable input");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} fails its target", file.display());
            total += 1;
        }
    }
    println!("{dir}: {total} inputs replayed");
}

#[test]
fn every_corpus_input_passes_its_target() {
    replay("corpus", true);
}

#[test]
fn every_crash_input_found_so_far_passes_its_target() {
    replay("regressions", false);
}
