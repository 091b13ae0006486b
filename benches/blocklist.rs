//! The content filter's CPU per message: one ~150-byte chat line checked against an empty list,
//! 100 entries and 10,000 entries (`Blocklist::matches`, what `--blocklist-action reject` runs on
//! every message), for an ASCII line (scanned as it is) and a line with accented letters (scanned
//! through its lowercased copy), neither matching (the common case); and `Blocklist::mask` on a
//! line with two matches.
//!
//! Why: the filter runs on the shard thread for every message, so its cost adds to every message's
//! latency; the issue asks for the figure at 10,000 entries. Results: BENCHMARKS.md "Blocklist".

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use roomcast::moderation::Blocklist;

/// A 150-byte ASCII chat line.
const ASCII_LINE: &str = "Hey everyone, the deploy finished at 14:05 and the dashboards look fine; ping me if the queue \
     latency goes above 200 ms again tonight, thanks!";
/// A 150-byte line with accented letters.
const UNICODE_LINE: &str = "Salut à tous, le déploiement est terminé à 14h05 et les tableaux de bord sont corrects ; \
     prévenez-moi si la latence dépasse 200 ms ce soir, merci !";

/// `n` distinct pseudo-random lowercase words of 7 to 17 letters (deterministic), one in ten with a
/// `*` suffix, none of them a word of the lines above.
fn entries(n: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = String::new();
    for i in 0..n {
        let len = 4 + (next() % 8) as usize;
        out.extend((0..len).map(|_| char::from(b'a' + (next() % 26) as u8)));
        // Distinct: the index, in letters, after a `zq` no word of the lines has.
        out.push_str("zq");
        let mut k = i;
        loop {
            out.push(char::from(b'a' + (k % 26) as u8));
            k /= 26;
            if k == 0 {
                break;
            }
        }
        if i % 10 == 0 {
            out.push('*');
        }
        out.push('\n');
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("blocklist");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    assert!(ASCII_LINE.len() > 140 && UNICODE_LINE.len() > 140, "{} {}", ASCII_LINE.len(), UNICODE_LINE.len());
    for n in [0, 100, 10_000] {
        let list = Blocklist::parse(&entries(n), Path::new("bench")).expect("a valid list");
        assert_eq!(list.len(), n);
        assert!(!list.matches(ASCII_LINE) && !list.matches(UNICODE_LINE));
        group.bench_function(format!("ascii/{n}"), |b| b.iter(|| list.matches(black_box(ASCII_LINE))));
        group.bench_function(format!("unicode/{n}"), |b| b.iter(|| list.matches(black_box(UNICODE_LINE))));
    }
    let mut text = entries(10_000);
    text.push_str("deploy\ndashboards\n");
    let list = Blocklist::parse(&text, Path::new("bench")).expect("a valid list");
    group.bench_function("mask/10000", |b| b.iter(|| list.mask(black_box(ASCII_LINE))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
