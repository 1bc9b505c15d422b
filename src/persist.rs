//! Where a shard's files live and what they are called: RDB snapshots
//! (`dump-shard-<i>-of-<n>.rdb` beside `dbfilename`) and AOF directories (a Redis-7-style
//! multi-part AOF per shard, `<appenddirname>/shard-<i>-of-<n>/` with its own manifest).

use std::path::{Path, PathBuf};

/// The RDB file of shard `i` of `n`: `dbfilename` with `-shard-<i>-of-<n>` before its extension.
pub fn shard_rdb_name(dbfilename: &str, i: usize, n: usize) -> String {
    let (stem, ext) = match dbfilename.rfind('.') {
        Some(p) if p > 0 => (&dbfilename[..p], &dbfilename[p..]),
        _ => (dbfilename, ""),
    };
    format!("{stem}-shard-{i}-of-{n}{ext}")
}

/// The shard count of a shard RDB file name made by [`shard_rdb_name`], with its index.
pub fn parse_shard_rdb_name(dbfilename: &str, name: &str) -> Option<(usize, usize)> {
    let (stem, ext) = match dbfilename.rfind('.') {
        Some(p) if p > 0 => (&dbfilename[..p], &dbfilename[p..]),
        _ => (dbfilename, ""),
    };
    let mid = name.strip_prefix(stem)?.strip_suffix(ext)?;
    let rest = mid.strip_prefix("-shard-")?;
    let (i, n) = rest.split_once("-of-")?;
    let (i, n) = (i.parse().ok()?, n.parse().ok()?);
    (i < n).then_some((i, n))
}

/// The shard counts for which `dir` holds a complete set of shard RDB files, newest set first.
pub fn rdb_sets(dir: &Path, dbfilename: &str) -> Vec<usize> {
    let mut found: std::collections::HashMap<usize, (Vec<bool>, std::time::SystemTime)> =
        Default::default();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((i, n)) = parse_shard_rdb_name(dbfilename, &name) else {
            continue;
        };
        let mtime = e
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        let slot = found
            .entry(n)
            .or_insert_with(|| (vec![false; n], std::time::UNIX_EPOCH));
        slot.0[i] = true;
        slot.1 = slot.1.max(mtime);
    }
    let mut sets: Vec<(usize, std::time::SystemTime)> = found
        .into_iter()
        .filter(|(_, (have, _))| have.iter().all(|&h| h))
        .map(|(n, (_, t))| (n, t))
        .collect();
    sets.sort_by_key(|s| std::cmp::Reverse(s.1));
    sets.into_iter().map(|(n, _)| n).collect()
}

/// The AOF directory of shard `i` of `n`.
pub fn shard_aof_dir(dir: &Path, appenddirname: &str, i: usize, n: usize) -> PathBuf {
    dir.join(appenddirname).join(format!("shard-{i}-of-{n}"))
}

/// The shard counts for which `<dir>/<appenddirname>` holds AOF directories with manifests.
pub fn aof_sets(dir: &Path, appenddirname: &str, appendfilename: &str) -> Vec<usize> {
    let mut counts: std::collections::HashMap<usize, Vec<bool>> = Default::default();
    let Ok(rd) = std::fs::read_dir(dir.join(appenddirname)) else {
        return Vec::new();
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("shard-") else {
            continue;
        };
        let Some((i, n)) = rest.split_once("-of-") else {
            continue;
        };
        let (Ok(i), Ok(n)) = (i.parse::<usize>(), n.parse::<usize>()) else {
            continue;
        };
        if i >= n || !e.path().join(manifest_name(appendfilename)).exists() {
            continue;
        }
        counts.entry(n).or_insert_with(|| vec![false; n])[i] = true;
    }
    let mut v: Vec<usize> = counts
        .into_iter()
        .filter(|(_, h)| h.iter().all(|&x| x))
        .map(|(n, _)| n)
        .collect();
    v.sort();
    v
}

pub fn manifest_name(appendfilename: &str) -> String {
    format!("{appendfilename}.manifest")
}

