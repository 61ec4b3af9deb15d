//! Speculative decoding inside candle, verified by asps, on a real LLaMA-architecture model
//! (SmolLM2-135M-Instruct from a GGUF file): the target is the whole model, the draft a cheaper
//! model made from the same weights (requantized to Q4_0 by default; or some of its blocks),
//! both with KV caches that roll back. Verification runs on asps's CPU reference, or (feature `cuda`, `--gpu`) in asps's
//! kernels on candle's device logits.

#[cfg(feature = "cuda")]
pub mod gpu;
pub mod llama;
pub mod model_file;
pub mod prompts;
pub mod speculative;
pub mod tokenizer;
