//! CPU reference benches (criterion): the softmax statistics of one row, and one whole
//! verification step (prepare, law, draw) at LLaMA-sized vocabularies. The GPU benches join
//! these once the verification kernels exist; the reference is the oracle, not a contender.
//!
//!     cargo bench --bench reference

use std::hint::black_box;

use asps::reference::{PreparedStep, row_stats};
use asps::{Logit, Method, NoiseKey};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::bf16;

fn row<T: Logit>(vocab: usize, salt: usize) -> Vec<T> {
    (0..vocab)
        .map(|v| T::from_f64((((v * 2_654_435_761 + salt) % 10_007) as f64) / 1000.0 - 5.0))
        .collect()
}

fn softmax_stats(c: &mut Criterion) {
    let mut g = c.benchmark_group("reference/row_stats");
    for vocab in [32_000usize, 128_256] {
        g.throughput(Throughput::Elements(vocab as u64));
        let f = row::<f32>(vocab, 1);
        let b = row::<bf16>(vocab, 1);
        g.bench_with_input(BenchmarkId::new("f32", vocab), &f, |bench, r| {
            bench.iter(|| row_stats(black_box(r), 1.0).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("bf16", vocab), &b, |bench, r| {
            bench.iter(|| row_stats(black_box(r), 1.0).unwrap())
        });
    }
    g.finish();
}

fn verify_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("reference/verify_step");
    g.sample_size(10);
    for (vocab, n) in [(32_000usize, 4usize), (128_256, 4)] {
        let target: Vec<Vec<bf16>> = (0..=n).map(|r| row(vocab, r)).collect();
        let draft: Vec<Vec<bf16>> = (0..n).map(|r| row(vocab, 100 + r)).collect();
        let tokens: Vec<u32> = (0..n as u32).map(|r| r * 7).collect();
        for method in [Method::Asps, Method::Sps] {
            let id = BenchmarkId::new(format!("{method:?}"), format!("V={vocab},n={n}"));
            g.bench_function(id, |bench| {
                let mut offset = 0;
                bench.iter(|| {
                    offset += 1;
                    let step = PreparedStep::from_logits(&target, &draft, &tokens, 1.0).unwrap();
                    step.sample(method, NoiseKey::new(1, offset)).unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, softmax_stats, verify_step);
criterion_main!(benches);
