//! COMMAND and its subcommands: the registry described to clients (COMMAND INFO, DOCS, LIST,
//! COUNT, GETKEYS, GETKEYSANDFLAGS), in Redis 7.0's reply shapes.

use super::registry::{self, find, find_sub};
use super::spec::*;
use super::{key_positions, Call};
use crate::resp::Reply;
use crate::util::eq_ic;
use crate::{Error, Result, Shard};

const SUB: CommandSpec = CommandSpec {
    group: Group::Server,
    acl: acl::CONNECTION,
    flags: flag::LOADING | flag::STALE,
    since: "7.0.0",
    ..CommandSpec::DEFAULT
};

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "command",
    arity: -1,
    flags: flag::LOADING | flag::STALE,
    acl: acl::CONNECTION,
    group: Group::Server,
    run: Some(command_all),
    summary: "Describes every command: arity, flags, keys and categories.",
    since: "2.8.13",
    complexity: "O(N) where N is the total number of Redis commands",
    tips: &["nondeterministic_output_order"],
    subcommands: &[
        CommandSpec {
            name: "count",
            arity: 2,
            run: Some(command_count),
            summary: "Tells how many commands the server knows.",
            since: "2.8.13",
            ..SUB
        },
        CommandSpec {
            name: "docs",
            arity: -2,
            run: Some(command_docs),
            summary: "Describes commands for humans: summary, arguments, history.",
            complexity: "O(N) where N is the number of commands to look up",
            tips: &["nondeterministic_output_order"],
            args: &[Arg::new("command-name", ArgType::String)
                .optional()
                .multiple()],
            ..SUB
        },
        CommandSpec {
            name: "getkeys",
            arity: -4,
            run: Some(command_getkeys),
            summary: "Extracts the key names from a full command line.",
            since: "2.8.13",
            complexity: "O(N) where N is the number of arguments to the command",
            args: &[
                Arg::new("command", ArgType::String),
                Arg::new("arg", ArgType::String).optional().multiple(),
            ],
            ..SUB
        },
        CommandSpec {
            name: "getkeysandflags",
            arity: -4,
            run: Some(command_getkeysandflags),
            summary: "Extracts the key names and their access flags from a full command line.",
            complexity: "O(N) where N is the number of arguments to the command",
            args: &[
                Arg::new("command", ArgType::String),
                Arg::new("arg", ArgType::String).optional().multiple(),
            ],
            ..SUB
        },
        CommandSpec {
            name: "help",
            arity: 2,
            run: Some(command_help),
            summary: "Lists the COMMAND subcommands.",
            since: "5.0.0",
            ..SUB
        },
        CommandSpec {
            name: "info",
            arity: -2,
            run: Some(command_info),
            summary: "Describes the given commands: arity, flags, keys and categories.",
            since: "2.8.13",
            complexity: "O(N) where N is the number of commands to look up",
            tips: &["nondeterministic_output_order"],
            history: &[(
                "7.0.0",
                "Allowed to be called with no argument to get info on all commands.",
            )],
            args: &[Arg::new("command-name", ArgType::String)
                .optional()
                .multiple()],
            ..SUB
        },
        CommandSpec {
            name: "list",
            arity: -2,
            run: Some(command_list),
            summary: "Lists command names, optionally filtered by module, ACL category or pattern.",
            complexity: "O(N) where N is the total number of Redis commands",
            tips: &["nondeterministic_output_order"],
            args: &[Arg::oneof(
                "filterby",
                &[
                    Arg::new("module-name", ArgType::String).with_token("MODULE"),
                    Arg::new("category", ArgType::String).with_token("ACLCAT"),
                    Arg::new("pattern", ArgType::Pattern).with_token("PATTERN"),
                ],
            )
            .with_token("FILTERBY")
            .optional()],
            ..SUB
        },
    ],
    ..CommandSpec::DEFAULT
}];

fn names(out: &mut Reply, table: &[(u32, &str)], bits: u32, prefix: &str) {
    let list: Vec<&str> = table
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    out.set(list.len());
    for n in list {
        out.simple(&format!("{prefix}{n}"));
    }
}

/// Redis's legacy (first, last, step) triple, derived from the key specs.
fn legacy_range(spec: &CommandSpec) -> (i64, i64, i64) {
    let ranges: Vec<(i32, i32, i32)> = spec
        .keys
        .iter()
        .filter_map(|k| match (k.begin, k.find) {
            (
                BeginSearch::Index(i),
                FindKeys::Range {
                    lastkey,
                    step,
                    limit: _,
                },
            ) => Some((i, lastkey, step)),
            _ => None,
        })
        .collect();
    if spec.keys.len() == 1 {
        if let Some(&(i, last, step)) = ranges.first() {
            let last = if last >= 0 { i + last } else { last };
            return (i as i64, last as i64, step as i64);
        }
    }
    let mut first = i32::MAX;
    let mut last: i32 = 0;
    let mut prev_last = 0;
    for &(i, l, step) in &ranges {
        if step != 1 || (prev_last != 0 && prev_last != i - 1) {
            break;
        }
        first = first.min(i);
        let abs = if l >= 0 { l + i } else { l };
        last = (last as u32).max(abs as u32) as i32;
        prev_last = last;
    }
    if first == i32::MAX {
        return (0, 0, 0);
    }
    (first as i64, last as i64, 1)
}

