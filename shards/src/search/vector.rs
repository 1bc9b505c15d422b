//! The vectors of one VECTOR field of one index on one shard: exact (FLAT) or HNSW search.
//! Vectors sit in one flat `f32` array by slot; a document's new vector takes a new slot and its
//! old slot becomes a tombstone, and the store compacts itself (rebuilding the graph) when
//! tombstones outnumber live vectors.

use super::hnsw::{Hnsw, Near};
use super::schema::{Algo, Metric, VectorParams};
use crate::{Error, Result};
use std::collections::HashMap;

/// Slot marker of a deleted vector.
const DEAD: u32 = u32::MAX;
/// Tombstones tolerated before a compaction is considered.
const DEAD_MIN: usize = 1024;

#[derive(Debug, Clone)]
pub struct VecStore {
    pub p: VectorParams,
    data: Vec<f32>,
    /// Document of each slot (`DEAD` when deleted).
    slot_doc: Vec<u32>,
    doc_slot: HashMap<u32, u32, ahash::RandomState>,
    graph: Option<Hnsw>,
    dead: usize,
}

/// Parses a vector: a little-endian FLOAT32/FLOAT64 blob of exactly `dim` values, or (an
/// extension) a text array such as `[0.1, 0.2]`.
pub fn parse_vector(p: &VectorParams, blob: &[u8]) -> Result<Vec<f32>> {
    let width = if p.f64 { 8 } else { 4 };
    // A text array first: a blob that reads as exactly `dim` numbers in brackets is text (a
    // binary vector made only of such characters is not a plausible embedding).
    if let Some(inner) = std::str::from_utf8(blob)
        .ok()
        .map(str::trim)
        .and_then(|s| s.strip_prefix('['))
        .and_then(|s| s.strip_suffix(']'))
    {
        let v: Option<Vec<f32>> = inner
            .split(',')
            .map(|x| x.trim().parse::<f32>().ok().filter(|f| f.is_finite()))
            .collect();
        if let Some(v) = v.filter(|v| v.len() == p.dim) {
            return Ok(v);
        }
    }
    if blob.len() == p.dim * width {
        let v: Vec<f32> = if p.f64 {
            blob.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect()
        } else {
            blob.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                .collect()
        };
        return Ok(v);
    }
    Err(Error::Other(format!(
        "Error parsing vector similarity query: query vector blob size ({}) does not match index's expected size ({}).",
        blob.len(),
        p.dim * width
    )))
}

