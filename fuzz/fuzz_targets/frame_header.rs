//! Fuzzes the §5.2 frame header decoder, `FrameHeader::decode`, for both roles.
//!
//! Properties checked on every input:
//! - it never panics;
//! - `Partial` only for fewer than `MAX_HEADER_LEN` bytes (§5.2's longest header);
//! - a `Complete` header re-encodes to exactly the bytes it was read from, and
//!   `consumed == encoded_len()`: the decoder accepts only the minimal length encoding
//!   (§5.2 "the minimal number of bytes MUST be used"), so the round trip must hold;
//! - what was accepted obeys the header rules: masked exactly when sent to a server (§5.1),
//!   control frames unfragmented with ≤ 125 bytes (§5.5), the length's top bit clear (§5.2);
//! - the verdict does not depend on how the bytes arrive: once a prefix decodes to a header
//!   or an error, the whole input decodes to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wscast::protocol::frame::{Decoded, FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use wscast::protocol::Role;

fuzz_target!(|data: &[u8]| {
    for role in [Role::Server, Role::Client] {
        let whole = FrameHeader::decode(data, role);
        match whole {
            Ok(Decoded::Complete { value, consumed }) => {
                assert!(consumed <= data.len(), "consumed past the input");
                assert_eq!(consumed, value.encoded_len(), "{value:?}");
                let mut out = [0u8; MAX_HEADER_LEN];
                let written = value.encode(&mut out);
                assert_eq!(written, consumed, "{value:?}");
                assert_eq!(&out[..written], &data[..consumed], "{value:?} as {role:?}");
                // §5.1: clients mask every frame, servers none.
                assert_eq!(value.masking_key.is_some(), role == Role::Server);
                // §5.5: control frames are unfragmented and carry at most 125 bytes.
                if value.opcode.is_control() {
                    assert!(value.fin, "{value:?}");
                    assert!(value.payload_len <= MAX_CONTROL_PAYLOAD as u64, "{value:?}");
                }
                // §5.2: "the most significant bit MUST be 0".
                assert_eq!(value.payload_len >> 63, 0, "{value:?}");
            }
            Ok(Decoded::Partial) => {
                assert!(
                    data.len() < MAX_HEADER_LEN,
                    "Partial with {} bytes",
                    data.len()
                );
            }
            Err(_) => {}
        }
        // Incremental decoding: a prefix is either "need more" or already the final verdict.
        for cut in 0..data.len().min(MAX_HEADER_LEN + 1) {
            let early = FrameHeader::decode(&data[..cut], role);
            if early != Ok(Decoded::Partial) {
                assert_eq!(early, whole, "prefix of {cut} bytes as {role:?}");
            }
        }
    }
});
