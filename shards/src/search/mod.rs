//! Secondary indexes over hashes (RediSearch's FT.* model): each shard indexes the hashes of its
//! own keys, in database 0, whose names start with one of an index's prefixes. Definitions are
//! the same on every shard (FT.CREATE runs on all of them); the data is per shard.
//!
//! Maintenance: the shard reports every key a write command touched ([`Indexes::touch`]), whole
//! database changes ([`Indexes::reset`]) and loads; a background cursor indexes the keys that
//! existed when an index was created ([`Indexes::step`]). Keys that vanish without a command
//! (expiry, eviction) are dropped when a query meets them (see `cmd::search`).

pub mod hnsw;
pub mod query;
pub mod schema;
pub mod vector;

use crate::keyspace::Db;
use crate::types::hash::Hash;
use crate::types::Value;
use crate::Result;
use query::Node;
use schema::{Definition, Field, Kind};
use std::collections::{BTreeMap, HashMap, HashSet};
use vector::VecStore;

type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// RediSearch's default English stop words.
pub const STOPWORDS: &[&str] = &[
    "a", "is", "the", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into",
    "it", "no", "not", "of", "on", "or", "such", "that", "their", "then", "there", "these", "they",
    "this", "to", "was", "will", "with",
];

/// The process's index definitions as [`Indexes::encode`] writes them, for the writers of RDB
/// files and replication payloads (which run outside the shards). Shard 0 publishes them
/// whenever they change; every shard holds the same definitions.
static PUBLISHED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// The definitions last published.
pub fn published() -> Vec<u8> {
    PUBLISHED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Publishes a set of definitions (see [`published`]).
pub fn publish(encoded: Vec<u8>) {
    *PUBLISHED.lock().unwrap_or_else(|e| e.into_inner()) = encoded;
}

/// Keys the background indexer visits per step and index.
/// (Small: a vector insert costs tens of µs, and the server yields between steps.)
pub const SCAN_STEP_KEYS: usize = 256;

/// One field's index data.
#[derive(Debug, Clone)]
enum FieldData {
    Text {
        /// term → doc → frequency.
        post: Map<String, Map<u32, u32>>,
        doc_terms: Map<u32, Vec<String>>,
    },
    Tag {
        map: Map<String, HashSet<u32, ahash::RandomState>>,
        doc_tags: Map<u32, Vec<String>>,
    },
    Numeric(Map<u32, f64>),
    Vector(VecStore),
}

impl FieldData {
    fn new(f: &Field) -> FieldData {
        match &f.kind {
            Kind::Text { .. } => FieldData::Text {
                post: Map::default(),
                doc_terms: Map::default(),
            },
            Kind::Tag { .. } => FieldData::Tag {
                map: Map::default(),
                doc_tags: Map::default(),
            },
            Kind::Numeric => FieldData::Numeric(Map::default()),
            Kind::Vector(p) => FieldData::Vector(VecStore::new(p.clone())),
        }
    }

    fn remove(&mut self, doc: u32) {
        match self {
            FieldData::Text { post, doc_terms } => {
                for t in doc_terms.remove(&doc).unwrap_or_default() {
                    if let Some(p) = post.get_mut(&t) {
                        p.remove(&doc);
                        if p.is_empty() {
                            post.remove(&t);
                        }
                    }
                }
            }
            FieldData::Tag { map, doc_tags } => {
                for t in doc_tags.remove(&doc).unwrap_or_default() {
                    if let Some(p) = map.get_mut(&t) {
                        p.remove(&doc);
                        if p.is_empty() {
                            map.remove(&t);
                        }
                    }
                }
            }
            FieldData::Numeric(m) => {
                m.remove(&doc);
            }
            FieldData::Vector(v) => v.remove(doc),
        }
    }
}

/// A field's parsed value, ready to index.
enum Parsed {
    Terms(Vec<String>),
    Tags(Vec<String>),
    Num(f64),
    Vec(Vec<f32>),
}

/// Splits text into lower-case terms, stop words dropped.
pub fn tokenize(text: &[u8], stop: Option<&[String]>) -> Vec<String> {
    String::from_utf8_lossy(text)
        .split(|c: char| c.is_whitespace() || ",.<>{}[]\"':;!@#$%^&*()-+=~|/\\?".contains(c))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !is_stopword(w, stop))
        .collect()
}

