//! Protobuf wire format reader: splits a message into (field number, value) pairs.
//!
//! Invariant: never reads past the slice it was given and never panics, whatever the bytes;
//! every malformation (truncation, over-long varint, bad length, bad wire type, stray end
//! group) is an error. Groups are skipped without recursion.

use std::fmt;

/// One field value as it appears on the wire, before the schema gives it a meaning.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
    /// A (deprecated) group; its content was skipped.
    Group,
}

impl WireValue<'_> {
    /// Wire type number, for error messages.
    pub fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => 0,
            WireValue::Fixed64(_) => 1,
            WireValue::Len(_) => 2,
            WireValue::Group => 3,
            WireValue::Fixed32(_) => 5,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WireError {
    Truncated,
    VarintOverflow,
    BadLength,
    BadWireType(u8),
    BadFieldNumber,
    StrayEndGroup,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("unexpected end of data"),
            WireError::VarintOverflow => f.write_str("integer overflow in varint"),
            WireError::BadLength => f.write_str("invalid length"),
            WireError::BadWireType(t) => write!(f, "illegal wire type {t}"),
            WireError::BadFieldNumber => f.write_str("illegal field number"),
            WireError::StrayEndGroup => f.write_str("end group without start group"),
        }
    }
}

/// Reads a base-128 varint at `*pos`. Like Go's generated code, bits beyond 64 in the
/// tenth byte are dropped; an eleventh byte is an overflow.
pub(super) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        if shift >= 64 {
            return Err(WireError::VarintOverflow);
        }
        let byte = *buf.get(*pos).ok_or(WireError::Truncated)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
        shift += 7;
    }
}

fn read_fixed<const N: usize>(buf: &[u8], pos: &mut usize) -> Result<[u8; N], WireError> {
    let end = pos.checked_add(N).ok_or(WireError::Truncated)?;
    let bytes = buf.get(*pos..end).ok_or(WireError::Truncated)?;
    *pos = end;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

fn read_len<'a>(buf: &'a [u8], pos: &mut usize) -> Result<&'a [u8], WireError> {
    let len = read_varint(buf, pos)?;
    let len = usize::try_from(len).map_err(|_| WireError::BadLength)?;
    let end = pos.checked_add(len).ok_or(WireError::BadLength)?;
    let bytes = buf.get(*pos..end).ok_or(WireError::Truncated)?;
    *pos = end;
    Ok(bytes)
}

/// Reads a key: (field number, wire type).
fn read_key(buf: &[u8], pos: &mut usize) -> Result<(u32, u8), WireError> {
    let key = read_varint(buf, pos)?;
    let number = key >> 3;
    if number == 0 || number > (1 << 29) - 1 {
        return Err(WireError::BadFieldNumber);
    }
    // The mask keeps the wire type in 0..8 and the check above keeps the number in 29 bits.
    Ok((number as u32, (key & 7) as u8))
}

/// Skips a group's content up to its matching end-group key.
fn skip_group(buf: &[u8], pos: &mut usize) -> Result<(), WireError> {
    let mut depth = 1usize;
    while depth > 0 {
        let (_, wire_type) = read_key(buf, pos)?;
        match wire_type {
            0 => {
                read_varint(buf, pos)?;
            }
            1 => {
                read_fixed::<8>(buf, pos)?;
            }
            2 => {
                read_len(buf, pos)?;
            }
            3 => depth += 1,
            4 => depth -= 1,
            5 => {
                read_fixed::<4>(buf, pos)?;
            }
            t => return Err(WireError::BadWireType(t)),
        }
    }
    Ok(())
}

