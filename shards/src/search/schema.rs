//! Index definitions: what FT.CREATE (and FT.ALTER … SCHEMA ADD) declare, parsed from their
//! arguments. A definition is kept with the arguments that made it, so persistence and
//! replication carry the arguments and every shard parses the same definition.

use crate::util::eq_ic;
use crate::{Error, Result};

/// The vector index algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Flat,
    Hnsw,
}

/// How vector distances are measured, as RediSearch reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Squared euclidean distance.
    L2,
    /// 1 - dot product.
    Ip,
    /// 1 - cosine similarity.
    Cosine,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "L2",
            Metric::Ip => "IP",
            Metric::Cosine => "COSINE",
        }
    }
}

/// A VECTOR field's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorParams {
    pub algo: Algo,
    /// FLOAT64 (else FLOAT32) blobs; stored as f32 either way.
    pub f64: bool,
    pub dim: usize,
    pub metric: Metric,
    pub m: usize,
    pub ef_construction: usize,
    pub ef_runtime: usize,
    pub epsilon: f64,
    pub initial_cap: usize,
    pub block_size: usize,
}

/// What kind of field, with its options.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Text { weight: f64, nostem: bool },
    Tag { sep: u8, case_sensitive: bool },
    Numeric,
    Vector(VectorParams),
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Text { .. } => "TEXT",
            Kind::Tag { .. } => "TAG",
            Kind::Numeric => "NUMERIC",
            Kind::Vector(_) => "VECTOR",
        }
    }
}

/// One schema field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The hash field it reads.
    pub name: String,
    /// The name queries use (AS), the hash field's name by default.
    pub alias: String,
    pub kind: Kind,
    pub sortable: bool,
    pub noindex: bool,
}

/// One index's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub name: String,
    /// Key prefixes; empty means every key.
    pub prefixes: Vec<Vec<u8>>,
    pub stopwords: Option<Vec<String>>,
    pub skip_initial_scan: bool,
    pub score: f64,
    pub fields: Vec<Field>,
}

/// Field count bound (RediSearch allows 1024 attributes).
pub const FIELDS_MAX: usize = 1024;
/// Largest vector dimension accepted.
pub const DIM_MAX: usize = 32768;

fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

fn num(arg: Option<&&[u8]>, what: &str) -> Result<i64> {
    arg.and_then(|a| crate::util::parse_i64(a))
        .ok_or_else(|| Error::Other(format!("Bad arguments for {what}: expected a number")))
}

