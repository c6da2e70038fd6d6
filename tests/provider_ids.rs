//! The ids we derive for providers' deduplication, against fixed vectors.
//!
//! VK's `random_id` and SMSC's `id` are derived from `<notification id>:<step>`
//! so that every attempt of a step carries the same one. A change to the
//! derivation would quietly make a daemon of the new version resend, under a
//! new id, what one of the old version already sent; so the values are pinned
//! here, not recomputed with the functions under test.
//!
//! Each expected value was computed once outside Rust, from the documented
//! derivation (first four bytes of SHA-256 of the UTF-8 key, big-endian):
//!
//! ```text
//! python3 -c 'import hashlib,sys; k=sys.argv[1].encode()
//! n=int.from_bytes(hashlib.sha256(k).digest()[:4],"big")
//! print(max(n & 0x7fffffff, 1), n % 2147483647 + 1)' 'order-1001:0'
//! ```
//!
//! The first number is VK's `random_id` (the low 31 bits, never 0), the second
//! SMSC's `id` (modulo 2^31 − 1, plus 1). Keys whose digest has the top bit
//! set (`order-1001:1`, `order-1001:delayed:1`) tell the two apart by more
//! than one.

use cascade::channels::sms::numeric_id;
use cascade::channels::vk::random_id;

/// (key, SHA-256 prefix, VK `random_id`, SMSC `id`).
const VECTORS: &[(&str, u32, i64, u32)] = &[
    ("order-1001:0", 0x7129_4a3e, 1_898_531_390, 1_898_531_391),
    ("order-1001:1", 0x9887_61b6, 411_525_558, 411_525_560),
    ("order-1002:0", 0x6c97_8c36, 1_821_871_158, 1_821_871_159),
    ("", 0xe3b0_c442, 1_672_528_962, 1_672_528_964),
    ("x", 0x2d71_1642, 762_385_986, 762_385_987),
    (
        "очень длинный ключ:7",
        0x61cb_3d76,
        1_640_709_494,
        1_640_709_495,
    ),
    (
        "order-1001:delayed:1",
        0x8a84_cf29,
        176_475_945,
        176_475_947,
    ),
];

#[test]
fn vk_random_id_matches_the_fixed_vectors() {
    for &(key, prefix, vk, _) in VECTORS {
        assert_eq!(random_id(key), vk, "{key:?} (digest {prefix:08x}…)");
    }
}

#[test]
fn smsc_id_matches_the_fixed_vectors() {
    for &(key, prefix, _, smsc) in VECTORS {
        assert_eq!(numeric_id(key), smsc, "{key:?} (digest {prefix:08x}…)");
    }
}
