//! A cursor over a command's arguments: parse everything with it, then call [`Args::finish`]
//! so extra arguments are rejected in one place.

use crate::util::{eq_ic, parse_f64, parse_i64};
use crate::{Error, Result};

pub struct Args<'a> {
    argv: &'a [&'a [u8]],
    pos: usize,
}

impl<'a> Args<'a> {
    pub fn new(argv: &'a [&'a [u8]], pos: usize) -> Self {
        Args { argv, pos }
    }

    /// Arguments not consumed yet.
    pub fn remaining(&self) -> usize {
        self.argv.len().saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next argument without consuming it.
    pub fn peek(&self) -> Option<&'a [u8]> {
        self.argv.get(self.pos).copied()
    }

    /// The next argument, or a syntax error.
    pub fn next_bytes(&mut self) -> Result<&'a [u8]> {
        self.next().ok_or(Error::Syntax)
    }

    /// The next argument as an integer (syntax error if missing).
    pub fn next_i64(&mut self) -> Result<i64> {
        parse_i64(self.next_bytes()?).ok_or(Error::NotInteger)
    }

    /// The next argument as a float (syntax error if missing).
    pub fn next_f64(&mut self) -> Result<f64> {
        parse_f64(self.next_bytes()?).ok_or(Error::NotFloat)
    }

    /// Consumes the next argument if it equals `word` (ignoring case).
    pub fn eat(&mut self, word: &str) -> bool {
        match self.peek() {
            Some(a) if eq_ic(a, word) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    /// Fails with a syntax error if arguments remain.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(Error::Syntax)
        }
    }
}

/// The remaining arguments, in order.
impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let a = self.argv.get(self.pos).copied()?;
        self.pos += 1;
        Some(a)
    }
}
