//! The payload codec: how record structs become bytes and back.
//!
//! Every value is little-endian. Integers are fixed width; byte strings and
//! vectors carry a `u32` length or count; `Option` carries a one-byte tag.
//! Every struct is length-prefixed (`u32`), so a newer writer may append
//! fields: an older reader skips the bytes it does not know, and a newer
//! reader gives fields missing from an older image their `Default` value.
//!
//! Decoding never trusts a length: counts are checked against the bytes that
//! remain before anything is allocated, so hostile input fails cleanly.

use thiserror::Error;

/// Why a payload could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("payload ends early: needed {need} more bytes, {have} left")]
    Short { need: usize, have: usize },
    #[error("invalid value for {what}: {value}")]
    Invalid { what: &'static str, value: u64 },
}

/// A cursor over a payload being decoded.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    buf: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Input { buf }
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Short {
                need: n,
                have: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

/// A value with a wire encoding.
pub trait Wire: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn get(inp: &mut Input<'_>) -> Result<Self, WireError>;
}

/// Encodes a value into a fresh buffer.
pub fn encode<T: Wire>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.put(&mut out);
    out
}

/// Decodes a whole payload; trailing bytes after the value are ignored (they
/// belong to a newer minor version).
pub fn decode<T: Wire>(buf: &[u8]) -> Result<T, WireError> {
    T::get(&mut Input::new(buf))
}

macro_rules! wire_int {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(inp: &mut Input<'_>) -> Result<Self, WireError> {
                Ok(<$t>::from_le_bytes(inp.array()?))
            }
        }
    )*};
}
wire_int!(u8, u16, u32, u64, i32, i64);

impl Wire for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
    fn get(inp: &mut Input<'_>) -> Result<Self, WireError> {
        match u8::get(inp)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(WireError::Invalid {
                what: "bool",
                value: v as u64,
            }),
        }
    }
}

impl<const N: usize> Wire for [u8; N] {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn get(inp: &mut Input<'_>) -> Result<Self, WireError> {
        inp.array()
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("wire length exceeds u32");
    out.extend_from_slice(&n.to_le_bytes());
}

/// Byte strings (paths, names, raw register sets). Paths are bytes, not
/// UTF-8: Linux allows any byte but NUL and `/`.
impl Wire for Vec<u8> {
    fn put(&self, out: &mut Vec<u8>) {
        put_len(out, self.len());
        out.extend_from_slice(self);
    }
    fn get(inp: &mut Input<'_>) -> Result<Self, WireError> {
        let n = u32::get(inp)? as usize;
        Ok(inp.take(n)?.to_vec())
    }
}

impl Wire for String {
    fn put(&self, out: &mut Vec<u8>) {
        put_len(out, self.len());
        out.extend_from_slice(self.as_bytes());
    }
    fn get(inp: &mut Input<'_>) -> Result<Self, WireError> {
        let n = u32::get(inp)? as usize;
        let b = inp.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::Invalid {
            what: "utf-8 string",
            value: n as u64,
        })
    }
}

/// Marker for element types whose encoding is never empty, so a count can be
/// bounded by the bytes that remain.
pub trait NonEmptyWire: Wire {}
impl NonEmptyWire for u8 {}
impl NonEmptyWire for u16 {}
impl NonEmptyWire for u32 {}
impl NonEmptyWire for u64 {}
impl NonEmptyWire for i32 {}
impl NonEmptyWire for i64 {}
impl<const N: usize> NonEmptyWire for [u8; N] {}
impl NonEmptyWire for Vec<u8> {}

/// A list of values. A list of bytes is `Vec<u8>` above; this covers lists
/// of structs and integers through [`List`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

impl<T: NonEmptyWire> Wire for List<T> {
    fn put(&self, out: &mut Vec<u8>) {
        put_len(out, self.0.len());
        for v in &self.0 {
            v.put(out);
        }
    }
    fn get(inp: &mut Input<'_>) -> Result<Self, WireError> {
        let n = u32::get(inp)? as usize;
        // Every element takes at least one byte: a count larger than what is
        // left is a lie, refused before allocating.
        if n > inp.remaining() {
            return Err(WireError::Short {
                need: n,
                have: inp.remaining(),
            });
        }
        // A count within the bytes left may still be many elements of a
        // large type: grow as elements really decode rather than reserving
        // `n * size_of::<T>()` up front.
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(T::get(inp)?);
        }
        Ok(List(v))
    }
}
impl<T: NonEmptyWire> NonEmptyWire for List<T> {}

impl<T> std::ops::Deref for List<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}
impl<T> std::ops::DerefMut for List<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}
impl<T> From<Vec<T>> for List<T> {
    fn from(v: Vec<T>) -> Self {
        List(v)
    }
}

impl<T: Wire> Wire for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.put(out);
            }
        }
    }
    fn get(inp: &mut Input<'_>) -> Result<Self, WireError> {
        match u8::get(inp)? {
            0 => Ok(None),
            1 => Ok(Some(T::get(inp)?)),
            v => Err(WireError::Invalid {
                what: "option tag",
                value: v as u64,
            }),
        }
    }
}
impl<T: Wire> NonEmptyWire for Option<T> {}

/// Declares a record struct with its wire encoding: a `u32` length, then the
/// fields in order. Fields missing at the end decode as their default.
#[macro_export]
macro_rules! wire_struct {
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* pub $f:ident : $t:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name { $( $(#[$fm])* pub $f: $t ),* }

        impl $crate::image::wire::Wire for $name {
            fn put(&self, out: &mut Vec<u8>) {
                let start = out.len();
                out.extend_from_slice(&[0u8; 4]);
                $( $crate::image::wire::Wire::put(&self.$f, out); )*
                let len = u32::try_from(out.len() - start - 4).expect("record too large");
                out[start..start + 4].copy_from_slice(&len.to_le_bytes());
            }
            fn get(inp: &mut $crate::image::wire::Input<'_>) -> Result<Self, $crate::image::wire::WireError> {
                let len = <u32 as $crate::image::wire::Wire>::get(inp)? as usize;
                let mut sub = $crate::image::wire::Input::new(inp.take(len)?);
                #[allow(unused_mut)]
                let mut _sub = &mut sub;
                Ok($name { $( $f: if _sub.is_empty() {
                    Default::default()
                } else {
                    <$t as $crate::image::wire::Wire>::get(_sub)?
                } ),* })
            }
        }
        impl $crate::image::wire::NonEmptyWire for $name {}
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::wire_struct! {
        pub struct Old { pub a: u32, pub b: Vec<u8> }
    }
    crate::wire_struct! {
        pub struct New { pub a: u32, pub b: Vec<u8>, pub c: u64, pub d: List<u32> }
    }

    #[test]
    fn old_reads_new_and_new_reads_old() {
        let n = New {
            a: 7,
            b: b"x".to_vec(),
            c: 9,
            d: vec![1, 2].into(),
        };
        let o: Old = decode(&encode(&n)).unwrap();
        assert_eq!(o.a, 7);
        assert_eq!(o.b, b"x");
        let n2: New = decode(&encode(&o)).unwrap();
        assert_eq!(n2.c, 0);
        assert!(n2.d.is_empty());
    }

    #[test]
    fn hostile_counts_fail_without_allocating() {
        let mut buf = Vec::new();
        u32::MAX.put(&mut buf);
        assert!(decode::<List<u64>>(&buf).is_err());
        assert!(decode::<Vec<u8>>(&buf).is_err());
        let mut buf = Vec::new();
        8u32.put(&mut buf);
        assert!(decode::<New>(&buf).is_err());
    }
}
