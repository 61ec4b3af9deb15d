//! A batch of verification requests on the host, random instances of it, and the check of
//! kernel results (GPU or emulated) against the CPU reference.
#![allow(dead_code)]

use asps::cuda::{RequestStatus, VerifiedRequest};
use asps::reference::{
    PreparedStep, Sampling, Truncation, argmax, moved_thresholds, softmax, truncated_softmax,
    verify_logits_sampled,
};
use asps::{Logit, Method, NoiseKey, Outcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A batch on the host: logits [B, n+1, V] and [B, n, V], tokens [B, n], per-request values:
/// what a call's arrays hold (an optional array absent where a field is `None`).
#[derive(Clone)]
pub struct Batch<T> {
    pub b: usize,
    pub n: usize,
    pub v: usize,
    pub target: Vec<T>,
    pub draft: Vec<T>,
    pub tokens: Vec<i32>,
    pub lens: Vec<i32>,
    pub temps: Vec<f32>,
    pub seeds: Vec<u64>,
    pub offsets: Vec<u64>,
    /// Each request's draft temperature; `None`: the call gives no array (the target's).
    pub draft_temps: Option<Vec<f32>>,
    /// Each request's truncation; `None`: the call gives no truncation arrays.
    pub truncs: Option<Vec<RequestTruncation>>,
}

impl<T: Logit> Batch<T> {
    /// How request i samples, as the reference describes it.
    pub fn sampling(&self, i: usize) -> Sampling {
        let (target, draft) = self
            .truncs
            .as_ref()
            .map_or((Truncation::OFF, Truncation::OFF), |t| t[i]);
        Sampling {
            temperature: f64::from(self.temps[i]),
            draft_temperature: self.draft_temps.as_ref().map(|d| f64::from(d[i])),
            target,
            draft,
        }
    }

    /// Request i alone, as a batch of one.
    pub fn request(&self, i: usize) -> Batch<T> {
        let (n, v) = (self.n, self.v);
        Batch {
            b: 1,
            target: self.target[i * (n + 1) * v..][..(n + 1) * v].to_vec(),
            draft: self.draft[i * n * v..][..n * v].to_vec(),
            tokens: self.tokens[i * n..][..n].to_vec(),
            lens: vec![self.lens[i]],
            temps: vec![self.temps[i]],
            seeds: vec![self.seeds[i]],
            offsets: vec![self.offsets[i]],
            draft_temps: self.draft_temps.as_ref().map(|d| vec![d[i]]),
            truncs: self.truncs.as_ref().map(|t| vec![t[i]]),
            ..self.clone()
        }
    }

    pub fn target_rows(&self, i: usize) -> Vec<Vec<T>> {
        let n_b = self.lens[i] as usize;
        (0..=n_b)
            .map(|r| {
                let s = (i * (self.n + 1) + r) * self.v;
                self.target[s..s + self.v].to_vec()
            })
            .collect()
    }

    pub fn draft_rows(&self, i: usize) -> Vec<Vec<T>> {
        let n_b = self.lens[i] as usize;
        (0..n_b)
            .map(|r| {
                let s = (i * self.n + r) * self.v;
                self.draft[s..s + self.v].to_vec()
            })
            .collect()
    }

    pub fn draft_tokens(&self, i: usize) -> Vec<u32> {
        let n_b = self.lens[i] as usize;
        self.tokens[i * self.n..i * self.n + n_b]
            .iter()
            .map(|&t| t as u32)
            .collect()
    }
}

/// Target logits ~ 3 * uniform; draft = target + 1.5 * uniform; tokens drawn from the draft at
/// the request's temperature (argmax when greedy); tokens past n_b are garbage that must not be
/// read.
pub fn random_batch<T: Logit>(rng: &mut StdRng, b: usize, n: usize, v: usize) -> Batch<T> {
    random_batch_with_noise(rng, b, n, v, 1.5)
}

/// [`random_batch`] with draft = target + `draft_noise` * uniform: a large noise gives drafts
/// far from the target, so that ASpS rarely keeps them all and its descent visits many rows.
pub fn random_batch_with_noise<T: Logit>(
    rng: &mut StdRng,
    b: usize,
    n: usize,
    v: usize,
    draft_noise: f64,
) -> Batch<T> {
    let mut target = Vec::with_capacity(b * (n + 1) * v);
    let mut draft = Vec::with_capacity(b * n * v);
    let mut tokens = Vec::with_capacity(b * n);
    let mut lens = Vec::with_capacity(b);
    let mut temps = Vec::with_capacity(b);
    for _ in 0..b {
        let n_b = rng.random_range(1..=n);
        let temp = [0.0f32, 0.6, 1.0, 1.4][rng.random_range(0..4)];
        let rows: Vec<Vec<f64>> = (0..=n)
            .map(|_| (0..v).map(|_| 3.0 * rng.random::<f64>()).collect())
            .collect();
        for row in &rows {
            target.extend(row.iter().map(|&x| T::from_f64(x)));
        }
        for (r, row) in rows.iter().take(n).enumerate() {
            let d: Vec<T> = row
                .iter()
                .map(|&x| T::from_f64(x + draft_noise * rng.random::<f64>()))
                .collect();
            let token = if r >= n_b {
                -7 // never read
            } else if temp == 0.0 {
                asps::reference::argmax(d.iter().map(|x| x.to_f64())).unwrap() as i32
            } else {
                let p = softmax(&d, f64::from(temp)).unwrap();
                let mut u: f64 = rng.random();
                let mut pick = v - 1;
                for (t, pt) in p.iter().enumerate() {
                    if u < *pt {
                        pick = t;
                        break;
                    }
                    u -= pt;
                }
                pick as i32
            };
            draft.extend(d);
            tokens.push(token);
        }
        lens.push(n_b as i32);
        temps.push(temp);
    }
    let seeds = (0..b).map(|_| rng.random()).collect();
    let offsets = (0..b).map(|_| rng.random_range(0..1u64 << 40)).collect();
    Batch {
        b,
        n,
        v,
        target,
        draft,
        tokens,
        lens,
        temps,
        seeds,
        offsets,
        draft_temps: None,
        truncs: None,
    }
}

/// A batch of 10 requests (f32, n = 3, V = 64, draft length 2 each, temperature 1) in which
/// requests 0..7 and 8, 9 each carry one bad value, and the statuses the kernels must report.
/// Request 7's bad values lie past its draft length, where nothing may be read; request 8's
/// draft temperature is NaN; request 9's drafter is greedy (draft temperature 0) but its first
/// draft token is not a largest logit of its draft row.
pub fn bad_values_batch() -> (Batch<f32>, [RequestStatus; 10]) {
    let mut rng = StdRng::seed_from_u64(9);
    let (b, n, v) = (10, 3, 64);
    let mut h = random_batch::<f32>(&mut rng, b, n, v);
    h.lens = vec![2; b];
    h.temps = vec![1.0; b];
    h.draft_temps = Some(vec![1.0; b]);
    for i in 0..b {
        for r in 0..2 {
            h.tokens[i * n + r] = r as i32;
        }
    }
    let t = |i: usize, r: usize, x: usize| (i * (n + 1) + r) * v + x;
    let d = |i: usize, r: usize, x: usize| (i * n + r) * v + x;
    h.target[t(0, 1, 5)] = f32::NAN;
    h.draft[d(1, 0, 9)] = f32::INFINITY;
    h.target[t(2, 2, 0)..t(2, 2, 0) + v].fill(f32::NEG_INFINITY); // the bonus row
    h.tokens[3 * n + 1] = v as i32;
    h.draft[d(4, 1, 1)] = f32::NEG_INFINITY; // the draft token of row 1 is 1
    h.lens[5] = 0;
    h.temps[6] = -1.0;
    h.target[t(7, 3, 0)] = f32::NAN;
    h.draft[d(7, 2, 0)] = f32::NAN;
    let draft_temps = h.draft_temps.as_mut().unwrap();
    draft_temps[8] = f32::NAN;
    draft_temps[9] = 0.0;
    h.draft[d(9, 0, 5)] = 100.0; // the argmax of row 0 is 5, its draft token 0
    h.draft[d(9, 1, 1)] = 100.0; // row 1's argmax is its draft token 1
    let want = [
        RequestStatus::NaN,
        RequestStatus::PosInf,
        RequestStatus::AllMasked,
        RequestStatus::TokenOutOfRange,
        RequestStatus::ImpossibleDraftToken,
        RequestStatus::BadDraftLen,
        RequestStatus::BadTemperature,
        RequestStatus::Ok,
        RequestStatus::BadTemperature,
        RequestStatus::ImpossibleDraftToken,
    ];
    (h, want)
}

/// Asserts the statuses of `bad_values_batch`, and that failed requests emit nothing.
pub fn check_bad_values(got: &[VerifiedRequest], want: &[RequestStatus]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.status, *w, "request {i}");
        if *w != RequestStatus::Ok {
            assert!(
                g.tokens.is_empty() && g.accepted == 0,
                "request {i} emitted {:?}",
                g.tokens
            );
        }
    }
}