/// One file of an AOF manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    pub name: String,
    pub seq: u64,
    /// `b` base, `h` history, `i` incremental.
    pub kind: char,
}

/// A Redis 7 AOF manifest: a base file and incremental files, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub base: Option<ManifestFile>,
    pub incrs: Vec<ManifestFile>,
}

impl Manifest {
    /// Parses a manifest (`file <name> seq <n> type <b|h|i>` lines; `#` comments).
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let mut m = Manifest::default();
        for (no, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let mut name = None;
            let mut seq = None;
            let mut kind = None;
            let mut it = words.chunks(2);
            for kv in it.by_ref() {
                match kv {
                    ["file", v] => name = Some(v.to_string()),
                    ["seq", v] => seq = v.parse::<u64>().ok(),
                    ["type", v] if v.len() == 1 => kind = v.chars().next(),
                    [_, _] => {}
                    _ => return Err(format!("invalid manifest line {}: {line}", no + 1)),
                }
            }
            let (Some(name), Some(seq), Some(kind)) = (name, seq, kind) else {
                return Err(format!("invalid manifest line {}: {line}", no + 1));
            };
            if name.contains('/') {
                return Err(format!("invalid file name in manifest line {}", no + 1));
            }
            let f = ManifestFile { name, seq, kind };
            match kind {
                'b' => m.base = Some(f),
                'i' => m.incrs.push(f),
                'h' => {}
                _ => return Err(format!("invalid file type in manifest line {}", no + 1)),
            }
        }
        Ok(m)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for f in self.base.iter().chain(&self.incrs) {
            s.push_str(&format!("file {} seq {} type {}\n", f.name, f.seq, f.kind));
        }
        s
    }

    /// The next incremental file's sequence number.
    pub fn next_incr_seq(&self) -> u64 {
        self.incrs.iter().map(|f| f.seq).max().unwrap_or(0) + 1
    }

    pub fn next_base_seq(&self) -> u64 {
        self.base.as_ref().map_or(0, |f| f.seq) + 1
    }
}

pub fn base_name(appendfilename: &str, seq: u64) -> String {
    format!("{appendfilename}.{seq}.base.rdb")
}

pub fn incr_name(appendfilename: &str, seq: u64) -> String {
    format!("{appendfilename}.{seq}.incr.aof")
}

/// The temporary name a file is written under before it is renamed to `path`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `data` to `path` atomically: a temporary file beside it, fsynced, renamed over it,
/// and the directory fsynced.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = tmp_path(path);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Fsyncs the directory holding `path` (so a rename in it is durable).
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        std::fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_rdb_names_round_trip() {
        assert_eq!(shard_rdb_name("dump.rdb", 0, 2), "dump-shard-0-of-2.rdb");
        assert_eq!(shard_rdb_name("data", 3, 4), "data-shard-3-of-4");
        assert_eq!(
            parse_shard_rdb_name("dump.rdb", "dump-shard-1-of-2.rdb"),
            Some((1, 2))
        );
        assert_eq!(
            parse_shard_rdb_name("dump.rdb", "dump-shard-2-of-2.rdb"),
            None
        );
        assert_eq!(parse_shard_rdb_name("dump.rdb", "dump.rdb"), None);
        assert_eq!(
            parse_shard_rdb_name("data", "data-shard-0-of-1"),
            Some((0, 1))
        );
    }

    #[test]
    fn manifest_round_trips_and_rejects_garbage() {
        let text = "file appendonly.aof.1.base.rdb seq 1 type b\n\
                    file appendonly.aof.1.incr.aof seq 1 type i\n\
                    file appendonly.aof.2.incr.aof seq 2 type i\n";
        let m = Manifest::parse(text).unwrap();
        assert_eq!(m.render(), text);
        assert_eq!(m.next_incr_seq(), 3);
        assert!(Manifest::parse("file x seq\n").is_err());
        assert!(Manifest::parse("file ../x seq 1 type b\n").is_err());
        assert!(Manifest::parse("file x seq 1 type z\n").is_err());
    }
}
