//! Test support: the model (fetched by fetch-model.sh; the tests fail, saying how to fetch it,
//! when it is missing), loaded once per test binary.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use asps_candle::llama::Weights;
use asps_candle::model_file::model_path;
use asps_candle::tokenizer::Tokenizer;
use candle_core::Device;

/// The model's weights on the CPU, and its tokenizer.
pub fn model() -> &'static (Arc<Weights>, Tokenizer) {
    static MODEL: OnceLock<(Arc<Weights>, Tokenizer)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = model_path(None).unwrap_or_else(|e| panic!("{e}"));
        let weights = Weights::load(&path, &Device::Cpu).expect("the model loads");
        let tokenizer = Tokenizer::from_gguf_file(&path).expect("its tokenizer loads");
        (weights, tokenizer)
    })
}
