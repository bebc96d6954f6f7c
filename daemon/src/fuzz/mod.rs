//! Fuzz targets: properties that must hold for any input, run first on a corpus of seeds kept
//! in the repository (`daemon/fuzz-corpus/<target>/`), then on random mutations of those seeds
//! for a bounded time.
//!
//! cargo-fuzz needs a nightly toolchain, which these machines do not have; these targets run on
//! proptest instead, which shrinks a failing input to a small one and prints it. Every
//! `cargo test` runs each target briefly ([`QUICK_CASES`] inputs); `WARREN_FUZZ_SECS=60` runs
//! each for that many seconds (CI does), and says how many inputs it tried:
//!
//! ```text
//! WARREN_FUZZ_SECS=60 cargo test -p warren --lib fuzz:: -- --nocapture
//! ```
//!
//! An input that once failed belongs in the corpus, so that every later run tries it first.

// The targets: the config parser and validation; the egress policy with the authority a
// plugin sends; the egress address classifier. (AMQP property and header conversion:
// `broker/convert_fuzz.rs`, beside the private code it calls.)
mod addresses;
mod config;
mod egress;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};

/// The environment variable that gives each target's running time, in seconds.
pub const FUZZ_SECS: &str = "WARREN_FUZZ_SECS";

/// Inputs each target tries in a plain `cargo test` (without [`FUZZ_SECS`]).
const QUICK_CASES: u32 = 256;

/// Inputs per proptest run in a timed run; the deadline is checked between runs.
const BATCH: u32 = 2_000;

/// Most mutations applied to one seed.
const MAX_MUTATIONS: usize = 8;

/// The folder of a target's seeds.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target)
}

/// Every seed of `target`: each file's name and content, in name order. A target without
/// seeds is a mistake, not a quiet pass.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            (
                path.file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned(),
                bytes,
            )
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "fuzz corpus {} is empty", dir.display());
    seeds
}

/// The running time [`FUZZ_SECS`] asks for; `None` for a quick run.
fn budget() -> Option<Duration> {
    let secs = std::env::var(FUZZ_SECS).ok()?;
    let secs: u64 = secs
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{FUZZ_SECS}={secs:?}: give a whole number of seconds"));
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Runs `property` on every seed (each must pass: a failure names its file), then on inputs
/// from `inputs` for the budget, and reports how many were tried. A failing input is shrunk
/// and the test panics with it.
pub fn fuzz<S>(
    target: &str,
    seeds: Vec<(String, S::Value)>,
    inputs: S,
    property: impl Fn(S::Value) -> TestCaseResult,
) where
    S: Strategy,
    S::Value: Debug + Clone,
{
    for (name, seed) in seeds.iter() {
        if let Err(e) = property(seed.clone()) {
            panic!("fuzz {target}: seed {name} fails: {e}");
        }
    }
    let executions = AtomicU64::new(seeds.len() as u64);
    let counted = |input: S::Value| {
        executions.fetch_add(1, Ordering::Relaxed);
        property(input)
    };
    let started = Instant::now();
    let budget = budget();
    let cases = if budget.is_some() { BATCH } else { QUICK_CASES };
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    loop {
        // A runner runs its cases once: each batch takes a fresh one (and a fresh random seed).
        if let Err(e) = TestRunner::new(config.clone()).run(&inputs, counted) {
            panic!("fuzz {target}: {e}");
        }
        if budget.is_none_or(|budget| started.elapsed() >= budget) {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let n = executions.load(Ordering::Relaxed);
    println!(
        "fuzz {target}: {n} executions in {secs:.1} s ({:.0}/s), {} seeds",
        n as f64 / secs.max(1e-9),
        seeds.len()
    );
}

/// One change to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one bit.
    Flip(Index, u8),
    /// Overwrite one byte.
    Set(Index, u8),
    /// Insert one byte.
    Insert(Index, u8),
    /// Remove up to that many bytes.
    Remove(Index, u8),
    /// Insert a token of the target's dictionary.
    Token(Index, Index),
    /// Copy a run of bytes from another seed.
    Splice(Index, Index, Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::Set(at, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        1 => (any::<Index>(), 1u8..16).prop_map(|(at, n)| Mutation::Remove(at, n)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(at, t)| Mutation::Token(at, t)),
        1 => (any::<Index>(), any::<Index>(), any::<Index>(), 1u8..64)
            .prop_map(|(seed, from, at, n)| Mutation::Splice(seed, from, at, n)),
    ]
}

/// A position in `bytes`, `0..=len` (the end included: an insert may append).
fn position(at: &Index, bytes: &[u8]) -> usize {
    at.index(bytes.len() + 1)
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>, seeds: &[Vec<u8>], dictionary: &[&str]) {
        match self {
            Mutation::Flip(at, bit) if !bytes.is_empty() => {
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            Mutation::Set(at, byte) if !bytes.is_empty() => {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            Mutation::Insert(at, byte) => bytes.insert(position(at, bytes), *byte),
            Mutation::Remove(at, n) if !bytes.is_empty() => {
                let i = at.index(bytes.len());
                let end = (i + usize::from(*n)).min(bytes.len());
                bytes.drain(i..end);
            }
            Mutation::Token(at, token) if !dictionary.is_empty() => {
                let token = dictionary[token.index(dictionary.len())].as_bytes();
                let i = position(at, bytes);
                bytes.splice(i..i, token.iter().copied());
            }
            Mutation::Splice(seed, from, at, n) => {
                let other = &seeds[seed.index(seeds.len())];
                if !other.is_empty() {
                    let start = from.index(other.len());
                    let end = (start + usize::from(*n)).min(other.len());
                    let i = position(at, bytes);
                    bytes.splice(i..i, other[start..end].iter().copied());
                }
            }
            _ => {}
        }
    }
}

/// Inputs made from a seed by up to [`MAX_MUTATIONS`] byte-level changes: bit flips, byte
/// inserts and removals, tokens of `dictionary` (words the format gives meaning to), and runs
/// copied from other seeds. proptest shrinks a failing input towards its seed.
pub fn mutated(
    seeds: Vec<Vec<u8>>,
    dictionary: &'static [&'static str],
) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "mutating nothing");
    let count = seeds.len();
    (
        0..count,
        proptest::collection::vec(mutation(), 0..=MAX_MUTATIONS),
    )
        .prop_map(move |(seed, mutations)| {
            let mut bytes = seeds[seed].clone();
            for m in &mutations {
                m.apply(&mut bytes, &seeds, dictionary);
            }
            bytes
        })
}