/// Temperatures from tiny to huge, one request each in [`extreme_temperature_batch`]. At 1e-38
/// the centred logits times 1/T overflow f32; at 8e37 1/T is just above the smallest normal
/// float (larger T are refused, as are smaller than 2.9e-39).
pub const EXTREME_TEMPERATURES: [f32; 7] = [1e-38, 1e-30, 1e-8, 1e-3, 1e3, 1e30, 8e37];

/// One request per temperature of [`EXTREME_TEMPERATURES`], V = 8, n = 1, the same rows in each:
/// the target's row 0 puts token 2 at 20 and the draft token 5 at 0 (gap 20), the draft's row 0
/// puts token 3 at 10 and token 5 at 0 (gap 10); every other logit is -10. So
/// ln rho = -10 / T - (ln Z_t - ln Z_d), and for T <= 1e-3 the draft token is rejected with
/// probability 1 - e^(-10 / T) = 1 in f64.
pub fn extreme_temperature_batch<T: Logit>(seed: u64) -> Batch<T> {
    let (b, n, v) = (EXTREME_TEMPERATURES.len(), 1, 8);
    let row = |top: usize, x: f64| -> Vec<T> {
        (0..v)
            .map(|i| {
                T::from_f64(match i {
                    _ if i == top => x,
                    5 => 0.0,
                    _ => -10.0,
                })
            })
            .collect()
    };
    let bonus: Vec<T> = (0..v)
        .map(|i| T::from_f64(if i == 1 { 5.0 } else { 0.0 }))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    Batch {
        b,
        n,
        v,
        target: (0..b)
            .flat_map(|_| [row(2, 20.0), bonus.clone()].concat())
            .collect(),
        draft: (0..b).flat_map(|_| row(3, 10.0)).collect(),
        tokens: vec![5; b],
        lens: vec![1; b],
        temps: EXTREME_TEMPERATURES.to_vec(),
        seeds: (0..b).map(|_| rng.random()).collect(),
        offsets: (0..b).map(|_| rng.random_range(0..1u64 << 40)).collect(),
        draft_temps: None,
        truncs: None,
    }
}

