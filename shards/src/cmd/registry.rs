//! The registry: every command declaration, and lookup by name with Redis's errors for unknown
//! commands, unknown subcommands and wrong arity.

use super::spec::CommandSpec;
use super::unknown_command_error;
use crate::Error;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Every top-level command, by family.
pub fn all() -> impl Iterator<Item = &'static CommandSpec> {
    [
        super::string::COMMANDS,
        super::keys::COMMANDS,
        super::dump::COMMANDS,
        super::list::COMMANDS,
        super::hash::COMMANDS,
        super::server::COMMANDS,
        super::info::COMMANDS,
        super::set::COMMANDS,
        super::sort::COMMANDS,
        super::multi::COMMANDS,
        super::bitmap::COMMANDS,
        super::hll::COMMANDS,
        super::zset::COMMANDS,
        super::geo::COMMANDS,
        super::pubsub::COMMANDS,
        super::stream::COMMANDS,
        super::stream::group::COMMANDS,
        super::script::COMMANDS,
        super::repl::COMMANDS,
        super::cluster::COMMANDS,
        super::search::COMMANDS,
    ]
    .into_iter()
    .flat_map(|family| family.iter())
}

type Table = HashMap<&'static str, &'static CommandSpec, ahash::RandomState>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| all().map(|c| (c.name, c)).collect())
}

/// A top-level command by name, ignoring case.
pub fn find(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let lower = std::str::from_utf8(&buf[..name.len()]).ok()?;
    table().get(lower).copied()
}

/// A subcommand of `parent` by name, ignoring case.
pub fn find_sub(parent: &CommandSpec, name: &[u8]) -> Option<&'static CommandSpec> {
    parent
        .subcommands
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

/// The result of looking a request up.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// The command (or subcommand) to run.
    pub spec: &'static CommandSpec,
    /// The top-level command, for subcommands.
    pub parent: Option<&'static CommandSpec>,
}

impl Lookup {
    /// The full name Redis uses in errors and stats (`config|get`).
    pub fn full_name(&self) -> String {
        match self.parent {
            Some(p) => format!("{}|{}", p.name, self.spec.name),
            None => self.spec.name.to_string(),
        }
    }
}

/// The command `argv` names, whatever its arity (for counting rejected calls).
pub fn find_unchecked(argv: &[&[u8]]) -> Option<Lookup> {
    let spec = find(argv.first()?)?;
    if !spec.subcommands.is_empty() && argv.len() >= 2 {
        let sub = find_sub(spec, argv[1])?;
        return Some(Lookup {
            spec: sub,
            parent: Some(spec),
        });
    }
    Some(Lookup { spec, parent: None })
}

/// Looks up `argv` (name first) and checks its arity.
pub fn lookup(argv: &[&[u8]]) -> Result<Lookup, Error> {
    let Some(name) = argv.first() else {
        return Err(unknown_command_error(argv));
    };
    let Some(spec) = find(name) else {
        return Err(unknown_command_error(argv));
    };
    if !spec.subcommands.is_empty() && argv.len() >= 2 {
        let Some(sub) = find_sub(spec, argv[1]) else {
            let mut upper = spec.name.to_string();
            upper.make_ascii_uppercase();
            let subname = String::from_utf8_lossy(argv[1]);
            let subname: String = subname.chars().take(128).collect();
            return Err(Error::Other(format!(
                "ERR unknown subcommand '{subname}'. Try {upper} HELP."
            )));
        };
        let found = Lookup {
            spec: sub,
            parent: Some(spec),
        };
        if !sub.arity_ok(argv.len()) {
            return Err(Error::WrongArity(found.full_name()));
        }
        return Ok(found);
    }
    if !spec.arity_ok(argv.len()) {
        return Err(Error::WrongArity(spec.name.to_string()));
    }
    Ok(Lookup { spec, parent: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lowercase() {
        let mut seen = std::collections::HashSet::new();
        for c in all() {
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            assert!(seen.insert(c.name), "duplicate {}", c.name);
            assert!(c.arity != 0, "{} has no arity", c.name);
            assert!(!c.summary.is_empty(), "{} has no summary", c.name);
            for s in c.subcommands {
                assert!(s.arity != 0, "{}|{} has no arity", c.name, s.name);
            }
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            lookup(&[b"nosuch", b"a", b"b"]).unwrap_err().text(),
            "ERR unknown command 'nosuch', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            lookup(&[b"GET"]).unwrap_err().text(),
            "ERR wrong number of arguments for 'get' command"
        );
    }
}
