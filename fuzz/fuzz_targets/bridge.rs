//! libFuzzer entry point of the `bridge` target; the logic is [`midge_fuzz::bridge::run`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge_fuzz::bridge::run(data));
