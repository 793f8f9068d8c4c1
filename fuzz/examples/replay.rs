//! Replays one input through a target on stable, printing what the input means first:
//! `cargo run --no-default-features --example replay -- <target> <file>`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, target, file] = args.as_slice() else {
        eprintln!("usage: replay <target> <file>");
        std::process::exit(2);
    };
    let data = std::fs::read(file).unwrap_or_else(|e| {
        eprintln!("cannot read {file}: {e}");
        std::process::exit(2);
    });
    let Some((_, run)) = midge_fuzz::TARGETS.iter().find(|(name, _)| name == target) else {
        eprintln!("no target {target}");
        std::process::exit(2);
    };
    println!("{}", midge_fuzz::describe(target, &data));
    run(&data);
    println!("{file}: passes {target}");
}
