//! Every input of the fuzzing corpus (fuzz/corpus/TARGET/), replayed through its target on
//! every test run: the corpus holds the seeds and what the long runs of docs/FUZZING.md found,
//! and a decoder that regresses on any of them fails here, in seconds, with no fuzzing build.
//!
//! The targets are compiled from fuzz/fuzz_targets/ as they are: this crate stands in for
//! `libfuzzer_sys`, whose `fuzz_target!` becomes a plain function. Fuzzing itself (new inputs,
//! coverage) is `.ci/fuzz` or `cargo fuzz run TARGET` (docs/FUZZING.md).

// `use libfuzzer_sys::fuzz_target;` in each target finds the macro below (and is then unused:
// an exported macro is also in scope by its place in the file).
extern crate self as libfuzzer_sys;

/// A fuzz target's body as a function of the input.
#[macro_export]
macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        pub fn run($data: &[u8]) $body
    };
}

#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/bundle.rs"]
mod bundle;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/carrier.rs"]
mod carrier;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/config.rs"]
mod config;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/contact_card.rs"]
mod contact_card;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/contact_request.rs"]
mod contact_request;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/device_link.rs"]
mod device_link;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/envelope.rs"]
mod envelope;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/grant.rs"]
mod grant;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/inner.rs"]
mod inner;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/jsonrpc.rs"]
mod jsonrpc;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/meet.rs"]
mod meet;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/membership_op.rs"]
mod membership_op;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/mesh_fragment.rs"]
mod mesh_fragment;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/mesh_router.rs"]
mod mesh_router;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/reconcile.rs"]
mod reconcile;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/revocation.rs"]
mod revocation;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/sync_codec.rs"]
mod sync_codec;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/sync_message.rs"]
mod sync_message;
#[allow(unused_attributes, unused_imports)]
#[path = "../../fuzz/fuzz_targets/welcome.rs"]
mod welcome;

/// A target: its body as a function of the input.
type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("bundle", bundle::run as Target),
    ("carrier", carrier::run as Target),
    ("config", config::run as Target),
    ("contact_card", contact_card::run as Target),
    ("contact_request", contact_request::run as Target),
    ("device_link", device_link::run as Target),
    ("envelope", envelope::run as Target),
    ("grant", grant::run as Target),
    ("inner", inner::run as Target),
    ("jsonrpc", jsonrpc::run as Target),
    ("meet", meet::run as Target),
    ("membership_op", membership_op::run as Target),
    ("mesh_fragment", mesh_fragment::run as Target),
    ("mesh_router", mesh_router::run as Target),
    ("reconcile", reconcile::run as Target),
    ("revocation", revocation::run as Target),
    ("sync_codec", sync_codec::run as Target),
    ("sync_message", sync_message::run as Target),
    ("welcome", welcome::run as Target),
];

#[test]
fn every_target_of_fuzz_is_replayed_here() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    on_disk.sort();
    let listed: Vec<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(listed, on_disk, "a target of fuzz/fuzz_targets/ is not listed in TARGETS");
}

#[test]
fn every_corpus_input_replays_without_a_panic() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut replayed = 0;
    for (name, run) in TARGETS {
        let Ok(entries) = std::fs::read_dir(corpus.join(name)) else { continue };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let input = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&input));
            assert!(outcome.is_ok(), "fuzz target {name} panicked on {}", path.display());
            replayed += 1;
        }
    }
    assert!(replayed >= 1_000, "only {replayed} corpus inputs found");
}