/// Checks `calls` results of [`extreme_temperature_batch`] (call k used offsets + k) against the
/// reference, and that no draft token was kept at T <= 1e-3, where its acceptance probability
/// e^(-10 / T) is 0 in f64 (at 1e-3 it is e^(-10^4)).
pub fn check_extreme_temperatures<T: Logit>(
    h: &Batch<T>,
    method: Method,
    results: &[Vec<VerifiedRequest>],
) {
    for (call, got) in results.iter().enumerate() {
        check_against_reference(h, method, call as u64, got, 1e-3);
        for (g, &t) in got.iter().zip(&h.temps) {
            if t <= 1e-3 {
                assert_eq!(
                    g.accepted, 0,
                    "{method:?} at T = {t:e} kept a draft token of probability e^(-10/T)"
                );
            }
        }
    }
}

/// A request's truncation: (the target's, the draft's).
pub type RequestTruncation = (Truncation, Truncation);

/// Redraws the draft tokens of the sampling requests of `h` from the law each request's
/// sampling says its drafter drew them from (its draft temperature and truncation; the argmax
/// for a greedy drafter), so that every token could have been drafted.
pub fn redraw_drafts<T: Logit>(rng: &mut StdRng, h: &mut Batch<T>) {
    for i in 0..h.b {
        let sampling = h.sampling(i);
        if sampling.is_greedy() {
            continue; // the tokens of greedy verification need only be unmasked
        }
        let temp = sampling.draft_temperature();
        for (r, row) in h.draft_rows(i).iter().enumerate() {
            let pick = if temp == 0.0 {
                argmax(row.iter().map(|x| x.to_f64())).unwrap()
            } else {
                let p = truncated_softmax(row, temp, &sampling.draft).unwrap();
                let mut u: f64 = rng.random();
                let mut pick = p.iter().rposition(|&x| x > 0.0).unwrap();
                for (t, pt) in p.iter().enumerate() {
                    if u < *pt {
                        pick = t;
                        break;
                    }
                    u -= pt;
                }
                pick
            };
            h.tokens[i * h.n + r] = pick as i32;
        }
    }
}

/// How far top-p and min-p may move (relatively) and still count as the same threshold: the
/// kernels sum masses in fixed point and compare in f32, the reference in f64. (top-k compares
/// values, exactly, and has no near-ties.)
pub const THRESHOLD_EPS: f32 = 1e-4;

/// `sampling` with each model's top-p and min-p moved by a relative `eps` one way or the other
/// (or not at all: asps::reference::moved_thresholds), every combination but the unmoved one:
/// the samplings whose kept sets a float near-tie of a threshold could give the kernels.
pub fn moved_samplings(sampling: &Sampling, eps: f32) -> Vec<Sampling> {
    let moves = |t: Truncation| -> Vec<Truncation> {
        let mut out = vec![t];
        out.extend(moved_thresholds(&t, eps).into_iter().filter(|m| *m != t));
        out
    };
    let mut all = Vec::new();
    for target in moves(sampling.target) {
        for draft in moves(sampling.draft) {
            if (target, draft) != (sampling.target, sampling.draft) {
                all.push(Sampling {
                    target,
                    draft,
                    ..*sampling
                });
            }
        }
    }
    all
}