/// Parses `FT.CREATE index [ON HASH|JSON] [PREFIX n p…] [FILTER e] [LANGUAGE l] … SCHEMA …`
/// (`argv[0]` is the command name).
pub fn parse_create(argv: &[&[u8]]) -> Result<Definition> {
    let name = argv.get(1).map(|a| text(a)).ok_or(Error::Syntax)?;
    let mut def = Definition {
        name,
        prefixes: Vec::new(),
        stopwords: None,
        skip_initial_scan: false,
        score: 1.0,
        fields: Vec::new(),
    };
    let mut i = 2;
    while i < argv.len() {
        let a = argv[i];
        i += 1;
        if eq_ic(a, "SCHEMA") {
            def.fields = parse_fields(&argv[i..], &[])?;
            if def.fields.is_empty() {
                return Err(Error::Other("Fields arguments are missing".into()));
            }
            return Ok(def);
        } else if eq_ic(a, "ON") {
            match argv.get(i) {
                Some(t) if eq_ic(t, "HASH") => {}
                Some(t) if eq_ic(t, "JSON") => {
                    return Err(Error::Other(
                        "JSON indexes are not supported by shardis (ON HASH only)".into(),
                    ))
                }
                _ => return Err(Error::Other("Unknown index type".into())),
            }
            i += 1;
        } else if eq_ic(a, "PREFIX") {
            let n = num(argv.get(i), "PREFIX")?;
            if n < 0 || i as i64 + n >= argv.len() as i64 {
                return Err(Error::Other(
                    "Bad arguments for PREFIX: Expected an argument, but none provided".into(),
                ));
            }
            for p in &argv[i + 1..i + 1 + n as usize] {
                def.prefixes.push(p.to_vec());
            }
            i += 1 + n as usize;
        } else if eq_ic(a, "STOPWORDS") {
            let n = num(argv.get(i), "STOPWORDS")?;
            if n < 0 || i as i64 + n >= argv.len() as i64 {
                return Err(Error::Other(
                    "Bad arguments for STOPWORDS: Expected an argument, but none provided".into(),
                ));
            }
            def.stopwords = Some(
                argv[i + 1..i + 1 + n as usize]
                    .iter()
                    .map(|w| text(w).to_lowercase())
                    .collect(),
            );
            i += 1 + n as usize;
        } else if eq_ic(a, "FILTER") {
            return Err(Error::Other(
                "FILTER is not supported by shardis yet".into(),
            ));
        } else if eq_ic(a, "SCORE") {
            def.score = argv
                .get(i)
                .and_then(|s| crate::util::parse_f64(s))
                .filter(|s| (0.0..=1.0).contains(s))
                .ok_or_else(|| Error::Other("Invalid score".into()))?;
            i += 1;
        } else if eq_ic(a, "LANGUAGE")
            || eq_ic(a, "LANGUAGE_FIELD")
            || eq_ic(a, "SCORE_FIELD")
            || eq_ic(a, "PAYLOAD_FIELD")
            || eq_ic(a, "TEMPORARY")
        {
            // Accepted and ignored (no stemming; documents are scored alike).
            i += 1;
        } else if eq_ic(a, "SKIPINITIALSCAN") {
            def.skip_initial_scan = true;
        } else if ["MAXTEXTFIELDS", "NOOFFSETS", "NOHL", "NOFIELDS", "NOFREQS"]
            .iter()
            .any(|w| eq_ic(a, w))
        {
        } else {
            return Err(Error::Other(format!("Unknown argument `{}`", text(a))));
        }
    }
    Err(Error::Other("No schema found".into()))
}

/// Parses schema fields (after `SCHEMA`); `existing` are the index's fields so far, for the
/// duplicate check of FT.ALTER.
pub fn parse_fields(args: &[&[u8]], existing: &[Field]) -> Result<Vec<Field>> {
    let mut fields: Vec<Field> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let name = text(args[i]);
        i += 1;
        let mut alias = name.clone();
        if args.get(i).is_some_and(|a| eq_ic(a, "AS")) {
            alias = args
                .get(i + 1)
                .map(|a| text(a))
                .ok_or_else(|| Error::Other(format!("Field `{name}` does not have a type")))?;
            i += 2;
        }
        let Some(ty) = args.get(i) else {
            return Err(Error::Other(format!("Field `{name}` does not have a type")));
        };
        i += 1;
        let mut kind = if eq_ic(ty, "TEXT") {
            Kind::Text {
                weight: 1.0,
                nostem: false,
            }
        } else if eq_ic(ty, "TAG") {
            Kind::Tag {
                sep: b',',
                case_sensitive: false,
            }
        } else if eq_ic(ty, "NUMERIC") {
            Kind::Numeric
        } else if eq_ic(ty, "VECTOR") {
            let (p, used) = parse_vector(&args[i..], &name)?;
            i += used;
            Kind::Vector(p)
        } else {
            return Err(Error::Other(format!(
                "Invalid field type for field `{name}`"
            )));
        };
        let (mut sortable, mut noindex) = (false, false);
        // Field options, in any order.
        while let Some(a) = args.get(i) {
            match (&mut kind, a) {
                (_, a) if eq_ic(a, "SORTABLE") => sortable = true,
                (_, a) if eq_ic(a, "UNF") && sortable => {}
                (_, a) if eq_ic(a, "NOINDEX") => noindex = true,
                (_, a) if eq_ic(a, "INDEXMISSING") || eq_ic(a, "INDEXEMPTY") => {}
                (Kind::Text { weight, .. }, a) if eq_ic(a, "WEIGHT") => {
                    *weight = args
                        .get(i + 1)
                        .and_then(|w| crate::util::parse_f64(w))
                        .ok_or_else(|| Error::Other("Bad arguments for WEIGHT".into()))?;
                    i += 1;
                }
                (Kind::Text { nostem, .. }, a) if eq_ic(a, "NOSTEM") => *nostem = true,
                (Kind::Text { .. }, a) if eq_ic(a, "WITHSUFFIXTRIE") => {}
                (Kind::Text { .. }, a) if eq_ic(a, "PHONETIC") => i += 1,
                (Kind::Tag { sep, .. }, a) if eq_ic(a, "SEPARATOR") => {
                    let s = args.get(i + 1).copied().unwrap_or(b"");
                    if s.len() != 1 {
                        return Err(Error::Other(
                            "Tag separator must be a single character".into(),
                        ));
                    }
                    *sep = s[0];
                    i += 1;
                }
                (Kind::Tag { case_sensitive, .. }, a) if eq_ic(a, "CASESENSITIVE") => {
                    *case_sensitive = true
                }
                (Kind::Tag { .. }, a) if eq_ic(a, "WITHSUFFIXTRIE") => {}
                _ => break,
            }
            i += 1;
        }
        if matches!(kind, Kind::Vector(_)) && sortable {
            return Err(Error::Other(format!("Field `{name}` can't be sortable")));
        }
        let dup = |f: &Field| f.alias == alias || f.name == name && f.alias == name;
        if fields.iter().chain(existing).any(dup) {
            return Err(Error::Other(format!("Duplicate field in schema - {alias}")));
        }
        if fields.len() + existing.len() >= FIELDS_MAX {
            return Err(Error::Other("Schema is limited to 1024 fields".into()));
        }
        fields.push(Field {
            name,
            alias,
            kind,
            sortable,
            noindex,
        });
    }
    Ok(fields)
}

