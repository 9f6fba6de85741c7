//! HMAC-SHA-256 (RFC 2104) over the `sha2` crate, for keyed record digests.
//!
//! A [`Key`] keeps the two padded key blocks, so a digest costs two
//! SHA-256 runs and no allocation. Comparison is constant-time
//! ([`ct_eq`]), so a forger learns nothing from how long a refusal takes.

use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// An HMAC-SHA-256 key. `Debug` does not show it.
#[derive(Clone)]
pub struct Key {
    ipad: [u8; BLOCK],
    opad: [u8; BLOCK],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from secret bytes of any length (longer than a block: hashed
    /// first, as RFC 2104 says).
    pub fn new(secret: &[u8]) -> Self {
        let mut k = [0u8; BLOCK];
        if secret.len() > BLOCK {
            k[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            k[..secret.len()].copy_from_slice(secret);
        }
        let mut ipad = [0x36u8; BLOCK];
        let mut opad = [0x5cu8; BLOCK];
        for i in 0..BLOCK {
            ipad[i] ^= k[i];
            opad[i] ^= k[i];
        }
        Key { ipad, opad }
    }

    /// HMAC-SHA-256 of the concatenation of `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut inner = Sha256::new();
        inner.update(self.ipad);
        for p in parts {
            inner.update(p);
        }
        let mut outer = Sha256::new();
        outer.update(self.opad);
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// Whether two digests are equal, in time that does not depend on where
/// they differ.
pub fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    // RFC 4231 test cases 1, 2 and 6 (a key longer than a block).
    #[test]
    fn rfc4231_vectors() {
        let k = Key::new(&[0x0b; 20]);
        assert_eq!(
            hex(&k.mac(&[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        let k = Key::new(b"Jefe");
        assert_eq!(
            hex(&k.mac(&[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let k = Key::new(&[0xaa; 131]);
        assert_eq!(
            hex(&k.mac(&[b"Test Using Larger Than Block-Size Key - Hash Key First"])),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn constant_time_compare() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(ct_eq(&a, &b));
        b[31] ^= 1;
        assert!(!ct_eq(&a, &b));
    }
}