/// Checks one call's results against the reference (the call used offsets + `call`), which
/// samples request i as `h.sampling(i)` says: every request Ok, the emitted tokens the kept
/// prefix plus one, and each outcome the reference's or, for sampling rules, a float near-tie:
/// the reference draws the kernels' outcome, or misses it by a decision near-tie (its keys for
/// the two outcomes within `near_tie`), with the request's thresholds as given or moved by
/// [`THRESHOLD_EPS`] ([`moved_samplings`]). A draft token refused as impossible must be one
/// that a moved draft threshold leaves out. Returns the number of near-tie mismatches.
pub fn check_against_reference<T: Logit>(
    h: &Batch<T>,
    method: Method,
    call: u64,
    got: &[VerifiedRequest],
    near_tie: f64,
) -> usize {
    let mut mismatches = 0;
    for (i, g) in got.iter().enumerate() {
        let key = NoiseKey::new(h.seeds[i], h.offsets[i] + call);
        let tokens = h.draft_tokens(i);
        let (target, draft) = (h.target_rows(i), h.draft_rows(i));
        let sampling = h.sampling(i);
        let reference =
            |s: &Sampling| verify_logits_sampled(method, &target, &draft, &tokens, s, key);
        let want = reference(&sampling).unwrap();
        let moved = || moved_samplings(&sampling, THRESHOLD_EPS);
        let what = || {
            let dtype = T::DTYPE;
            format!(
                "{dtype:?} {method:?} V={} n={} request {i} {sampling:?}",
                h.v, h.n
            )
        };
        if g.status == RequestStatus::ImpossibleDraftToken && !sampling.is_greedy() {
            // The token sits at the edge of its draft row's kept set, which f32 and f64 place
            // on either side of it.
            let edge = moved()
                .iter()
                .any(|s| matches!(reference(s), Err(asps::Error::ImpossibleDraftToken { .. })));
            assert!(edge, "{}: refused as an impossible draft", what());
            mismatches += 1;
            continue;
        }
        assert_eq!(g.status, RequestStatus::Ok, "{}", what());
        let outcome = Outcome {
            accepted: g.accepted,
            token: *g.tokens.last().unwrap(),
        };
        assert_eq!(
            g.tokens,
            outcome.emitted(&tokens),
            "emitted tokens are the kept prefix plus one"
        );
        if outcome == want {
            continue;
        }
        mismatches += 1;
        let greedy = sampling.is_greedy() || method == Method::Greedy;
        assert!(
            !greedy,
            "greedy disagrees: kernel {outcome:?}, reference {want:?}"
        );
        // How far the reference's draw under `s` is from the kernels' outcome: 0 when it
        // draws that outcome.
        let gap = |s: &Sampling| -> f64 {
            let Ok(step) = PreparedStep::from_sampling(&target, &draft, &tokens, s) else {
                return f64::INFINITY;
            };
            match step.sample(method, key) {
                Ok(o) => step.decision_margin(method, key, o, outcome),
                Err(_) => f64::INFINITY,
            }
        };
        let margin = gap(&sampling);
        if margin < near_tie || moved().iter().any(|s| gap(s) < near_tie) {
            continue;
        }
        panic!(
            "{}: kernel {outcome:?}, reference {want:?}, gap {margin} (and no moved threshold \
             closes it)",
            what()
        );
    }
    mismatches
}

/// Draft temperatures unlike the target's, one per request in turn: a greedy drafter (0), a
/// cooler one, the target's usual 1, a hotter one.
pub fn mixed_draft_temperatures(b: usize) -> Vec<f32> {
    (0..b).map(|i| [0.0, 0.5, 1.0, 1.7][i % 4]).collect()
}

/// Per-request truncations covering every combination used by the tests: each parameter on or
/// off, for the target and the draft, with values that cut.
pub fn mixed_truncations(b: usize) -> Vec<RequestTruncation> {
    let kinds = [
        Truncation::OFF,
        Truncation {
            top_k: 1,
            ..Truncation::OFF
        },
        Truncation {
            top_k: 20,
            ..Truncation::OFF
        },
        Truncation {
            top_p: 0.5,
            ..Truncation::OFF
        },
        Truncation {
            top_p: 0.9,
            ..Truncation::OFF
        },
        Truncation {
            min_p: 0.2,
            ..Truncation::OFF
        },
        Truncation {
            top_k: 50,
            top_p: 0.99,
            min_p: 0.05,
        },
        Truncation {
            top_k: 1000,
            top_p: 0.9,
            min_p: 0.0,
        },
    ];
    (0..b)
        .map(|i| (kinds[i % kinds.len()], kinds[(i * 3 + 1) % kinds.len()]))
        .collect()
}
