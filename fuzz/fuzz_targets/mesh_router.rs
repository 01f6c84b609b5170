//! The mesh router fed a stream of fragments by a hostile neighbour (on two links, with ticks
//! between): it never panics, holds no more of the neighbours' bytes than their quotas and no
//! more than its cache in all.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::mesh::{Router, RouterConfig};

const MTU: usize = 185;

fuzz_target!(|data: &[u8]| {
    let config = RouterConfig { per_link_bytes: 16 * 1024, cache_bytes: 48 * 1024, ..RouterConfig::default() };
    let (per_link, cache) = (config.per_link_bytes, config.cache_bytes);
    let mut router = Router::new(config);
    let _ = router.set_interests([[7u8; 16]]);
    let _ = router.link_up(1, MTU, false, [1; 16], 0);
    let _ = router.link_up(2, MTU, true, [2; 16], 0);
    let mut now = 0u64;
    // Each step: 0 is a tick of a second; otherwise the link (odd: the first, even: the
    // second), a length byte and the fragment.
    let mut rest = data;
    while let Some((&head, tail)) = rest.split_first() {
        if head == 0 {
            now += 1_000;
            let _ = router.tick(now, [3; 16]);
            rest = tail;
            continue;
        }
        let Some((&len, tail)) = tail.split_first() else { break };
        let (fragment, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        let link = if head % 2 == 1 { 1 } else { 2 };
        let _ = router.fragment(link, fragment, now);
        let stats = router.stats();
        assert!(stats.carried_bytes <= cache, "the cache stays within its total");
        assert!(stats.carried_bytes <= 2 * per_link, "each neighbour within its quota");
    }
});
