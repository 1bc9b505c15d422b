//! Value types. These modules hold data structures and know nothing of RESP or commands.

pub mod bitmap;
pub mod bytes;
pub mod geo;
pub mod hash;
pub mod hll;
pub mod list;
pub mod listpack;
pub mod mem;
pub mod pairpack;
pub mod redis_listpack;
pub mod set;
pub mod stream;
pub mod string;
pub mod zset;
pub mod ztree;

pub use bytes::{SmallBytes, SmallKey};
pub use hash::Hash;
pub use list::List;
pub use set::Set;
pub use stream::Stream;
pub use string::Str;
pub use zset::ZSet;

/// A value stored under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Str),
    List(List),
    Set(Set),
    Hash(Hash),
    ZSet(ZSet),
    Stream(Box<Stream>),
}

impl Value {
    /// The str this value holds, or `WRONGTYPE`.
    pub fn as_str(&self) -> crate::Result<&Str> {
        match self {
            Value::Str(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The str this value holds, for changing it, or `WRONGTYPE`.
    pub fn as_str_mut(&mut self) -> crate::Result<&mut Str> {
        match self {
            Value::Str(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The list this value holds, or `WRONGTYPE`.
    pub fn as_list(&self) -> crate::Result<&List> {
        match self {
            Value::List(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The list this value holds, for changing it, or `WRONGTYPE`.
    pub fn as_list_mut(&mut self) -> crate::Result<&mut List> {
        match self {
            Value::List(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The hash this value holds, or `WRONGTYPE`.
    pub fn as_hash(&self) -> crate::Result<&hash::Hash> {
        match self {
            Value::Hash(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The hash this value holds, for changing it, or `WRONGTYPE`.
    pub fn as_hash_mut(&mut self) -> crate::Result<&mut hash::Hash> {
        match self {
            Value::Hash(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The set this value holds, or `WRONGTYPE`.
    pub fn as_set(&self) -> crate::Result<&Set> {
        match self {
            Value::Set(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The set this value holds, for changing it, or `WRONGTYPE`.
    pub fn as_set_mut(&mut self) -> crate::Result<&mut Set> {
        match self {
            Value::Set(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The sorted set this value holds, or `WRONGTYPE`.
    pub fn as_zset(&self) -> crate::Result<&ZSet> {
        match self {
            Value::ZSet(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The sorted set this value holds, for changing it, or `WRONGTYPE`.
    pub fn as_zset_mut(&mut self) -> crate::Result<&mut ZSet> {
        match self {
            Value::ZSet(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The stream this value holds, or `WRONGTYPE`.
    pub fn as_stream(&self) -> crate::Result<&Stream> {
        match self {
            Value::Stream(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The stream this value holds, for changing it, or `WRONGTYPE`.
    pub fn as_stream_mut(&mut self) -> crate::Result<&mut Stream> {
        match self {
            Value::Stream(x) => Ok(x),
            _ => Err(crate::Error::WrongType),
        }
    }

    /// The name TYPE reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Hash(_) => "hash",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
        }
    }

    /// Estimated bytes the value has allocated outside itself (MEMORY USAGE): its buffers
    /// and tables, with the per-element costs of an aggregate extrapolated from its first
    /// `samples` elements (all of them when `samples` is 0). Never copies the value.
    pub fn heap_estimate(&self, samples: usize) -> usize {
        match self {
            Value::Str(s) => s.heap_bytes(),
            Value::List(l) => l.heap_estimate(samples),
            Value::Set(s) => s.heap_estimate(samples),
            Value::Hash(h) => h.heap_estimate(samples),
            Value::ZSet(z) => z.heap_estimate(samples),
            Value::Stream(s) => {
                mem::alloc_size(std::mem::size_of::<Stream>()) + s.heap_estimate(samples)
            }
        }
    }

    /// The name OBJECT ENCODING reports.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) => s.encoding(),
            Value::List(l) => l.encoding(),
            Value::Set(s) => s.encoding(),
            Value::Hash(h) => h.encoding(),
            Value::ZSet(z) => z.encoding(),
            Value::Stream(_) => "stream",
        }
    }
}
