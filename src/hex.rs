//! Hex decoding, the one copy: digits, fixed-width numbers (PCI addresses) and byte strings
//! (recordings).
//!
//! Both lower- and upper-case digits are accepted; nothing else (no `0x`, no sign, no space).

/// The value of one hex digit; `None` if `c` is not one.
///
/// A table, not a `match` on three ranges: the listener reads a dozen digits per PCI event
/// (bus addresses in every devpath, `PCI_ID`...), and the ranges' branches cost four times the
/// load (callgrind).
pub(crate) fn digit(c: u8) -> Option<u8> {
    let d = DIGITS[usize::from(c)];
    (d < 16).then_some(d)
}

/// [`digit`]'s table: each byte's value as a hex digit, 0xff for a byte that is not one.
static DIGITS: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            b @ b'0'..=b'9' => b - b'0',
            b @ b'a'..=b'f' => b - b'a' + 10,
            b @ b'A'..=b'F' => b - b'A' + 10,
            _ => 0xff,
        };
        c += 1;
    }
    t
};

/// Exactly two hex digits as a byte (`"1f"` is 0x1f); `None` for any other length or a
/// non-hex byte.
pub(crate) fn u8_exact(b: &[u8]) -> Option<u8> {
    match b {
        [h, l] => Some(digit(*h)? << 4 | digit(*l)?),
        _ => None,
    }
}

/// Exactly four hex digits as a `u16`; `None` for any other length or a non-hex byte.
pub(crate) fn u16_exact(b: &[u8]) -> Option<u16> {
    match b {
        [a, b2, c, d] => {
            Some(u16::from(u8_exact(&[*a, *b2])?) << 8 | u16::from(u8_exact(&[*c, *d])?))
        }
        _ => None,
    }
}

/// Why a hex byte string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Nothing to decode.
    Empty,
    /// An odd number of digits (the length is given).
    OddLength(usize),
    /// A byte that is not a hex digit, and its 0-based position.
    NotHex { byte: u8, at: usize },
}

/// Decodes a string of hex digit pairs into bytes (`"6162"` is `b"ab"`).
pub(crate) fn decode(hex: &str) -> Result<Vec<u8>, DecodeError> {
    let b = hex.as_bytes();
    if b.is_empty() {
        return Err(DecodeError::Empty);
    }
    if b.len() % 2 != 0 {
        return Err(DecodeError::OddLength(b.len()));
    }
    let at = |i: usize| digit(b[i]).ok_or(DecodeError::NotHex { byte: b[i], at: i });
    (0..b.len())
        .step_by(2)
        .map(|i| Ok(at(i)? << 4 | at(i + 1)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_numbers() {
        assert_eq!(digit(b'7'), Some(7));
        assert_eq!(digit(b'a'), Some(10));
        assert_eq!(digit(b'F'), Some(15));
        assert_eq!(digit(b'g'), None);
        for c in 0..=u8::MAX {
            let std = char::from(c).to_digit(16).map(|d| d as u8);
            assert_eq!(digit(c), std, "byte {c:#04x}");
        }
        assert_eq!(u8_exact(b"1f"), Some(0x1f));
        assert_eq!(u8_exact(b"Ab"), Some(0xab));
        assert_eq!(u8_exact(b"1"), None);
        assert_eq!(u8_exact(b"100"), None);
        assert_eq!(u8_exact(b"+1"), None);
        assert_eq!(u16_exact(b"0001"), Some(1));
        assert_eq!(u16_exact(b"fFfF"), Some(0xffff));
        assert_eq!(u16_exact(b"001"), None);
        assert_eq!(u16_exact(b"00 1"), None);
    }

    #[test]
    fn byte_strings() {
        assert_eq!(decode("616200"), Ok(b"ab\0".to_vec()));
        assert_eq!(decode("FF00"), Ok(vec![0xff, 0]));
        assert_eq!(decode(""), Err(DecodeError::Empty));
        assert_eq!(decode("616"), Err(DecodeError::OddLength(3)));
        assert_eq!(decode("6g"), Err(DecodeError::NotHex { byte: b'g', at: 1 }));
        assert_eq!(decode("x0"), Err(DecodeError::NotHex { byte: b'x', at: 0 }));
    }
}
