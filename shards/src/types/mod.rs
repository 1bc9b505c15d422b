//! Value types. These modules hold data structures and know nothing of RESP or commands.

pub mod bytes;
pub mod hash;
pub mod listpack;
pub mod string;

pub use bytes::SmallBytes;
pub use hash::Hash;
pub use string::Str;

/// A value stored under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Str),
    Hash(Hash),
}

impl Value {
    /// The name TYPE reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
        }
    }

    /// The name OBJECT ENCODING reports.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) => s.encoding(),
            Value::Hash(h) => h.encoding(),
        }
    }
}
