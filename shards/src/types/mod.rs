//! Value types. These modules hold data structures and know nothing of RESP or commands.

pub mod bytes;
pub mod hash;
pub mod list;
pub mod listpack;
pub mod set;
pub mod string;

pub use bytes::{SmallBytes, SmallKey};
pub use hash::Hash;
pub use list::List;
pub use set::Set;
pub use string::Str;

/// A value stored under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Str),
    List(List),
    Set(Set),
    Hash(Hash),
}

impl Value {
    /// The name TYPE reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Hash(_) => "hash",
        }
    }

    /// The name OBJECT ENCODING reports.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) => s.encoding(),
            Value::List(l) => l.encoding(),
            Value::Set(s) => s.encoding(),
            Value::Hash(h) => h.encoding(),
        }
    }
}
