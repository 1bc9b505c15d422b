//! Merging the replies of a command that ran in parts on several shards. Parts come back as
//! encoded RESP; this module finds element boundaries and builds the one reply the client sees.

use shards::cmd::Merge;
use shards::resp::{Proto, Reply};

/// Length of the complete RESP value at the start of `buf`, if there is one.
pub fn value_len(buf: &[u8]) -> Option<usize> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = &buf[1..line_end];
    let after = line_end + 2;
    let num = || std::str::from_utf8(head).ok()?.parse::<i64>().ok();
    match *buf.first()? {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after),
        b'$' | b'=' | b'!' => {
            let n = num()?;
            if n < 0 {
                return Some(after);
            }
            let end = after + n as usize + 2;
            (buf.len() >= end).then_some(end)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = num()?;
            if n < 0 {
                return Some(after);
            }
            let per = if matches!(buf[0], b'%' | b'|') { 2 } else { 1 };
            let mut pos = after;
            for _ in 0..n * per {
                pos += value_len(&buf[pos..])?;
            }
            Some(pos)
        }
        _ => None,
    }
}

/// The elements of an encoded array reply; `None` if it is not an array (e.g. an error).
pub fn array_elements(buf: &[u8]) -> Option<Vec<&[u8]>> {
    if buf.first() != Some(&b'*') {
        return None;
    }
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let n: usize = std::str::from_utf8(&buf[1..line_end]).ok()?.parse().ok()?;
    let mut pos = line_end + 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = value_len(&buf[pos..])?;
        out.push(&buf[pos..pos + len]);
        pos += len;
    }
    Some(out)
}

fn is_error(buf: &[u8]) -> bool {
    buf.first() == Some(&b'-')
}

fn int_of(buf: &[u8]) -> Option<i64> {
    if buf.first() != Some(&b':') {
        return None;
    }
    std::str::from_utf8(buf.get(1..buf.len().checked_sub(2)?)?)
        .ok()?
        .parse()
        .ok()
}

/// Merges per-shard replies. `parts` are (shard, reply) in any order; for `KeyOrder`,
/// `key_shards[i]` is the shard of the i-th key, and each shard's reply lists its keys in order.
pub fn merge(
    kind: Merge,
    parts: &[(usize, Vec<u8>)],
    key_shards: &[usize],
    proto: Proto,
    out: &mut Vec<u8>,
) {
    if let Some((_, e)) = parts.iter().find(|(_, r)| is_error(r)) {
        out.extend_from_slice(e);
        return;
    }
    if kind == Merge::Search {
        let mut sorted: Vec<&(usize, Vec<u8>)> = parts.iter().collect();
        sorted.sort_by_key(|(s, _)| *s);
        let bodies: Vec<&[u8]> = sorted.iter().map(|(_, r)| r.as_slice()).collect();
        shards::cmd::search::merge_parts(&bodies, proto, out);
        return;
    }
    let mut reply = Reply::new(out, proto);
    match kind {
        Merge::Search => {}
        Merge::Sum => {
            let total: i64 = parts.iter().filter_map(|(_, r)| int_of(r)).sum();
            reply.int(total);
        }
        Merge::First => {
            if let Some((_, r)) = parts.iter().min_by_key(|(s, _)| *s) {
                reply.raw(r);
            }
        }
        Merge::Concat => {
            let elems: Vec<&[u8]> = parts
                .iter()
                .filter_map(|(_, r)| array_elements(r))
                .flatten()
                .collect();
            reply.array(elems.len());
            for e in elems {
                reply.raw(e);
            }
        }
        Merge::KeyOrder => {
            let mut per_shard: Vec<(usize, std::vec::IntoIter<&[u8]>)> = parts
                .iter()
                .map(|(s, r)| (*s, array_elements(r).unwrap_or_default().into_iter()))
                .collect();
            reply.array(key_shards.len());
            for s in key_shards {
                match per_shard
                    .iter_mut()
                    .find(|(ps, _)| ps == s)
                    .and_then(|(_, it)| it.next())
                {
                    Some(e) => reply.raw(e),
                    None => reply.null(),
                }
            }
        }
        Merge::AnyNonNull => {
            // A random one of the shards that had an answer (RANDOMKEY).
            let found: Vec<&Vec<u8>> = parts
                .iter()
                .map(|(_, r)| r)
                .filter(|r| {
                    !(r.starts_with(b"$-1") || r.starts_with(b"_") || r.starts_with(b"*-1"))
                })
                .collect();
            if found.is_empty() {
                reply.null();
            } else {
                let pick = crate::ctx::now_us() as usize % found.len();
                reply.raw(found[pick]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(value_len(b"+OK\r\nx"), Some(5));
        assert_eq!(value_len(b"$3\r\nabc\r\n"), Some(9));
        assert_eq!(value_len(b"$3\r\nab"), None);
        assert_eq!(value_len(b"*2\r\n:1\r\n$-1\r\n"), Some(13));
        assert_eq!(value_len(b"%1\r\n+a\r\n_\r\n"), Some(11));
    }

    #[test]
    fn key_order() {
        let parts = vec![
            (1, b"*1\r\n$1\r\nb\r\n".to_vec()),
            (0, b"*2\r\n$1\r\na\r\n$-1\r\n".to_vec()),
        ];
        let mut out = Vec::new();
        merge(Merge::KeyOrder, &parts, &[0, 1, 0], Proto::Resp2, &mut out);
        assert_eq!(out, b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n");
    }
}
