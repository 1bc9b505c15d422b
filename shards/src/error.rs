//! The engine's one error type. Each variant is one Redis error reply, with Redis's exact text.

use std::fmt;

/// A command's failure, as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    WrongType,
    Syntax,
    NotInteger,
    NotFloat,
    Overflow,
    NoSuchKey,
    OutOfRange,
    InvalidDbIndex,
    DbIndexOutOfRange,
    SameObject,
    WrongArity(String),
    UnknownCommand(String),
    /// Any other error; the text is sent after `-` as is (it carries its own code, e.g. `ERR `).
    Other(String),
    /// Not an error for the client: a blocking command found nothing to serve and the caller
    /// should park the client for this many milliseconds (0 = forever). Outside a blocking
    /// context the server answers as Redis does for a timed-out call.
    Blocked(u64),
    /// Not an error for the client: a script reached keys it may not touch on this shard
    /// before finishing; the data is as it was, and the server runs it again as a transaction
    /// over the keys in `Shard::reroute` (see `crate::script`).
    Reroute,
}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An `ERR`-coded error with the given message.
    pub fn err(msg: impl Into<String>) -> Error {
        Error::Other(format!("ERR {}", msg.into()))
    }

    /// The reply text, without the leading `-` and trailing CRLF.
    pub fn text(&self) -> String {
        match self {
            Error::WrongType => {
                "WRONGTYPE Operation against a key holding the wrong kind of value".into()
            }
            Error::Syntax => "ERR syntax error".into(),
            Error::NotInteger => "ERR value is not an integer or out of range".into(),
            Error::NotFloat => "ERR value is not a valid float".into(),
            Error::Overflow => "ERR increment or decrement would overflow".into(),
            Error::NoSuchKey => "ERR no such key".into(),
            Error::OutOfRange => "ERR index out of range".into(),
            Error::InvalidDbIndex => "ERR invalid DB index".into(),
            Error::DbIndexOutOfRange => "ERR DB index is out of range".into(),
            Error::SameObject => "ERR source and destination objects are the same".into(),
            Error::WrongArity(cmd) => {
                format!("ERR wrong number of arguments for '{cmd}' command")
            }
            Error::UnknownCommand(text) => text.clone(),
            Error::Other(text) => text.clone(),
            Error::Blocked(_) => "ERR blocked".into(),
            Error::Reroute => "ERR script needs keys on other shards".into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::error::Error for Error {}
