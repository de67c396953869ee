//! SS58: the address form substrate chains (bittensor among them) write a
//! 32-byte public key in.
//!
//! ```text
//! address  = base58(prefix || public key || checksum)
//! checksum = the first 2 bytes of blake2b-512("SS58PRE" || prefix || public key)
//! ```
//!
//! `prefix` is one byte from 0 to 63 naming the network; 42 is substrate's
//! generic prefix, the one bittensor uses. `base58` uses the Bitcoin
//! alphabet. Only the single-byte prefixes and 32-byte keys (35 bytes in
//! all) are read and written here: two-byte prefixes (a first byte from 64
//! to 127) are refused, and first bytes from 128 up are reserved by the
//! format.

use blake2::{Blake2b512, Digest as _};

/// Substrate's generic SS58 network prefix, the one bittensor addresses use.
pub const SS58_GENERIC_PREFIX: u8 = 42;

/// The longest text read as an SS58 address, in bytes: a 35-byte address is
/// at most 48 base58 characters, and longer text is refused before any
/// decoding.
pub const MAX_SS58_LEN: usize = 64;

const CHECKSUM_DOMAIN: &[u8] = b"SS58PRE";
const CHECKSUM_LEN: usize = 2;
const ADDRESS_LEN: usize = 1 + 32 + CHECKSUM_LEN;

/// Why text is not a single-byte-prefix SS58 address of a 32-byte key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ss58Error {
    /// The text is longer than [`MAX_SS58_LEN`].
    #[error("an SS58 address is at most {MAX_SS58_LEN} characters; this text has {len}")]
    TooLong {
        /// The text's length in bytes.
        len: usize,
    },
    /// The text is not base58 (Bitcoin alphabet).
    #[error("not valid base58 (an SS58 address uses the Bitcoin base58 alphabet)")]
    Base58,
    /// The prefix is not one byte from 0 to 63.
    #[error(
        "SS58 prefix byte {first_byte} is not a single-byte network prefix (0 to 63); two-byte prefixes are not supported"
    )]
    Prefix {
        /// The address's first byte (or the prefix asked for).
        first_byte: u8,
    },
    /// The address does not decode to 35 bytes (prefix, key, checksum).
    #[error(
        "an SS58 address of a 32-byte key decodes to {ADDRESS_LEN} bytes; this one decodes to {len}"
    )]
    Length {
        /// The number of bytes it decodes to.
        len: usize,
    },
    /// The checksum does not match the prefix and key.
    #[error("the SS58 checksum does not match (a mistyped address?)")]
    Checksum,
}

fn checksum(prefix_and_key: &[u8]) -> [u8; CHECKSUM_LEN] {
    let hash = Blake2b512::new()
        .chain_update(CHECKSUM_DOMAIN)
        .chain_update(prefix_and_key)
        .finalize();
    [hash[0], hash[1]]
}

/// Encodes a 32-byte public key as an SS58 address with network `prefix`.
///
/// # Errors
///
/// [`Ss58Error::Prefix`] if `prefix` is 64 or more (not a single-byte
/// network prefix).
pub fn encode_ss58(prefix: u8, public: &[u8; 32]) -> Result<String, Ss58Error> {
    if prefix >= 64 {
        return Err(Ss58Error::Prefix { first_byte: prefix });
    }
    let mut data = Vec::with_capacity(ADDRESS_LEN);
    data.push(prefix);
    data.extend_from_slice(public);
    let sum = checksum(&data);
    data.extend_from_slice(&sum);
    Ok(bs58::encode(data).into_string())
}