fn key_specs(out: &mut Reply, spec: &CommandSpec) {
    out.set(spec.keys.len());
    for k in spec.keys {
        out.map(3 + k.notes.is_some() as usize);
        if let Some(n) = k.notes {
            out.bulk(b"notes");
            out.bulk(n.as_bytes());
        }
        out.bulk(b"flags");
        names(out, kflag::NAMES, k.flags, "");
        out.bulk(b"begin_search");
        out.map(2);
        out.bulk(b"type");
        match k.begin {
            BeginSearch::Index(i) => {
                out.bulk(b"index");
                out.bulk(b"spec");
                out.map(1);
                out.bulk(b"index");
                out.int(i as i64);
            }
            BeginSearch::Unknown => {
                out.bulk(b"unknown");
                out.bulk(b"spec");
                out.map(0);
            }
            BeginSearch::Keyword { keyword, startfrom } => {
                out.bulk(b"keyword");
                out.bulk(b"spec");
                out.map(2);
                out.bulk(b"keyword");
                out.bulk(keyword.as_bytes());
                out.bulk(b"startfrom");
                out.int(startfrom as i64);
            }
        }
        out.bulk(b"find_keys");
        out.map(2);
        out.bulk(b"type");
        match k.find {
            FindKeys::Range {
                lastkey,
                step,
                limit,
            } => {
                out.bulk(b"range");
                out.bulk(b"spec");
                out.map(3);
                out.bulk(b"lastkey");
                out.int(lastkey as i64);
                out.bulk(b"keystep");
                out.int(step as i64);
                out.bulk(b"limit");
                out.int(limit as i64);
            }
            FindKeys::Unknown => {
                out.bulk(b"unknown");
                out.bulk(b"spec");
                out.map(0);
            }
            FindKeys::Keynum {
                keynumidx,
                firstkey,
                step,
            } => {
                out.bulk(b"keynum");
                out.bulk(b"spec");
                out.map(3);
                out.bulk(b"keynumidx");
                out.int(keynumidx as i64);
                out.bulk(b"firstkey");
                out.int(firstkey as i64);
                out.bulk(b"keystep");
                out.int(step as i64);
            }
        }
    }
}

/// One command's COMMAND INFO entry.
pub fn info_entry(out: &mut Reply, spec: &CommandSpec, parent: Option<&CommandSpec>) {
    out.array(10);
    match parent {
        Some(p) => out.bulk(format!("{}|{}", p.name, spec.name).as_bytes()),
        None => out.bulk(spec.name.as_bytes()),
    }
    out.int(spec.arity as i64);
    let mut flags = spec.flags;
    if spec.movable_keys() {
        flags |= flag::MOVABLE_KEYS;
    }
    names(out, flag::NAMES, flags, "");
    let (first, last, step) = legacy_range(spec);
    out.int(first);
    out.int(last);
    out.int(step);
    names(out, acl::NAMES, spec.acl_categories(), "@");
    out.set(spec.tips.len());
    for t in spec.tips {
        out.bulk(t.as_bytes());
    }
    key_specs(out, spec);
    out.set(spec.subcommands.len());
    for s in spec.subcommands {
        info_entry(out, s, Some(spec));
    }
}

fn arg_docs(out: &mut Reply, args: &[Arg]) {
    out.array(args.len());
    for a in args {
        let mut n = 2;
        n += (a.key_spec_index >= 0) as usize;
        n += a.token.is_some() as usize;
        n += a.since.is_some() as usize;
        n += (a.flags != 0) as usize;
        n += matches!(a.kind, ArgType::OneOf | ArgType::Block) as usize;
        out.map(n);
        out.bulk(b"name");
        out.bulk(a.name.as_bytes());
        out.bulk(b"type");
        out.bulk(a.kind.name().as_bytes());
        if a.key_spec_index >= 0 {
            out.bulk(b"key_spec_index");
            out.int(a.key_spec_index as i64);
        }
        if let Some(t) = a.token {
            out.bulk(b"token");
            out.bulk(t.as_bytes());
        }
        if let Some(s) = a.since {
            out.bulk(b"since");
            out.bulk(s.as_bytes());
        }
        if a.flags != 0 {
            out.bulk(b"flags");
            let f = [
                (aflag::OPTIONAL as u32, "optional"),
                (aflag::MULTIPLE as u32, "multiple"),
                (aflag::MULTIPLE_TOKEN as u32, "multiple_token"),
            ];
            names(out, &f, a.flags as u32, "");
        }
        if matches!(a.kind, ArgType::OneOf | ArgType::Block) {
            out.bulk(b"arguments");
            arg_docs(out, a.args);
        }
    }
}