fn is_stopword(w: &str, stop: Option<&[String]>) -> bool {
    match stop {
        Some(list) => list.iter().any(|s| s == w),
        None => STOPWORDS.contains(&w),
    }
}

fn tag_norm(t: &str, case_sensitive: bool) -> String {
    if case_sensitive {
        t.to_string()
    } else {
        t.to_lowercase()
    }
}

/// One index on one shard.
#[derive(Debug, Clone)]
pub struct Index {
    pub def: Definition,
    /// The FT.CREATE arguments that define it (FT.ALTER's fields appended): what persistence
    /// and replication carry.
    pub args: Vec<Vec<u8>>,
    keys: Vec<Option<Vec<u8>>>,
    ids: Map<Vec<u8>, u32>,
    free: Vec<u32>,
    data: Vec<FieldData>,
    /// The background indexer's cursor over database 0 (`None` once done), with how many
    /// keys it visited and how many there were when it started.
    pub scan: Option<u64>,
    pub scanned: u64,
    pub scan_total: u64,
    /// Hashes that could not be indexed (a malformed vector).
    pub failures: u64,
    /// Documents indexed so far (max doc id in RediSearch's terms).
    pub max_doc_id: u64,
}

impl Index {
    /// A new, empty index; its background scan starts unless SKIPINITIALSCAN.
    pub fn new(def: Definition, args: Vec<Vec<u8>>) -> Index {
        let data = def.fields.iter().map(FieldData::new).collect();
        Index {
            scan: (!def.skip_initial_scan).then_some(u64::MAX),
            def,
            args,
            keys: Vec::new(),
            ids: Map::default(),
            free: Vec::new(),
            data,
            scanned: 0,
            scan_total: 0,
            failures: 0,
            max_doc_id: 0,
        }
    }

    /// Adds fields (FT.ALTER … SCHEMA ADD); existing documents are indexed again by a scan.
    pub fn add_fields(&mut self, fields: Vec<Field>, args: &[&[u8]]) {
        for f in fields {
            self.data.push(FieldData::new(&f));
            self.def.fields.push(f);
        }
        if !self.args.iter().any(|a| a.eq_ignore_ascii_case(b"SCHEMA")) {
            self.args.push(b"SCHEMA".to_vec());
        }
        self.args.extend(args.iter().map(|a| a.to_vec()));
        self.scan = Some(u64::MAX);
        self.scanned = 0;
    }

    pub fn num_docs(&self) -> usize {
        self.ids.len()
    }

    /// Distinct text terms.
    pub fn num_terms(&self) -> usize {
        self.data
            .iter()
            .map(|d| match d {
                FieldData::Text { post, .. } => post.len(),
                _ => 0,
            })
            .sum()
    }

    /// (term, doc) records over text and tag fields.
    pub fn num_records(&self) -> usize {
        self.data
            .iter()
            .map(|d| match d {
                FieldData::Text { doc_terms, .. } => doc_terms.values().map(Vec::len).sum(),
                FieldData::Tag { doc_tags, .. } => doc_tags.values().map(Vec::len).sum(),
                FieldData::Numeric(m) => m.len(),
                FieldData::Vector(v) => v.len(),
            })
            .sum()
    }

    /// Bytes the vector fields take.
    pub fn vector_memory(&self) -> usize {
        self.data
            .iter()
            .map(|d| match d {
                FieldData::Vector(v) => v.memory(),
                _ => 0,
            })
            .sum()
    }

    /// Whether `key` falls under the index's prefixes.
    pub fn covers(&self, key: &[u8]) -> bool {
        self.def.prefixes.is_empty() || self.def.prefixes.iter().any(|p| key.starts_with(p))
    }

