//! Value types. These modules hold data structures and know nothing of RESP or commands.

pub mod bytes;
pub mod listpack;
pub mod set;
pub mod string;

pub use bytes::SmallBytes;
pub use set::Set;
pub use string::Str;

/// A value stored under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Str),
    Set(Set),
}

impl Value {
    /// The name TYPE reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Set(_) => "set",
        }
    }

    /// The name OBJECT ENCODING reports.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) => s.encoding(),
            Value::Set(s) => s.encoding(),
        }
    }
}
