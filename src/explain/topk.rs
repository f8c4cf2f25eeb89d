//! A bounded "top talkers" counter: the Space-Saving algorithm (Metwally,
//! Agrawal, El Abbadi, "Efficient computation of frequent and top-k
//! elements in data streams", 2005).
//!
//! It tracks at most `capacity` keys whatever the number of distinct keys
//! in the stream. When a new key arrives and the table is full, the key
//! with the smallest count is replaced and the newcomer inherits that
//! count as its possible overestimate (`error`). Every key whose true count
//! exceeds `total / capacity` is guaranteed to be in the table, and each
//! reported count is at most `error` above the truth.

use std::collections::{BTreeSet, HashMap};

/// Keys longer than this many bytes are cut (a host name is at most 255).
pub const MAX_KEY: usize = 255;

/// One reported key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    /// The key (cut at [`MAX_KEY`] bytes).
    pub key: String,
    /// Its count, possibly overestimated by up to `error`.
    pub count: u64,
    /// The largest possible overestimate (0: exact).
    pub error: u64,
}

/// Space-Saving top-K counter with a fixed capacity.
#[derive(Clone, Debug)]
pub struct TopK {
    capacity: usize,
    counts: HashMap<Box<str>, (u64, u64)>,
    by_count: BTreeSet<(u64, Box<str>)>,
    total: u64,
}

impl TopK {
    /// A counter that tracks at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        TopK {
            capacity: capacity.max(1),
            counts: HashMap::new(),
            by_count: BTreeSet::new(),
            total: 0,
        }
    }

    /// Counts one occurrence of `key`.
    pub fn add(&mut self, key: &str) {
        let key = cut(key);
        self.total += 1;
        if let Some((count, _)) = self.counts.get_mut(key) {
            let old = *count;
            *count += 1;
            let k: Box<str> = key.into();
            self.by_count.remove(&(old, k.clone()));
            self.by_count.insert((old + 1, k));
            return;
        }
        let k: Box<str> = key.into();
        if self.counts.len() < self.capacity {
            self.counts.insert(k.clone(), (1, 0));
            self.by_count.insert((1, k));
            return;
        }
        // Full: replace the smallest.
        if let Some((min, victim)) = self.by_count.pop_first() {
            self.counts.remove(&victim);
            self.counts.insert(k.clone(), (min + 1, min));
            self.by_count.insert((min + 1, k));
        }
    }

    /// Number of keys tracked now (never above the capacity).
    pub fn tracked(&self) -> usize {
        self.counts.len()
    }

    /// The capacity given to [`TopK::new`].
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Occurrences counted in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The `n` largest counts, largest first (ties by key).
    pub fn top(&self, n: usize) -> Vec<Counted> {
        let mut v: Vec<Counted> = self
            .by_count
            .iter()
            .rev()
            .take(n)
            .map(|(c, k)| Counted {
                key: k.to_string(),
                count: *c,
                error: self.counts.get(k).map_or(0, |e| e.1),
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        v
    }
}

fn cut(key: &str) -> &str {
    if key.len() <= MAX_KEY {
        return key;
    }
    let mut end = MAX_KEY;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_while_under_capacity() {
        let mut t = TopK::new(10);
        for k in ["a", "b", "a", "c", "a", "b"] {
            t.add(k);
        }
        let top = t.top(2);
        assert_eq!(top[0].key, "a");
        assert_eq!(top[0].count, 3);
        assert_eq!(top[0].error, 0);
        assert_eq!(top[1].key, "b");
        assert_eq!(t.total(), 6);
    }

    #[test]
    fn stays_bounded_and_keeps_heavy_hitters() {
        let mut t = TopK::new(16);
        for i in 0..100_000u32 {
            t.add("heavy");
            t.add(&format!("noise-{i}"));
            assert!(t.tracked() <= 16);
        }
        let top = t.top(1);
        assert_eq!(top[0].key, "heavy");
        assert!(top[0].count >= 100_000);
    }

    #[test]
    fn long_keys_are_cut_on_a_char_boundary() {
        let mut t = TopK::new(2);
        t.add(&"é".repeat(300));
        assert!(t.top(1)[0].key.len() <= MAX_KEY);
    }
}