    /// The schema field a query names (by its alias), with its position.
    pub fn field(&self, alias: &str) -> Option<(usize, &Field)> {
        self.def
            .fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.alias == alias)
    }

    pub fn key_of(&self, doc: u32) -> Option<&[u8]> {
        self.keys.get(doc as usize)?.as_deref()
    }

    /// Indexes `key` as it is now: a hash under the prefixes is (re)indexed, anything else
    /// is dropped.
    pub fn update(&mut self, key: &[u8], value: Option<&Value>) {
        match value {
            Some(Value::Hash(h)) if self.covers(key) => self.index_hash(key, h),
            _ => self.remove_key(key),
        }
    }

    fn index_hash(&mut self, key: &[u8], h: &Hash) {
        let mut parsed = Vec::with_capacity(self.def.fields.len());
        for f in &self.def.fields {
            let Some(v) = h.get(f.name.as_bytes()) else {
                parsed.push(None);
                continue;
            };
            let p = match &f.kind {
                Kind::Text { .. } => Parsed::Terms(tokenize(v, self.def.stopwords.as_deref())),
                Kind::Tag {
                    sep,
                    case_sensitive,
                } => Parsed::Tags(
                    String::from_utf8_lossy(v)
                        .split(*sep as char)
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(|t| tag_norm(t, *case_sensitive))
                        .collect(),
                ),
                Kind::Numeric => match crate::util::parse_f64(v) {
                    Some(n) => Parsed::Num(n),
                    None => {
                        self.failures += 1;
                        self.remove_key(key);
                        return;
                    }
                },
                Kind::Vector(p) => match vector::parse_vector(p, v) {
                    Ok(x) => Parsed::Vec(x),
                    Err(_) => {
                        self.failures += 1;
                        self.remove_key(key);
                        return;
                    }
                },
            };
            parsed.push(Some(p));
        }
        let doc = match self.ids.get(key) {
            Some(&d) => {
                for d2 in &mut self.data {
                    d2.remove(d);
                }
                d
            }
            None => {
                let d = match self.free.pop() {
                    Some(d) => {
                        self.keys[d as usize] = Some(key.to_vec());
                        d
                    }
                    None => {
                        self.keys.push(Some(key.to_vec()));
                        (self.keys.len() - 1) as u32
                    }
                };
                self.ids.insert(key.to_vec(), d);
                d
            }
        };
        self.max_doc_id += 1;
        for (data, p) in self.data.iter_mut().zip(parsed) {
            match (data, p) {
                (FieldData::Text { post, doc_terms }, Some(Parsed::Terms(ts))) => {
                    let mut distinct = Vec::new();
                    for t in ts {
                        let e = post.entry(t.clone()).or_default().entry(doc).or_insert(0);
                        if *e == 0 {
                            distinct.push(t);
                        }
                        *e += 1;
                    }
                    doc_terms.insert(doc, distinct);
                }
                (FieldData::Tag { map, doc_tags }, Some(Parsed::Tags(ts))) => {
                    for t in &ts {
                        map.entry(t.clone()).or_default().insert(doc);
                    }
                    doc_tags.insert(doc, ts);
                }
                (FieldData::Numeric(m), Some(Parsed::Num(n))) => {
                    m.insert(doc, n);
                }
                (FieldData::Vector(v), Some(Parsed::Vec(x))) => v.insert(doc, x),
                _ => {}
            }
        }
    }

    /// Drops `key`'s document, if indexed.
    pub fn remove_key(&mut self, key: &[u8]) {
        let Some(doc) = self.ids.remove(key) else {
            return;
        };
        for d in &mut self.data {
            d.remove(doc);
        }
        self.keys[doc as usize] = None;
        self.free.push(doc);
    }

    /// Forgets every document (FLUSHALL) and scans again.
    pub fn clear(&mut self) {
        let fresh = Index::new(self.def.clone(), std::mem::take(&mut self.args));
        let failures = self.failures;
        *self = fresh;
        self.failures = failures;
        self.scan = Some(u64::MAX);
    }

    /// Every indexed document, in id order.
    pub fn all_docs(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.ids.values().copied().collect();
        v.sort_unstable();
        v
    }

    /// The documents a filter matches, in id order; text matches add to `scores` (tf·idf).
    pub fn eval(&self, n: &Node, scores: &mut Map<u32, f64>) -> Result<Vec<u32>> {
        Ok(match n {
            Node::All => self.all_docs(),
            Node::Term {
                fields,
                word,
                prefix,
            } => {
                if !prefix && is_stopword(word, self.def.stopwords.as_deref()) {
                    return Ok(self.all_docs());
                }
                self.term(fields.as_deref(), word, *prefix, scores)?
            }
            Node::Tag { field, values } => {
                let (i, f) = self.need(field)?;
                let (FieldData::Tag { map, .. }, Kind::Tag { case_sensitive, .. }) =
                    (&self.data[i], &f.kind)
                else {
                    return Err(crate::Error::Other(format!(
                        "Field `{field}` is not a TAG field"
                    )));
                };
                let mut out = HashSet::<u32, ahash::RandomState>::default();
                for (v, prefix) in values {
                    let v = tag_norm(v, *case_sensitive);
                    if *prefix {
                        for (t, docs) in map.iter().filter(|(t, _)| t.starts_with(&v)) {
                            let _ = t;
                            out.extend(docs.iter().copied());
                        }
                    } else if let Some(docs) = map.get(&v) {
                        out.extend(docs.iter().copied());
                    }
                }
                sorted(out.into_iter().collect())
            }
            Node::Range {
                field,
                lo,
                lo_in,
                hi,
                hi_in,
            } => {
                let (i, _) = self.need(field)?;
                let FieldData::Numeric(m) = &self.data[i] else {
                    return Err(crate::Error::Other(format!(
                        "Field `{field}` is not a NUMERIC field"
                    )));
                };
                let ok = |x: f64| {
                    (if *lo_in { x >= *lo } else { x > *lo })
                        && (if *hi_in { x <= *hi } else { x < *hi })
                };
                sorted(m.iter().filter(|(_, &x)| ok(x)).map(|(&d, _)| d).collect())
            }
            Node::And(parts) => {
                let mut acc: Option<Vec<u32>> = None;
                for p in parts {
                    let s = self.eval(p, scores)?;
                    acc = Some(match acc {
                        None => s,
                        Some(a) => intersect(&a, &s),
                    });
                }
                acc.unwrap_or_default()
            }
            Node::Or(parts) => {
                let mut out = Vec::new();
                for p in parts {
                    out.extend(self.eval(p, scores)?);
                }
                sorted(out)
            }
            Node::Not(inner) => {
                let s = self.eval(inner, &mut Map::default())?;
                let all = self.all_docs();
                all.into_iter()
                    .filter(|d| s.binary_search(d).is_err())
                    .collect()
            }
        })
    }

    fn need(&self, alias: &str) -> Result<(usize, &Field)> {
        self.field(alias)
            .ok_or_else(|| crate::Error::Other(format!("Unknown field `{alias}`")))
    }

    fn term(
        &self,
        fields: Option<&[String]>,
        word: &str,
        prefix: bool,
        scores: &mut Map<u32, f64>,
    ) -> Result<Vec<u32>> {
        let n = self.ids.len().max(1) as f64;
        let mut out = Vec::new();
        for (i, f) in self.def.fields.iter().enumerate() {
            if let Some(names) = fields {
                if !names.contains(&f.alias) {
                    continue;
                }
            }
            let (FieldData::Text { post, .. }, Kind::Text { weight, .. }) =
                (&self.data[i], &f.kind)
            else {
                if fields.is_some() && !matches!(f.kind, Kind::Text { .. }) {
                    return Err(crate::Error::Other(format!(
                        "Field `{}` is not a TEXT field",
                        f.alias
                    )));
                }
                continue;
            };
            let mut add = |docs: &Map<u32, u32>| {
                let idf = (1.0 + n / docs.len().max(1) as f64).log2();
                for (&d, &tf) in docs {
                    *scores.entry(d).or_insert(0.0) += tf as f64 * idf * weight;
                    out.push(d);
                }
            };
            if prefix {
                for (_, docs) in post.iter().filter(|(t, _)| t.starts_with(word)) {
                    add(docs);
                }
            } else if let Some(docs) = post.get(word) {
                add(docs);
            }
        }
        if let Some(names) = fields {
            if let Some(missing) = names.iter().find(|a| self.field(a).is_none()) {
                return Err(crate::Error::Other(format!("Unknown field `{missing}`")));
            }
        }
        Ok(sorted(out))
    }

    /// The `k` nearest documents to `blob` in vector field `field`, among `among` (every
    /// document when `None`), nearest first, as (distance, doc).
    pub fn knn(
        &self,
        field: &str,
        blob: &[u8],
        k: usize,
        ef: Option<usize>,
        among: Option<&[u32]>,
    ) -> Result<Vec<(f32, u32)>> {
        let (i, _) = self.need(field)?;
        let FieldData::Vector(store) = &self.data[i] else {
            return Err(crate::Error::Other(format!(
                "Field `{field}` is not a VECTOR field"
            )));
        };
        let q = store.query_vector(blob)?;
        Ok(match among {
            None => store.knn(&q, k, ef, true, &|_| true),
            Some(docs) => store.knn(&q, k, ef, false, &|d| docs.binary_search(&d).is_ok()),
        })
    }
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Every index of one shard, by name.
#[derive(Debug, Clone, Default)]
pub struct Indexes {
    pub map: BTreeMap<String, Index>,
    /// Definitions only, no data: set while an AOF is replayed at load (the shard that serves
    /// indexes its keys afterwards), so replaying builds no index.
    pub dormant: bool,
}

