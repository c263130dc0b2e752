//! The one scratch buffer cuDNN's convolutions share on a device, and the per-shape cache of
//! what cuDNN chose for each convolution. Both generic over what they hold, so the growth
//! policy and the "found once per shape" rule run in the default build's tests with host
//! buffers; the cuDNN code holds device buffers and descriptors in them.

use std::collections::HashMap;
use std::hash::Hash;

/// Capacities are multiples of this (fewer, larger allocations).
const GRANULE: usize = 1 << 20;

/// The capacity to grow to when `needed` bytes do not fit in `current`, or `None` when they
/// do: at least 1.5 times the current capacity (a run of slightly larger shapes
/// re-allocates a few times, not at each one), rounded up to a whole MiB (saturating at
/// `usize::MAX`).
pub(crate) fn grown_capacity(current: usize, needed: usize) -> Option<usize> {
    if needed <= current {
        return None;
    }
    let target = needed.max(current.saturating_add(current / 2));
    Some(target.div_ceil(GRANULE).saturating_mul(GRANULE))
}

/// One buffer reused by every call, replaced by a larger one when a call needs more (the
/// old one is dropped first, so peak memory is the new size, not old + new). Never shrinks.
pub(crate) struct Workspace<B> {
    buf: Option<B>,
    capacity: usize,
    allocations: usize,
}

impl<B> Default for Workspace<B> {
    fn default() -> Self {
        Self {
            buf: None,
            capacity: 0,
            allocations: 0,
        }
    }
}

impl<B> Workspace<B> {
    /// A buffer of at least `needed` bytes (`None` for 0: cuDNN takes a null workspace),
    /// from `alloc(capacity)` when the current one is too small.
    pub(crate) fn at_least<E>(
        &mut self,
        needed: usize,
        alloc: impl FnOnce(usize) -> Result<B, E>,
    ) -> Result<Option<&mut B>, E> {
        if needed == 0 {
            return Ok(None);
        }
        if let Some(cap) = grown_capacity(self.capacity, needed) {
            self.buf = None;
            self.capacity = 0;
            self.buf = Some(alloc(cap)?);
            self.capacity = cap;
            self.allocations += 1;
        }
        Ok(self.buf.as_mut())
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many buffers were allocated so far.
    #[cfg(test)]
    pub(crate) fn allocations(&self) -> usize {
        self.allocations
    }
}

/// What was found for each key (a convolution's shape, dtype and math mode): computed by
/// the first call with that key, then reused.
pub(crate) struct PerShape<K, V> {
    map: HashMap<K, V>,
}

impl<K, V> Default for PerShape<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash, V> PerShape<K, V> {
    /// The entry for `key`, made by `make` if there is none yet (an error is not cached:
    /// the next call tries again).
    pub(crate) fn get_or_try_insert<E>(
        &mut self,
        key: K,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<&V, E> {
        use std::collections::hash_map::Entry;
        match self.map.entry(key) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => Ok(e.insert(make()?)),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn capacity_grows_by_half_at_least_in_whole_mib_and_only_when_needed() {
        assert_eq!(grown_capacity(0, 0), None);
        assert_eq!(grown_capacity(0, 1), Some(MIB));
        assert_eq!(grown_capacity(MIB, MIB), None);
        assert_eq!(grown_capacity(4 * MIB, 3 * MIB), None);
        // Slightly more than the current capacity: 1.5x, not just what was asked.
        assert_eq!(grown_capacity(4 * MIB, 4 * MIB + 1), Some(6 * MIB));
        // Far more: what was asked, rounded up.
        assert_eq!(grown_capacity(4 * MIB, 100 * MIB + 5), Some(101 * MIB));
        // Saturates instead of overflowing (no allocator gives that much anyway).
        assert_eq!(grown_capacity(usize::MAX - 1, usize::MAX), Some(usize::MAX));
    }

    #[test]
    fn one_buffer_is_reused_and_replaced_only_by_a_larger_one() {
        let mut ws: Workspace<Vec<u8>> = Workspace::default();
        let alloc = |n: usize| -> Result<Vec<u8>, ()> { Ok(vec![0; n]) };
        assert!(
            ws.at_least(0, alloc).unwrap().is_none(),
            "no workspace for 0 bytes"
        );
        assert_eq!(ws.allocations(), 0);
        for needed in [1000, 10, MIB, 512] {
            assert!(ws.at_least(needed, alloc).unwrap().unwrap().len() >= needed);
        }
        assert_eq!((ws.allocations(), ws.capacity()), (1, MIB));
        let buf = ws.at_least(MIB + 1, alloc).unwrap().unwrap();
        assert_eq!(buf.len(), 2 * MIB);
        assert_eq!(ws.allocations(), 2);
        // A failed allocation leaves no buffer behind, and the next call tries again.
        assert!(ws
            .at_least(10 * MIB, |_| Err::<Vec<u8>, _>("out of memory"))
            .is_err());
        assert_eq!(ws.capacity(), 0);
        assert_eq!(ws.at_least(5, alloc).unwrap().unwrap().len(), MIB);
    }

    #[test]
    fn each_shape_is_looked_up_once() {
        let mut cache: PerShape<(usize, usize), String> = PerShape::default();
        let mut calls = 0;
        for key in [(1, 2), (3, 4), (1, 2), (1, 2), (3, 4)] {
            let v = cache
                .get_or_try_insert(key, || {
                    calls += 1;
                    Ok::<_, ()>(format!("{key:?}"))
                })
                .unwrap();
            assert_eq!(v, &format!("{key:?}"));
        }
        assert_eq!((calls, cache.len()), (2, 2));
        // An error is not cached.
        assert!(cache
            .get_or_try_insert((5, 6), || Err("no algorithm"))
            .is_err());
        assert_eq!(cache.len(), 2);
    }
}
