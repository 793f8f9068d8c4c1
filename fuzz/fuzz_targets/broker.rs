//! libFuzzer entry point of the `broker` target; the logic is [`midge_fuzz::broker::run`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge_fuzz::broker::run(data));