impl Indexes {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A key of database 0 changed (or may have): every index looks at it again.
    pub fn touch(&mut self, db0: &Db, key: &[u8], now_ms: u64) {
        if self.dormant {
            return;
        }
        let value = db0.peek(key, now_ms).map(|i| &i.value);
        for idx in self.map.values_mut() {
            idx.update(key, value);
        }
    }

    /// Database 0 changed wholesale (FLUSHALL, SWAPDB, a load): every index starts over.
    pub fn reset(&mut self) {
        if self.dormant {
            return;
        }
        for idx in self.map.values_mut() {
            idx.clear();
        }
    }

    /// Whether a background scan is in progress.
    pub fn scanning(&self) -> bool {
        !self.dormant && self.map.values().any(|i| i.scan.is_some())
    }

    /// One slice of background indexing: each scanning index visits up to `SCAN_STEP_KEYS`
    /// keys of database 0.
    pub fn step(&mut self, db0: &mut Db, now_ms: u64) {
        if self.dormant {
            return;
        }
        let total = db0.len() as u64;
        for idx in self.map.values_mut() {
            let Some(cursor) = idx.scan else {
                continue;
            };
            if cursor == u64::MAX {
                idx.scan_total = total;
                idx.scanned = 0;
            }
            let mut n = 0;
            let next = db0.scan(cursor, SCAN_STEP_KEYS, now_ms, |k, item| {
                n += 1;
                idx.update(k, Some(&item.value));
            });
            idx.scanned += n;
            idx.scan = (next != 0).then_some(next);
        }
    }

