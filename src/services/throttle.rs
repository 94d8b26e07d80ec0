//! Counting attempts per key in fixed windows, in bounded memory: the public pages' rate
//! limit per address, and failed logins per address and per account.
//!
//! Counts are kept per instance. They protect each instance; nothing correct depends on
//! them, so they need not be shared.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The key an address is counted under: an IPv4 address itself (also when it arrives
/// mapped into IPv6), an IPv6 address by its /64, the smallest block one subscriber is
/// usually given, so that walking through the addresses of one's own network counts as one.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

struct Entry {
    start: Instant,
    count: u32,
    /// Its place in the eviction order (see [`Counts::order`]).
    seq: u64,
}

struct Counts<K> {
    entries: HashMap<K, Entry>,
    /// Keys by the start of their window, oldest first: the one evicted when full.
    order: BTreeMap<u64, K>,
    next_seq: u64,
}

/// Counts per key in windows of a fixed length, holding at most `max_keys` keys: when a
/// new key comes and the table is full, the key whose window began longest ago goes.
pub struct WindowCounter<K> {
    window: Duration,
    max_keys: usize,
    counts: Mutex<Counts<K>>,
}

impl<K: Hash + Eq + Clone> WindowCounter<K> {
    pub fn new(window: Duration, max_keys: usize) -> Self {
        Self {
            window,
            max_keys: max_keys.max(1),
            counts: Mutex::new(Counts { entries: HashMap::new(), order: BTreeMap::new(), next_seq: 0 }),
        }
    }

    /// Counts one more for `key` and answers the count in its window, with the seconds
    /// until the window ends.
    pub fn hit(&self, key: &K, now: Instant) -> (u32, u64) {
        self.update(key, now, |count| *count = count.saturating_add(1))
    }

    /// The count of `key` in its window (zero when it has none), with the seconds until
    /// the window ends; counts nothing.
    pub fn peek(&self, key: &K, now: Instant) -> (u32, u64) {
        let Ok(counts) = self.counts.lock() else {
            return (0, 0);
        };
        match counts.entries.get(key) {
            Some(entry) if now.duration_since(entry.start) < self.window => (entry.count, self.left(entry, now)),
            _ => (0, 0),
        }
    }

    /// Takes back one count of `key` (an attempt that turned out not to count).
    pub fn undo(&self, key: &K) {
        if let Ok(mut counts) = self.counts.lock()
            && let Some(entry) = counts.entries.get_mut(key)
        {
            entry.count = entry.count.saturating_sub(1);
        }
    }

    /// Forgets `key` (a login that succeeded starts its account afresh).
    pub fn reset(&self, key: &K) {
        if let Ok(mut counts) = self.counts.lock()
            && let Some(entry) = counts.entries.remove(key)
        {
            counts.order.remove(&entry.seq);
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.counts.lock().map(|counts| counts.entries.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn left(&self, entry: &Entry, now: Instant) -> u64 {
        self.window.saturating_sub(now.duration_since(entry.start)).as_secs_f64().ceil().max(1.0) as u64
    }

    fn update(&self, key: &K, now: Instant, change: impl FnOnce(&mut u32)) -> (u32, u64) {
        // A poisoned lock means a panic elsewhere while counting: count nothing rather
        // than refuse everyone.
        let Ok(mut guard) = self.counts.lock() else {
            return (0, 0);
        };
        let counts = &mut *guard;
        let expired = counts.entries.get(key).is_some_and(|entry| now.duration_since(entry.start) >= self.window);
        if expired && let Some(entry) = counts.entries.remove(key) {
            counts.order.remove(&entry.seq);
        }
        if !counts.entries.contains_key(key) {
            while counts.entries.len() >= self.max_keys {
                let Some((_, oldest)) = counts.order.pop_first() else {
                    break;
                };
                counts.entries.remove(&oldest);
            }
            let seq = counts.next_seq;
            counts.next_seq += 1;
            counts.order.insert(seq, key.clone());
            counts.entries.insert(key.clone(), Entry { start: now, count: 0, seq });
        }
        let Some(entry) = counts.entries.get_mut(key) else {
            return (0, 0);
        };
        change(&mut entry.count);
        (entry.count, self.left(entry, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_of_one_64_share_a_key_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_eq!(ip_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(ip_key(a), ip_key(other));
        assert_eq!(ip_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(ip_key("192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn counts_restart_when_the_window_ends() {
        let counter = WindowCounter::new(Duration::from_secs(60), 10);
        let start = Instant::now();
        assert_eq!(counter.hit(&"a", start).0, 1);
        assert_eq!(counter.hit(&"a", start + Duration::from_secs(10)), (2, 50));
        assert_eq!(counter.peek(&"a", start + Duration::from_secs(59)).0, 2);
        assert_eq!(counter.peek(&"a", start + Duration::from_secs(60)).0, 0);
        assert_eq!(counter.hit(&"a", start + Duration::from_secs(61)).0, 1);
    }

    #[test]
    fn a_full_table_evicts_the_oldest_window_and_never_grows() {
        let counter = WindowCounter::new(Duration::from_secs(60), 3);
        let start = Instant::now();
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            counter.hit(key, start + Duration::from_secs(i as u64));
        }
        counter.hit(&"a", start + Duration::from_secs(5));
        counter.hit(&"d", start + Duration::from_secs(6));
        assert_eq!(counter.len(), 3);
        // "a" began first, so it went, though it was counted again since.
        assert_eq!(counter.peek(&"a", start + Duration::from_secs(7)).0, 0);
        assert_eq!(counter.peek(&"b", start + Duration::from_secs(7)).0, 1);
        for i in 0..1000 {
            counter.hit(&"x", start);
            counter.hit(&if i % 2 == 0 { "y" } else { "z" }, start);
        }
        assert_eq!(counter.len(), 3);
    }

    #[test]
    fn a_reset_forgets_the_key() {
        let counter = WindowCounter::new(Duration::from_secs(60), 3);
        let now = Instant::now();
        counter.hit(&"a", now);
        counter.hit(&"a", now);
        counter.reset(&"a");
        assert_eq!(counter.peek(&"a", now).0, 0);
        assert!(counter.is_empty());
    }
}