/// One command's COMMAND DOCS value (the map; the name is written by the caller).
pub fn docs_entry(out: &mut Reply, spec: &CommandSpec, parent: Option<&CommandSpec>) {
    // summary, since, group, and complexity where there is one (Redis's internal commands
    // have none).
    let mut n = 3 + !spec.complexity.is_empty() as usize;
    let doc_flags = spec.deprecated.is_some() as usize + spec.syscmd as usize;
    n += (doc_flags > 0) as usize;
    n += 2 * spec.deprecated.is_some() as usize;
    n += !spec.history.is_empty() as usize;
    n += !spec.args.is_empty() as usize;
    n += !spec.subcommands.is_empty() as usize;
    out.map(n);
    out.bulk(b"summary");
    out.bulk(spec.summary.as_bytes());
    out.bulk(b"since");
    out.bulk(spec.since.as_bytes());
    out.bulk(b"group");
    out.bulk(spec.group.name().as_bytes());
    if !spec.complexity.is_empty() {
        out.bulk(b"complexity");
        out.bulk(spec.complexity.as_bytes());
    }
    if doc_flags > 0 {
        out.bulk(b"doc_flags");
        out.set(doc_flags);
        if spec.deprecated.is_some() {
            out.simple("deprecated");
        }
        if spec.syscmd {
            out.simple("syscmd");
        }
    }
    if let Some((since, by)) = spec.deprecated {
        out.bulk(b"deprecated_since");
        out.bulk(since.as_bytes());
        out.bulk(b"replaced_by");
        out.bulk(by.as_bytes());
    }
    if !spec.history.is_empty() {
        out.bulk(b"history");
        out.set(spec.history.len());
        for (v, what) in spec.history {
            out.array(2);
            out.bulk(v.as_bytes());
            out.bulk(what.as_bytes());
        }
    }
    if !spec.args.is_empty() {
        out.bulk(b"arguments");
        arg_docs(out, spec.args);
    }
    if !spec.subcommands.is_empty() {
        out.bulk(b"subcommands");
        out.map(spec.subcommands.len());
        for s in spec.subcommands {
            out.bulk(format!("{}|{}", spec.name, s.name).as_bytes());
            docs_entry(out, s, Some(spec));
        }
    }
    let _ = parent;
}

fn command_all(_: &mut Shard, c: &mut Call) -> Result<()> {
    let all: Vec<_> = registry::all().collect();
    c.out.array(all.len());
    for s in all {
        info_entry(&mut c.out, s, None);
    }
    Ok(())
}

fn command_count(_: &mut Shard, c: &mut Call) -> Result<()> {
    c.out.int(registry::all().count() as i64);
    Ok(())
}

/// A command or `parent|sub` by name.
fn by_full_name(name: &[u8]) -> Option<(&'static CommandSpec, Option<&'static CommandSpec>)> {
    if let Some(bar) = name.iter().position(|&b| b == b'|') {
        let parent = find(&name[..bar])?;
        let sub = find_sub(parent, &name[bar + 1..])?;
        return Some((sub, Some(parent)));
    }
    find(name).map(|s| (s, None))
}

fn command_info(_: &mut Shard, c: &mut Call) -> Result<()> {
    if c.argv.len() == 2 {
        return command_all(&mut Shard::new(0, 1, 0), c);
    }
    c.out.array(c.argv.len() - 2);
    for name in &c.argv[2..] {
        match by_full_name(name) {
            Some((s, p)) => info_entry(&mut c.out, s, p),
            None => c.out.null(),
        }
    }
    Ok(())
}

fn command_docs(_: &mut Shard, c: &mut Call) -> Result<()> {
    let found: Vec<_> = if c.argv.len() == 2 {
        registry::all().map(|s| (s, None)).collect()
    } else {
        c.argv[2..].iter().filter_map(|n| by_full_name(n)).collect()
    };
    c.out.map(found.len());
    for (s, p) in found {
        match p {
            Some(p) => c.out.bulk(format!("{}|{}", p.name, s.name).as_bytes()),
            None => c.out.bulk(s.name.as_bytes()),
        }
        docs_entry(&mut c.out, s, p);
    }
    Ok(())
}

