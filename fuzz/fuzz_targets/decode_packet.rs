//! libFuzzer entry point of the `decode_packet` target; the logic is [`midge_fuzz::codec::decode_packet`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| midge_fuzz::codec::decode_packet(data));