/// Lanes of the distance loops: independent partial sums let the compiler use SIMD (one
/// running float sum cannot be reordered, so it would not vectorise).
const LANES: usize = 8;

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, p), q) in acc.iter_mut().zip(x).zip(y) {
            *s += p * q;
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, p), q) in acc.iter_mut().zip(x).zip(y) {
            let d = p - q;
            *s += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Most floats an index reserves when it is created (16 MiB).
const RESERVE_MAX: usize = 1 << 22;

impl VecStore {
    pub fn new(p: VectorParams) -> VecStore {
        let graph = (p.algo == Algo::Hnsw).then(|| Hnsw::new(p.m, p.ef_construction));
        // INITIAL_CAP is a hint from the client: at most RESERVE_MAX floats are reserved up
        // front (INITIAL_CAP 1048576 DIM 32768 would otherwise ask for 128 GiB at once).
        let cap = p.initial_cap.min(RESERVE_MAX / p.dim.max(1));
        VecStore {
            data: Vec::with_capacity(cap * p.dim),
            slot_doc: Vec::with_capacity(cap),
            doc_slot: HashMap::default(),
            graph,
            dead: 0,
            p,
        }
    }

    pub fn len(&self) -> usize {
        self.doc_slot.len()
    }

    pub fn is_empty(&self) -> bool {
        self.doc_slot.is_empty()
    }

    /// Bytes the vectors and the graph take.
    pub fn memory(&self) -> usize {
        self.data.capacity() * 4
            + self.slot_doc.capacity() * 4
            + self.doc_slot.capacity() * 12
            + self.graph.as_ref().map_or(0, Hnsw::memory)
    }

    fn at(&self, slot: u32) -> &[f32] {
        let d = self.p.dim;
        &self.data[slot as usize * d..(slot as usize + 1) * d]
    }

    fn dist(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.p.metric {
            Metric::L2 => l2(a, b),
            Metric::Ip | Metric::Cosine => 1.0 - dot(a, b),
        }
    }

    /// Prepares a query vector (normalised for COSINE).
    pub fn query_vector(&self, blob: &[u8]) -> Result<Vec<f32>> {
        let mut v = parse_vector(&self.p, blob)?;
        if self.p.metric == Metric::Cosine {
            normalize(&mut v);
        }
        Ok(v)
    }

    /// Stores `doc`'s vector (replacing any it had).
    pub fn insert(&mut self, doc: u32, mut v: Vec<f32>) {
        self.remove(doc);
        if self.p.metric == Metric::Cosine {
            normalize(&mut v);
        }
        let slot = self.slot_doc.len() as u32;
        self.data.extend_from_slice(&v);
        self.slot_doc.push(doc);
        self.doc_slot.insert(doc, slot);
        if let Some(mut g) = self.graph.take() {
            g.insert(slot, &|a, b| self.dist(self.at(a), self.at(b)));
            self.graph = Some(g);
        }
    }

    /// Forgets `doc`'s vector.
    pub fn remove(&mut self, doc: u32) {
        let Some(slot) = self.doc_slot.remove(&doc) else {
            return;
        };
        self.slot_doc[slot as usize] = DEAD;
        if let Some(g) = &mut self.graph {
            g.delete(slot);
        }
        self.dead += 1;
        if self.dead > DEAD_MIN && self.dead > self.doc_slot.len() {
            self.compact();
        }
    }

    /// Drops the tombstones: live vectors move to new slots and the graph is rebuilt.
    fn compact(&mut self) {
        let old = std::mem::replace(self, VecStore::new(self.p.clone()));
        for (slot, &doc) in old.slot_doc.iter().enumerate() {
            if doc != DEAD {
                let v = old.at(slot as u32).to_vec();
                // Already normalised: insert without normalising twice is harmless for COSINE.
                self.insert(doc, v);
            }
        }
    }

    /// The `k` nearest documents to `q` among those `keep` accepts, nearest first, as
    /// (distance, doc). `all` says that `keep` accepts every document (pure KNN: the graph
    /// answers); otherwise the candidates are searched exactly.
    pub fn knn(
        &self,
        q: &[f32],
        k: usize,
        ef: Option<usize>,
        all: bool,
        keep: &dyn Fn(u32) -> bool,
    ) -> Vec<(f32, u32)> {
        if k == 0 {
            return Vec::new();
        }
        if let (Some(g), true) = (&self.graph, all) {
            let ef = ef.unwrap_or(self.p.ef_runtime).max(k);
            return g
                .search(k, ef, &|s| self.dist(q, self.at(s)), &|_| true)
                .into_iter()
                .map(|n| (n.0, self.slot_doc[n.1 as usize]))
                .collect();
        }
        let mut heap: std::collections::BinaryHeap<Near> = std::collections::BinaryHeap::new();
        for (&doc, &slot) in &self.doc_slot {
            if !keep(doc) {
                continue;
            }
            let d = self.dist(q, self.at(slot));
            if heap.len() < k {
                heap.push(Near(d, doc));
            } else if heap.peek().is_some_and(|w| Near(d, doc) < *w) {
                heap.pop();
                heap.push(Near(d, doc));
            }
        }
        heap.into_sorted_vec()
            .into_iter()
            .map(|n| (n.0, n.1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(algo: Algo, metric: Metric, dim: usize) -> VectorParams {
        VectorParams {
            algo,
            f64: false,
            dim,
            metric,
            m: 16,
            ef_construction: 200,
            ef_runtime: 10,
            epsilon: 0.01,
            initial_cap: 0,
            block_size: 1024,
        }
    }

    #[test]
    fn initial_capacity_is_only_a_bounded_hint() {
        let mut p = params(Algo::Flat, Metric::L2, crate::search::schema::DIM_MAX);
        p.initial_cap = 1 << 30;
        let s = VecStore::new(p);
        assert!(s.data.capacity() <= RESERVE_MAX + crate::search::schema::DIM_MAX);
        assert!(s.slot_doc.capacity() <= RESERVE_MAX);
    }

    #[test]
    fn blobs_and_text_arrays() {
        let p = params(Algo::Flat, Metric::L2, 2);
        let blob: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(parse_vector(&p, &blob).unwrap(), vec![1.0, 2.0]);
        assert_eq!(parse_vector(&p, b"[1, 2.5]").unwrap(), vec![1.0, 2.5]);
        assert!(parse_vector(&p, b"[1, 2, 3]").is_err());
        assert!(parse_vector(&p, b"abc").is_err());
    }

    #[test]
    fn distances_as_redisearch_reports_them() {
        for (metric, want) in [
            (Metric::L2, 2.0f32),
            (Metric::Ip, 1.0),
            (Metric::Cosine, 1.0),
        ] {
            let mut s = VecStore::new(params(Algo::Flat, metric, 2));
            s.insert(7, vec![1.0, 0.0]);
            let q = s.query_vector(b"[0, 1]").unwrap();
            let r = s.knn(&q, 1, None, true, &|_| true);
            assert_eq!(r, vec![(want, 7)], "{metric:?}");
        }
    }

    #[test]
    fn updates_and_deletes_survive_compaction() {
        let mut s = VecStore::new(params(Algo::Hnsw, Metric::L2, 1));
        for round in 0..3 {
            for d in 0..1000u32 {
                s.insert(d, vec![(d + round) as f32]);
            }
        }
        for d in 0..500u32 {
            s.remove(d);
        }
        assert_eq!(s.len(), 500);
        // Doc d holds d + 2 after the last round; docs below 500 are gone.
        let r = s.knn(&[502.0], 1, Some(50), true, &|_| true);
        assert_eq!(r, vec![(0.0, 500)]);
        let r = s.knn(&[3.0], 1, None, false, &|_| true);
        assert_eq!(r, vec![(499.0 * 499.0, 500)]);
    }
}