/// The command and keys of COMMAND GETKEYS[ANDFLAGS] `cmd args…`.
fn getkeys_of<'a>(argv: &'a [&'a [u8]]) -> Result<(&'static CommandSpec, Vec<usize>)> {
    let sub = &argv[2..];
    let lookup = registry::lookup(sub);
    let spec = match (find(sub[0]), lookup) {
        (None, _) => return Err(Error::err("Invalid command specified")),
        (Some(_), Ok(l)) => l.spec,
        (Some(s), Err(_)) => {
            if s.keys.is_empty() && s.getkeys.is_none() {
                return Err(Error::err("The command has no key arguments"));
            }
            return Err(Error::err(
                "Invalid number of arguments specified for command",
            ));
        }
    };
    if spec.keys.is_empty() && spec.getkeys.is_none() {
        return Err(Error::err("The command has no key arguments"));
    }
    let mut pos = Vec::new();
    key_positions(spec, sub, &mut pos);
    if pos.is_empty() && spec.flags & flag::NO_MANDATORY_KEYS == 0 {
        return Err(Error::err("Invalid arguments specified for command"));
    }
    Ok((spec, pos))
}

fn command_getkeys(_: &mut Shard, c: &mut Call) -> Result<()> {
    let (_, pos) = getkeys_of(c.argv)?;
    c.out.array(pos.len());
    for p in pos {
        c.out.bulk(c.argv[2 + p]);
    }
    Ok(())
}

fn command_getkeysandflags(_: &mut Shard, c: &mut Call) -> Result<()> {
    let (spec, pos) = getkeys_of(c.argv)?;
    // Flags of the key spec each key came from: recompute per spec.
    let sub = &c.argv[2..];
    let mut out_keys = Vec::new();
    for ks in spec.keys {
        let one = CommandSpec {
            keys: std::slice::from_ref(ks),
            getkeys: None,
            ..*spec
        };
        let mut p = Vec::new();
        key_positions(&one, sub, &mut p);
        let flags = spec.key_flags.map_or(ks.flags, |f| f(sub));
        for i in p {
            out_keys.push((i, flags));
        }
    }
    if out_keys.is_empty() {
        out_keys = pos.iter().map(|&p| (p, 0)).collect();
    }
    c.out.array(out_keys.len());
    for (p, f) in out_keys {
        c.out.array(2);
        c.out.bulk(sub[p]);
        names(&mut c.out, kflag::NAMES, f, "");
    }
    Ok(())
}

fn command_list(_: &mut Shard, c: &mut Call) -> Result<()> {
    let mut a = c.args(2);
    type Filter = Box<dyn Fn(&CommandSpec, &str) -> bool>;
    let mut filter: Filter = Box::new(|_, _| true);
    if !a.is_empty() {
        if !a.eat("filterby") || a.remaining() != 2 {
            return Err(Error::Syntax);
        }
        let kind = a.next_bytes()?;
        let value = a.next_bytes()?.to_vec();
        if eq_ic(kind, "module") {
            filter = Box::new(|_, _| false);
        } else if eq_ic(kind, "aclcat") {
            let bit = acl::NAMES
                .iter()
                .find(|(_, n)| n.as_bytes().eq_ignore_ascii_case(&value))
                .map(|(b, _)| *b);
            filter = Box::new(move |s, _| bit.is_some_and(|b| s.acl_categories() & b != 0));
        } else if eq_ic(kind, "pattern") {
            filter = Box::new(move |_, name| crate::glob::matches(&value, name.as_bytes(), true));
        } else {
            return Err(Error::Syntax);
        }
    }
    let mut out = Vec::new();
    for s in registry::all() {
        if filter(s, s.name) {
            out.push(s.name.to_string());
        }
        for sub in s.subcommands {
            let full = format!("{}|{}", s.name, sub.name);
            if filter(sub, &full) {
                out.push(full);
            }
        }
    }
    c.out.array(out.len());
    for n in out {
        c.out.bulk(n.as_bytes());
    }
    Ok(())
}

fn command_help(_: &mut Shard, c: &mut Call) -> Result<()> {
    let lines = [
        "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "(no subcommand)",
        "    Return details about all Redis commands.",
        "COUNT",
        "    Return the total number of commands in this Redis server.",
        "LIST",
        "    Return a list of all commands in this Redis server.",
        "INFO [<command-name> ...]",
        "    Return details about multiple Redis commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "DOCS [<command-name> ...]",
        "    Return documentation details about multiple Redis commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "GETKEYS <full-command>",
        "    Return the keys from a full Redis command.",
        "GETKEYSANDFLAGS <full-command>",
        "    Return the keys and the access flags from a full Redis command.",
        "HELP",
        "    Prints this help.",
    ];
    c.out.simples(&lines);
    Ok(())
}