/// Iterator over the fields of one message. Stops after the first error.
pub(super) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields {
            buf,
            pos: 0,
            failed: false,
        }
    }

    fn next_field(&mut self) -> Result<(u32, WireValue<'a>), WireError> {
        let (number, wire_type) = read_key(self.buf, &mut self.pos)?;
        let value = match wire_type {
            0 => WireValue::Varint(read_varint(self.buf, &mut self.pos)?),
            1 => WireValue::Fixed64(u64::from_le_bytes(read_fixed(self.buf, &mut self.pos)?)),
            2 => WireValue::Len(read_len(self.buf, &mut self.pos)?),
            3 => {
                skip_group(self.buf, &mut self.pos)?;
                WireValue::Group
            }
            4 => return Err(WireError::StrayEndGroup),
            5 => WireValue::Fixed32(u32::from_le_bytes(read_fixed(self.buf, &mut self.pos)?)),
            t => return Err(WireError::BadWireType(t)),
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, WireValue<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let item = self.next_field();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Values of a packed repeated varint field.
pub(super) fn packed_varints(buf: &[u8]) -> Result<Vec<u64>, WireError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        out.push(read_varint(buf, &mut pos)?);
    }
    Ok(out)
}

/// Values of a packed repeated fixed64 field.
pub(super) fn packed_fixed64(buf: &[u8]) -> Result<Vec<u64>, WireError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        out.push(u64::from_le_bytes(read_fixed(buf, &mut pos)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, WireError> {
        Fields::new(buf).collect()
    }

    #[test]
    fn reads_each_wire_type() {
        let buf = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 2, b'h', b'i', // 3: "hi"
            0x25, 2, 0, 0, 0, // 4: fixed32 2
            0x2b, 0x08, 0x01, 0x2c, // 5: group containing a varint
        ];
        assert_eq!(
            fields(&buf),
            Ok(vec![
                (1, WireValue::Varint(150)),
                (2, WireValue::Fixed64(1)),
                (3, WireValue::Len(b"hi")),
                (4, WireValue::Fixed32(2)),
                (5, WireValue::Group),
            ])
        );
    }

    #[test]
    fn ten_byte_varint_keeps_low_64_bits_like_go() {
        let mut buf = vec![0xff; 9];
        buf.push(0x7f);
        assert_eq!(read_varint(&buf, &mut 0), Ok(u64::MAX));
        let mut too_long = vec![0x80; 10];
        too_long.push(0x01);
        assert_eq!(
            read_varint(&too_long, &mut 0),
            Err(WireError::VarintOverflow)
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(fields(&[0x08]), Err(WireError::Truncated));
        assert_eq!(fields(&[0x08, 0x80]), Err(WireError::Truncated));
        assert_eq!(fields(&[0x0a, 5, 1, 2]), Err(WireError::Truncated));
        assert_eq!(
            fields(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(WireError::BadLength)
        );
        assert_eq!(fields(&[0x00, 0x01]), Err(WireError::BadFieldNumber));
        assert_eq!(fields(&[0x0e]), Err(WireError::BadWireType(6)));
        assert_eq!(fields(&[0x0c]), Err(WireError::StrayEndGroup));
        assert_eq!(fields(&[0x0b, 0x08, 0x01]), Err(WireError::Truncated));
        assert_eq!(fields(&[0x09, 1, 2]), Err(WireError::Truncated));
    }

    #[test]
    fn deeply_nested_groups_are_skipped_without_recursion() {
        let mut buf = vec![0x0b; 100_000];
        buf.extend(std::iter::repeat_n(0x0c, 100_000));
        assert_eq!(fields(&buf), Ok(vec![(1, WireValue::Group)]));
    }

    #[test]
    fn packed_values_are_split() {
        assert_eq!(packed_varints(&[1, 0x96, 0x01]), Ok(vec![1, 150]));
        assert_eq!(packed_varints(&[0x96]), Err(WireError::Truncated));
        assert_eq!(packed_fixed64(&[1, 0, 0, 0, 0, 0, 0, 0]), Ok(vec![1]));
        assert_eq!(packed_fixed64(&[1, 0]), Err(WireError::Truncated));
    }
}
