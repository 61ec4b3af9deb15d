//! The counts the structure bench's time model reads, for the shapes it is calibrated at: one
//! verify call of each method over the GPU bench's workload (structure::Drafts::Bench), every
//! launch's counts as one JSON object. Shared by benches/structure.rs and benches/model_counts.rs
//! (which writes them for whatever kernels the checkout holds, so that earlier kernels can be
//! counted again).
#![allow(dead_code)]

use std::fmt::Write as _;

use asps::Method;
use half::bf16;

use super::gpu::TestGpu;
use super::structure::{Drafts, Launch, count_call_in_form};

/// The shapes (B, n, V) the model is checked at against the H100's measured times: the two
/// target shapes, two at B = 8, and the worst of ASpS against SpS (B = 256, where the decide
/// launch walks each request's rows in one block).
pub const MODEL_SHAPES: [(usize, usize, usize); 5] = [
    (1, 4, 32_000),
    (8, 4, 32_000),
    (8, 8, 128_256),
    (64, 8, 128_256),
    (256, 4, 128_256),
];

/// One counted call.
pub struct CountedCall {
    pub method: Method,
    pub shape: (usize, usize, usize),
    pub launches: Vec<Launch>,
}

/// Every method at every shape of [`MODEL_SHAPES`], over bf16 logits.
pub fn count_model_shapes(gpu: &TestGpu, trace: &str) -> Vec<CountedCall> {
    let mut out = Vec::new();
    for shape in MODEL_SHAPES {
        for method in Method::ALL {
            let launches =
                count_call_in_form::<bf16>(gpu, trace, method, shape, Drafts::Bench, None, None);
            out.push(CountedCall {
                method,
                shape,
                launches,
            });
        }
    }
    out
}

/// The calls [`calls_json`] wrote. A reading of its fixed layout (a call's header on one line,
/// each launch on one line), not a JSON parser.
pub fn parse_calls_json(text: &str) -> Result<Vec<CountedCall>, String> {
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = line.split(&format!("\"{key}\": ")).nth(1)?;
        Some(
            rest.split([',', '}'])
                .next()?
                .trim()
                .trim_matches('"')
                .to_string(),
        )
    };
    let number = |line: &str, key: &str| -> Result<u64, String> {
        field(line, key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no number `{key}` in `{line}`"))
    };
    let mut calls: Vec<CountedCall> = Vec::new();
    for line in text.lines() {
        if line.contains("\"method\"") {
            let method = match field(line, "method").as_deref() {
                Some("Asps") => Method::Asps,
                Some("Sps") => Method::Sps,
                Some("Greedy") => Method::Greedy,
                other => return Err(format!("unknown method {other:?}")),
            };
            let dim = |key| number(line, key).map(|v| v as usize);
            calls.push(CountedCall {
                method,
                shape: (dim("B")?, dim("n")?, dim("V")?),
                launches: Vec::new(),
            });
        } else if line.contains("\"kernel\"") {
            let call = calls.last_mut().ok_or("a launch before any call")?;
            let text = |key| field(line, key).ok_or_else(|| format!("no `{key}` in `{line}`"));
            call.launches.push(Launch {
                kernel: text("kernel")?,
                grid: text("grid")?,
                block: text("block")?,
                loaded: number(line, "loaded")?,
                unique_read: number(line, "unique_read")?,
                // Not recorded: the model reads no stores.
                unique_written: 0,
                philox: number(line, "philox")?,
                exps: number(line, "exps")?,
                block_read_max: number(line, "block_read_max")?,
                busy_blocks: number(line, "busy_blocks")?,
                busy_read: number(line, "busy_read")?,
            });
        }
    }
    Ok(calls)
}

/// The calls as a JSON list, one object per call with its launches.
pub fn calls_json(calls: &[CountedCall]) -> String {
    let mut s = String::from("[\n");
    for (i, c) in calls.iter().enumerate() {
        let (b, n, v) = c.shape;
        let launches: Vec<String> = c
            .launches
            .iter()
            .map(|l| {
                format!(
                    "{{\"kernel\": \"{}\", \"grid\": \"{}\", \"block\": \"{}\", \"loaded\": {}, \
                     \"unique_read\": {}, \"philox\": {}, \"exps\": {}, \"block_read_max\": {}, \
                     \"busy_blocks\": {}, \"busy_read\": {}}}",
                    l.kernel,
                    l.grid,
                    l.block,
                    l.loaded,
                    l.unique_read,
                    l.philox,
                    l.exps,
                    l.block_read_max,
                    l.busy_blocks,
                    l.busy_read
                )
            })
            .collect();
        let _ = write!(
            s,
            "  {{\"method\": \"{:?}\", \"B\": {b}, \"n\": {n}, \"V\": {v}, \"launches\": [\n    {}\n  ]}}{}\n",
            c.method,
            launches.join(",\n    "),
            if i + 1 < calls.len() { "," } else { "" }
        );
    }
    s.push_str("]\n");
    s
}
