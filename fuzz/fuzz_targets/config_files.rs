//! libFuzzer entry point of the `config_files` target; the logic is [`midge_fuzz::parsers::config_files`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge_fuzz::parsers::config_files(data));
