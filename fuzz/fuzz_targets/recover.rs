//! libFuzzer entry point of the `recover` target; the logic is [`midge_fuzz::persist::recover`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge_fuzz::persist::recover(data));