    /// The definitions, as the FT.CREATE arguments that make them (for the RDB aux field).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for idx in self.map.values() {
            let argv: Vec<&[u8]> = idx.args.iter().map(|a| a.as_slice()).collect();
            crate::resp::encode_command(&argv, &mut out);
        }
        out
    }

    /// Restores definitions from [`Indexes::encode`]'s bytes (each index scans its keys).
    /// Malformed input is skipped.
    pub fn decode(&mut self, mut bytes: &[u8]) {
        let mut ranges = Vec::new();
        let mut scratch = Vec::new();
        let limits = crate::resp::ParseLimits {
            bulk_len_max: usize::MAX,
        };
        while !bytes.is_empty() {
            let Ok(crate::resp::Parsed::Command { consumed }) =
                crate::resp::parse_command(bytes, &mut ranges, &mut scratch, limits)
            else {
                return;
            };
            let frame = &bytes[..consumed];
            let argv: Vec<&[u8]> = ranges.iter().map(|r| &frame[r.clone()]).collect();
            if let Ok(def) = schema::parse_create(&argv) {
                let args = argv.iter().map(|a| a.to_vec()).collect();
                let mut idx = Index::new(def, args);
                // The data is not saved: a restored index always scans its keys.
                idx.scan = Some(u64::MAX);
                self.map.insert(idx.def.name.clone(), idx);
            }
            bytes = &bytes[consumed..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::Entry;

    fn create(s: &str) -> Index {
        let a: Vec<Vec<u8>> = s.split(' ').map(|w| w.as_bytes().to_vec()).collect();
        let r: Vec<&[u8]> = a.iter().map(|x| x.as_slice()).collect();
        Index::new(schema::parse_create(&r).unwrap(), a.clone())
    }

    fn hash(pairs: &[(&str, &str)]) -> Value {
        let mut h = Hash::new();
        for (f, v) in pairs {
            h.set(
                f.as_bytes(),
                v.as_bytes(),
                crate::types::hash::Limits {
                    max_entries: 512,
                    max_value: 64,
                },
            );
        }
        Value::Hash(h)
    }

    fn query(idx: &Index, q: &str) -> Vec<String> {
        let parsed = query::parse(q.as_bytes(), &HashMap::new()).unwrap();
        let mut docs: Vec<String> = idx
            .eval(&parsed.filter, &mut Map::default())
            .unwrap()
            .iter()
            .map(|&d| String::from_utf8_lossy(idx.key_of(d).unwrap()).into_owned())
            .collect();
        docs.sort();
        docs
    }

    #[test]
    fn indexes_text_tags_and_numbers() {
        let mut idx = create("FT.CREATE i PREFIX 1 doc: SCHEMA body TEXT color TAG n NUMERIC");
        idx.update(
            b"doc:1",
            Some(&hash(&[
                ("body", "Hello big World"),
                ("color", "red,Blue"),
                ("n", "5"),
            ])),
        );
        idx.update(
            b"doc:2",
            Some(&hash(&[
                ("body", "hello there"),
                ("color", "green"),
                ("n", "10"),
            ])),
        );
        idx.update(b"other", Some(&hash(&[("body", "hello")])));
        idx.update(
            b"doc:3",
            Some(&Value::Str(crate::types::Str::from_bytes(b"x"))),
        );
        assert_eq!(query(&idx, "hello"), ["doc:1", "doc:2"]);
        assert_eq!(query(&idx, "hello world"), ["doc:1"]);
        assert_eq!(query(&idx, "hel*"), ["doc:1", "doc:2"]);
        assert_eq!(query(&idx, "@color:{blue | green}"), ["doc:1", "doc:2"]);
        assert_eq!(query(&idx, "@n:[(5 +inf]"), ["doc:2"]);
        assert_eq!(query(&idx, "@n:[-inf 5]"), ["doc:1"]);
        assert_eq!(query(&idx, "-@color:{red}"), ["doc:2"]);
        assert_eq!(query(&idx, "world | there"), ["doc:1", "doc:2"]);
        assert_eq!(query(&idx, "@body:(big)"), ["doc:1"]);
        idx.update(b"doc:1", Some(&hash(&[("body", "bye")])));
        assert_eq!(query(&idx, "hello"), ["doc:2"]);
        assert_eq!(query(&idx, "@color:{red}"), Vec::<String>::new());
        idx.update(b"doc:2", None);
        assert_eq!(query(&idx, "*"), ["doc:1"]);
        let parsed = query::parse(b"@nope:{x}", &HashMap::new()).unwrap();
        assert!(idx.eval(&parsed.filter, &mut Map::default()).is_err());
    }

    #[test]
    fn a_malformed_vector_is_a_failure_not_a_document() {
        let mut idx =
            create("FT.CREATE i SCHEMA v VECTOR FLAT 6 TYPE FLOAT32 DIM 2 DISTANCE_METRIC L2");
        idx.update(b"a", Some(&hash(&[("v", "[1, 2]")])));
        idx.update(b"b", Some(&hash(&[("v", "xyz")])));
        assert_eq!((idx.num_docs(), idx.failures), (1, 1));
        let r = idx.knn("v", b"[1, 2]", 5, None, None).unwrap();
        assert_eq!(r, vec![(0.0, 0)]);
        assert!(idx.knn("v", b"[1]", 5, None, None).is_err());
    }

    #[test]
    fn background_scan_and_persistence_round_trip() {
        let mut db = Db::default();
        for i in 0..5000 {
            db.insert(
                format!("doc:{i}").as_bytes(),
                Entry::new(hash(&[("t", "x")])),
            );
        }
        let mut all = Indexes::default();
        all.map
            .insert("i".into(), create("FT.CREATE i PREFIX 1 doc: SCHEMA t TAG"));
        let mut steps = 0;
        while all.scanning() {
            all.step(&mut db, 0);
            steps += 1;
        }
        assert!(steps >= 3);
        assert_eq!(all.map["i"].num_docs(), 5000);
        let mut back = Indexes::default();
        back.decode(&all.encode());
        assert_eq!(back.map["i"].def, all.map["i"].def);
        back.decode(b"*1\r\n$3\r\nbad\r\ngarbage");
        assert_eq!(back.map.len(), 1);
    }
}
