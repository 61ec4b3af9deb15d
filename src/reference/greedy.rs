//! Greedy verification: keep draft tokens while each is the target's argmax.

use super::softmax::argmax;
use crate::method::Outcome;

/// Greedy verification over rows of scores (logits or probabilities): keep `tokens[r]` while it
/// is the row's argmax (lowest id on ties), then emit the next row's argmax.
pub(crate) fn greedy<I: IntoIterator<Item = f64>>(
    target_rows: impl IntoIterator<Item = I>,
    tokens: &[u32],
) -> Outcome {
    for (r, row) in target_rows.into_iter().enumerate() {
        let best = argmax(row).expect("rows are non-empty") as u32;
        if r == tokens.len() || tokens[r] != best {
            return Outcome {
                accepted: r,
                token: best,
            };
        }
    }
    unreachable!("the target has n + 1 rows")
}
