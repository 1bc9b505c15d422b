//! A compact HNSW graph (Malkov & Yashunin, 2016) over vectors that live elsewhere: nodes are
//! slot numbers of a [`super::vector::VecStore`], and every distance is asked of that store.
//! Deletions are tombstones: a deleted node still routes searches but is never returned; the
//! store rebuilds the graph once tombstones outnumber live nodes.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

/// A distance with a total order (NaN sorts last), for the heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near(pub f32, pub u32);

impl Eq for Near {}
impl PartialOrd for Near {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Near {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// The graph. `links[node][level]` are a node's neighbours on a level.
#[derive(Debug, Clone)]
pub struct Hnsw {
    m: usize,
    ef_construction: usize,
    level_mult: f64,
    links: Vec<Vec<Vec<u32>>>,
    deleted: Vec<bool>,
    entry: Option<u32>,
    rng: u64,
}

impl Hnsw {
    pub fn new(m: usize, ef_construction: usize) -> Hnsw {
        let m = m.clamp(2, 512);
        Hnsw {
            m,
            ef_construction: ef_construction.clamp(1, 4096),
            level_mult: 1.0 / (m as f64).ln(),
            links: Vec::new(),
            deleted: Vec::new(),
            entry: None,
            rng: 0x2545_F491_4F6C_DD1D,
        }
    }

    /// Nodes in the graph, deleted ones included.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Bytes the links take (for FT.INFO's vector index size).
    pub fn memory(&self) -> usize {
        self.links
            .iter()
            .map(|l| 24 + l.iter().map(|x| 24 + x.capacity() * 4).sum::<usize>())
            .sum()
    }

    fn random_level(&mut self) -> usize {
        // xorshift64*: the graph's shape needs no better randomness.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = ((r >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln() * self.level_mult) as usize).min(16)
    }

    fn max_links(&self, level: usize) -> usize {
        if level == 0 {
            self.m * 2
        } else {
            self.m
        }
    }

    /// Marks `node` deleted: it is never returned again.
    pub fn delete(&mut self, node: u32) {
        if let Some(d) = self.deleted.get_mut(node as usize) {
            *d = true;
        }
    }

    /// Adds node `node` (the next slot: nodes are added in order), with `dist(a, b)` between
    /// stored vectors.
    pub fn insert(&mut self, node: u32, dist: &impl Fn(u32, u32) -> f32) {
        debug_assert_eq!(node as usize, self.links.len());
        let level = self.random_level();
        self.links.push(vec![Vec::new(); level + 1]);
        self.deleted.push(false);
        let Some(entry) = self.entry else {
            self.entry = Some(node);
            return;
        };
        let top = self.links[entry as usize].len() - 1;
        let dq = |x: u32| dist(node, x);
        let mut cur = Near(dq(entry), entry);
        for l in (level + 1..=top).rev() {
            cur = self.greedy(cur, l, &dq);
        }
        let mut eps = vec![cur];
        for l in (0..=level.min(top)).rev() {
            let found = self.search_layer(&eps, self.ef_construction, l, &dq);
            let chosen = self.select(&found, self.m, dist);
            self.links[node as usize][l] = chosen.iter().map(|n| n.1).collect();
            for n in &chosen {
                self.link_back(n.1, node, l, dist);
            }
            eps = found;
        }
        if level > top {
            self.entry = Some(node);
        }
    }

    /// Adds `node` to `to`'s links on `level`, pruning them back to the limit.
    fn link_back(&mut self, to: u32, node: u32, level: usize, dist: &impl Fn(u32, u32) -> f32) {
        let max = self.max_links(level);
        let Some(links) = self.links[to as usize].get_mut(level) else {
            return;
        };
        links.push(node);
        if links.len() <= max {
            return;
        }
        let mut cands: Vec<Near> = links.iter().map(|&x| Near(dist(to, x), x)).collect();
        cands.sort();
        let kept = self.select(&cands, max, dist);
        self.links[to as usize][level] = kept.iter().map(|n| n.1).collect();
    }