/// `HNSW|FLAT n attr value …` of a VECTOR field; returns the parameters and arguments used.
fn parse_vector(args: &[&[u8]], field: &str) -> Result<(VectorParams, usize)> {
    let bad = |what: &str| {
        Error::Other(format!(
            "Bad arguments for vector similarity {what} in field `{field}`"
        ))
    };
    let algo = match args.first() {
        Some(a) if eq_ic(a, "HNSW") => Algo::Hnsw,
        Some(a) if eq_ic(a, "FLAT") => Algo::Flat,
        _ => {
            return Err(Error::Other(format!(
            "Bad arguments for vector similarity algorithm: unknown algorithm in field `{field}`"
        )))
        }
    };
    let n = args
        .get(1)
        .and_then(|a| crate::util::parse_i64(a))
        .filter(|&n| n >= 0 && n % 2 == 0 && (n as usize) <= args.len().saturating_sub(2))
        .ok_or_else(|| bad("number of parameters"))? as usize;
    let mut p = VectorParams {
        algo,
        f64: false,
        dim: 0,
        metric: Metric::L2,
        m: 16,
        ef_construction: 200,
        ef_runtime: 10,
        epsilon: 0.01,
        initial_cap: 0,
        block_size: 1024,
    };
    let (mut ty, mut metric) = (false, false);
    for pair in args[2..2 + n].chunks(2) {
        let (k, v) = (pair[0], pair[1]);
        let int = |lo: i64, hi: i64, what: &str| {
            crate::util::parse_i64(v)
                .filter(|x| (lo..=hi).contains(x))
                .map(|x| x as usize)
                .ok_or_else(|| bad(what))
        };
        if eq_ic(k, "TYPE") {
            p.f64 = if eq_ic(v, "FLOAT32") {
                false
            } else if eq_ic(v, "FLOAT64") {
                true
            } else {
                return Err(bad("vector type"));
            };
            ty = true;
        } else if eq_ic(k, "DIM") {
            p.dim = int(1, DIM_MAX as i64, "vector dimension")?;
        } else if eq_ic(k, "DISTANCE_METRIC") {
            p.metric = if eq_ic(v, "L2") {
                Metric::L2
            } else if eq_ic(v, "IP") {
                Metric::Ip
            } else if eq_ic(v, "COSINE") {
                Metric::Cosine
            } else {
                return Err(bad("metric"));
            };
            metric = true;
        } else if eq_ic(k, "INITIAL_CAP") {
            p.initial_cap = int(0, 1 << 30, "initial cap")?;
        } else if eq_ic(k, "BLOCK_SIZE") {
            p.block_size = int(1, 1 << 30, "block size")?;
        } else if eq_ic(k, "M") && algo == Algo::Hnsw {
            p.m = int(1, 512, "M")?;
        } else if eq_ic(k, "EF_CONSTRUCTION") && algo == Algo::Hnsw {
            p.ef_construction = int(1, 4096, "efConstruction")?;
        } else if eq_ic(k, "EF_RUNTIME") && algo == Algo::Hnsw {
            p.ef_runtime = int(1, 1 << 20, "efRuntime")?;
        } else if eq_ic(k, "EPSILON") && algo == Algo::Hnsw {
            p.epsilon = crate::util::parse_f64(v)
                .filter(|e| *e > 0.0)
                .ok_or_else(|| bad("epsilon"))?;
        } else {
            return Err(Error::Other(format!(
                "Bad arguments for vector similarity {} index: Unknown argument `{}` in field `{field}`",
                if algo == Algo::Hnsw { "HNSW" } else { "FLAT" },
                text(k)
            )));
        }
    }
    let algo_name = if algo == Algo::Hnsw { "HNSW" } else { "FLAT" };
    for (set, what) in [
        (ty, "TYPE"),
        (p.dim > 0, "DIM"),
        (metric, "DISTANCE_METRIC"),
    ] {
        if !set {
            return Err(Error::Other(format!(
                "Missing mandatory parameter: cannot create {algo_name} index without specifying {what} argument"
            )));
        }
    }
    Ok((p, 2 + n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|w| w.as_bytes().to_vec()).collect()
    }

    fn parse(s: &str) -> Result<Definition> {
        let a = argv(s);
        let r: Vec<&[u8]> = a.iter().map(|x| x.as_slice()).collect();
        parse_create(&r)
    }

    #[test]
    fn parses_a_full_schema() {
        let d = parse("FT.CREATE idx ON HASH PREFIX 2 doc: item: SCHEMA title TEXT WEIGHT 2 SORTABLE tag AS t TAG SEPARATOR | CASESENSITIVE n NUMERIC SORTABLE v VECTOR HNSW 10 TYPE FLOAT32 DIM 4 DISTANCE_METRIC COSINE M 8 EF_RUNTIME 50").unwrap();
        assert_eq!(d.prefixes, vec![b"doc:".to_vec(), b"item:".to_vec()]);
        assert_eq!(d.fields.len(), 4);
        assert_eq!(d.fields[1].alias, "t");
        assert_eq!(
            d.fields[1].kind,
            Kind::Tag {
                sep: b'|',
                case_sensitive: true
            }
        );
        let Kind::Vector(p) = &d.fields[3].kind else {
            panic!()
        };
        assert_eq!(
            (p.dim, p.m, p.ef_runtime, p.metric),
            (4, 8, 50, Metric::Cosine)
        );
    }

    #[test]
    fn rejects_bad_schemas() {
        assert!(parse("FT.CREATE idx ON JSON SCHEMA a TEXT").is_err());
        assert!(parse("FT.CREATE idx SCHEMA v VECTOR HNSW 4 TYPE FLOAT32 DIM 4").is_err());
        assert!(parse("FT.CREATE idx SCHEMA v VECTOR HNSW 7 TYPE FLOAT32 DIM 4").is_err());
        assert!(parse("FT.CREATE idx SCHEMA a TEXT a TAG").is_err());
        assert!(parse("FT.CREATE idx PREFIX 5 a SCHEMA a TEXT").is_err());
        assert!(parse("FT.CREATE idx SCHEMA a").is_err());
        assert!(parse("FT.CREATE idx SCHEMA").is_err());
    }
}