/// Decodes an SS58 address into its network prefix and 32-byte public key,
/// verifying the checksum. Any single-byte prefix (0 to 63) is accepted.
///
/// # Errors
///
/// [`Ss58Error`] saying what is wrong: too long, not base58, a prefix that is
/// not one byte, the wrong length, or a checksum that does not match.
pub fn decode_ss58(text: &str) -> Result<(u8, [u8; 32]), Ss58Error> {
    if text.len() > MAX_SS58_LEN {
        return Err(Ss58Error::TooLong { len: text.len() });
    }
    let data = bs58::decode(text)
        .into_vec()
        .map_err(|_| Ss58Error::Base58)?;
    let Some(&first_byte) = data.first() else {
        return Err(Ss58Error::Length { len: 0 });
    };
    // A 36-byte address with a first byte from 64 to 127 is a two-byte
    // prefix address: say so rather than that its length is wrong.
    let two_byte_prefix = (64..128).contains(&first_byte) && data.len() == ADDRESS_LEN + 1;
    if data.len() != ADDRESS_LEN && !two_byte_prefix {
        return Err(Ss58Error::Length { len: data.len() });
    }
    if first_byte >= 64 {
        return Err(Ss58Error::Prefix { first_byte });
    }
    let (body, sum) = data.split_at(1 + 32);
    if checksum(body) != sum {
        return Err(Ss58Error::Checksum);
    }
    let mut public = [0u8; 32];
    public.copy_from_slice(&body[1..]);
    Ok((first_byte, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Substrate's `//Alice` and `//Bob` dev accounts (sr25519), as every
    /// substrate tool prints them.
    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const ALICE_PUBLIC: &str = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d";
    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const BOB_PUBLIC: &str = "8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48";

    fn key(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).expect("hex");
        out
    }

    #[test]
    fn reference_addresses_round_trip() {
        for (address, public) in [(ALICE, ALICE_PUBLIC), (BOB, BOB_PUBLIC)] {
            assert_eq!(decode_ss58(address), Ok((42, key(public))));
            assert_eq!(
                encode_ss58(SS58_GENERIC_PREFIX, &key(public)).as_deref(),
                Ok(address)
            );
        }
    }

    #[test]
    fn other_single_byte_prefixes_round_trip() {
        // Alice on Polkadot (prefix 0) and Kusama (prefix 2), as polkadot.js
        // shows her.
        let alice = key(ALICE_PUBLIC);
        let polkadot = "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5";
        let kusama = "HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F";
        assert_eq!(encode_ss58(0, &alice).as_deref(), Ok(polkadot));
        assert_eq!(encode_ss58(2, &alice).as_deref(), Ok(kusama));
        assert_eq!(decode_ss58(polkadot), Ok((0, alice)));
        assert_eq!(decode_ss58(kusama), Ok((2, alice)));
        for prefix in 0..64 {
            let text = encode_ss58(prefix, &alice).expect("single-byte prefix");
            assert_eq!(decode_ss58(&text), Ok((prefix, alice)));
        }
    }

    #[test]
    fn two_byte_and_reserved_prefixes_are_refused() {
        for prefix in [64, 127, 128, 255] {
            assert_eq!(
                encode_ss58(prefix, &[1; 32]),
                Err(Ss58Error::Prefix { first_byte: prefix })
            );
            // A two-byte prefix takes 36 bytes; a reserved first byte is
            // refused at the usual 35.
            let mut data = vec![prefix];
            data.extend_from_slice(&[1; 32]);
            data.extend_from_slice(if prefix < 128 { &[0, 0, 0] } else { &[0, 0] });
            let text = bs58::encode(data).into_string();
            assert_eq!(
                decode_ss58(&text),
                Err(Ss58Error::Prefix { first_byte: prefix })
            );
        }
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        // Last character changed: still base58, still 35 bytes.
        let typo = format!("{}Z", &ALICE[..ALICE.len() - 1]);
        assert_eq!(decode_ss58(&typo), Err(Ss58Error::Checksum));
        // A correct checksum over another key does not pass for this one.
        let mut data = bs58::decode(ALICE).into_vec().expect("base58");
        data[5] ^= 1;
        assert_eq!(
            decode_ss58(&bs58::encode(data).into_string()),
            Err(Ss58Error::Checksum)
        );
    }

    #[test]
    fn malformed_text_is_refused_saying_why() {
        assert_eq!(decode_ss58(""), Err(Ss58Error::Length { len: 0 }));
        // 0, O, I and l are not in the alphabet.
        assert_eq!(decode_ss58("5Grw0aEF"), Err(Ss58Error::Base58));
        assert_eq!(
            decode_ss58("5GrwvaEF5zXb26"),
            Err(Ss58Error::Length { len: 10 })
        );
        assert_eq!(
            decode_ss58(&format!("{ALICE}1")),
            Err(Ss58Error::Length { len: 36 })
        );
        assert_eq!(
            decode_ss58(&"z".repeat(65)),
            Err(Ss58Error::TooLong { len: 65 })
        );
    }
}