    /// The neighbour-selection heuristic: take candidates nearest first, skipping one that is
    /// nearer to an already chosen neighbour than to the base; fill up with the skipped.
    fn select(&self, sorted: &[Near], m: usize, dist: &impl Fn(u32, u32) -> f32) -> Vec<Near> {
        let mut chosen: Vec<Near> = Vec::with_capacity(m);
        let mut skipped = Vec::new();
        for &c in sorted {
            if chosen.len() >= m {
                break;
            }
            if chosen.iter().all(|r| dist(c.1, r.1) > c.0) {
                chosen.push(c);
            } else {
                skipped.push(c);
            }
        }
        for c in skipped {
            if chosen.len() >= m {
                break;
            }
            chosen.push(c);
        }
        chosen
    }

    fn greedy(&self, mut cur: Near, level: usize, dq: &impl Fn(u32) -> f32) -> Near {
        loop {
            let mut moved = false;
            if let Some(links) = self.links[cur.1 as usize].get(level) {
                for &n in links {
                    let d = dq(n);
                    if d < cur.0 {
                        cur = Near(d, n);
                        moved = true;
                    }
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// The `ef` nearest nodes found on `level` from `eps`, nearest first (deleted included:
    /// they route).
    fn search_layer(
        &self,
        eps: &[Near],
        ef: usize,
        level: usize,
        dq: &impl Fn(u32) -> f32,
    ) -> Vec<Near> {
        let mut seen: HashSet<u32, ahash::RandomState> = eps.iter().map(|n| n.1).collect();
        let mut cands: BinaryHeap<std::cmp::Reverse<Near>> =
            eps.iter().map(|&n| std::cmp::Reverse(n)).collect();
        let mut best: BinaryHeap<Near> = eps.iter().copied().collect();
        while let Some(std::cmp::Reverse(c)) = cands.pop() {
            if best.len() >= ef && best.peek().is_some_and(|w| c.0 > w.0) {
                break;
            }
            let Some(links) = self.links[c.1 as usize].get(level) else {
                continue;
            };
            for &n in links {
                if !seen.insert(n) {
                    continue;
                }
                let d = dq(n);
                if best.len() < ef || best.peek().is_some_and(|w| d < w.0) {
                    cands.push(std::cmp::Reverse(Near(d, n)));
                    best.push(Near(d, n));
                    if best.len() > ef {
                        best.pop();
                    }
                }
            }
        }
        best.into_sorted_vec()
    }

    /// The `k` nearest live nodes to the query whose distance to a node is `dq`, searching
    /// with `ef` candidates; `keep` filters nodes (hybrid queries), nearest first.
    pub fn search(
        &self,
        k: usize,
        ef: usize,
        dq: &impl Fn(u32) -> f32,
        keep: &impl Fn(u32) -> bool,
    ) -> Vec<Near> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let top = self.links[entry as usize].len() - 1;
        let mut cur = Near(dq(entry), entry);
        for l in (1..=top).rev() {
            cur = self.greedy(cur, l, dq);
        }
        let found = self.search_layer(&[cur], ef.max(k), 0, dq);
        found
            .into_iter()
            .filter(|n| !self.deleted[n.1 as usize] && keep(n.1))
            .take(k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nearest_in_random_points() {
        let mut rng = crate::rng::Rng::new(7);
        let dim = 8;
        let n = 2000;
        let pts: Vec<f32> = (0..n * dim)
            .map(|_| (rng.next_u64() % 1000) as f32 / 1000.0)
            .collect();
        let d2 = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        let at = |i: u32| &pts[i as usize * dim..(i as usize + 1) * dim];
        let mut g = Hnsw::new(16, 200);
        for i in 0..n as u32 {
            g.insert(i, &|a, b| d2(at(a), at(b)));
        }
        g.delete(3);
        let mut hits = 0;
        for q in 0..50u32 {
            let query: Vec<f32> = at(q * 7).iter().map(|x| x + 0.001).collect();
            let got = g.search(10, 64, &|x| d2(&query, at(x)), &|_| true);
            let mut exact: Vec<Near> = (0..n as u32)
                .filter(|&i| i != 3)
                .map(|i| Near(d2(&query, at(i)), i))
                .collect();
            exact.sort();
            let truth: HashSet<u32> = exact[..10].iter().map(|x| x.1).collect();
            hits += got.iter().filter(|x| truth.contains(&x.1)).count();
            assert!(got.iter().all(|x| x.1 != 3));
        }
        assert!(
            hits as f64 / 500.0 >= 0.95,
            "recall {}",
            hits as f64 / 500.0
        );
    }
}
