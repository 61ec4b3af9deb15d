//! A small LLaMA forward pass on candle's ops and quantized matmuls, for GGUF checkpoints
//! (SmolLM2-135M-Instruct here), with per-sequence KV caches that roll back.
//!
//! Why not candle-transformers' `quantized_llama`: it returns the logits of the last position
//! only and keeps its KV cache private, while speculative decoding needs the target's logits at
//! every drafted position (n + 1 rows from one pass) and needs to drop rejected positions from
//! the caches. It also cannot run a subset of the layers, which is how the draft model is made.
//!
//! Weights are dequantized to f32 on load (the checkpoint's values exactly; 540 MB for
//! SmolLM2-135M): candle's f32 matmul then amortises a pass over several tokens, which is what
//! makes the target's one pass over n + 1 tokens cheaper than n + 1 one-token passes on a CPU
//! (its quantized CPU matmul does not: it multiplies one activation row at a time). The rows
//! of such a pass agree with one-token passes up to the float reassociation of a different
//! matmul blocking (about 1e-4 in the logits); tests/greedy.rs bounds it.

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};

/// The shape of a LLaMA checkpoint, read from its GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    /// Transformer blocks.
    pub layers: usize,
    /// Model width.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention: `heads` is a multiple of it).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding and of the output head).
    pub vocab: usize,
    /// RMS norm epsilon.
    pub eps: f64,
    /// Rotary embedding base.
    pub rope_base: f32,
    /// Longest sequence the rotary tables cover.
    pub max_positions: usize,
}

/// One transformer block's weights.
#[derive(Clone)]
struct Block {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
}

/// The weights of a checkpoint, shared by every model made from them.
pub struct Weights {
    config: Config,
    embedding: Tensor,
    blocks: Vec<Arc<Block>>,
    norm: Tensor,
    head: Arc<QMatMul>,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

impl Weights {
    /// Loads a LLaMA-architecture GGUF file onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Arc<Self>> {
        let mut file = std::fs::File::open(path).map_err(|e| {
            candle_core::Error::Msg(format!("cannot open the model {}: {e}", path.display()))
        })?;
        let content = gguf_file::Content::read(&mut file)?;
        let meta = |key: &str| {
            content
                .metadata
                .get(key)
                .ok_or_else(|| candle_core::Error::Msg(format!("GGUF metadata lacks {key}")))
        };
        let arch = meta("general.architecture")?.to_string()?.clone();
        if arch != "llama" {
            candle_core::bail!("{} is a {arch} model, not llama", path.display());
        }
        let heads = meta("llama.attention.head_count")?.to_u32()? as usize;
        let kv_heads = meta("llama.attention.head_count_kv")?.to_u32()? as usize;
        let hidden = meta("llama.embedding_length")?.to_u32()? as usize;
        if heads == 0
            || kv_heads == 0
            || !hidden.is_multiple_of(heads)
            || !heads.is_multiple_of(kv_heads)
        {
            candle_core::bail!(
                "unsupported attention shape: width {hidden}, {heads} heads, {kv_heads} kv heads"
            );
        }
        let config = Config {
            layers: meta("llama.block_count")?.to_u32()? as usize,
            hidden,
            heads,
            kv_heads,
            head_dim: hidden / heads,
            vocab: 0,
            eps: meta("llama.attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            // llama.cpp's default where the file leaves it out.
            rope_base: match content.metadata.get("llama.rope.freq_base") {
                Some(v) => v.to_f32()?,
                None => 10_000.0,
            },
            max_positions: meta("llama.context_length")?.to_u32()? as usize,
        };
        let mut tensor = |name: &str| content.tensor(&mut file, name, device);
        let embedding = tensor("token_embd.weight")?.dequantize(device)?;
        let vocab = embedding.dim(0)?;
        // Tied embeddings (SmolLM2) have no output.weight: the head is the embedding.
        let head = if content.tensor_infos.contains_key("output.weight") {
            linear(tensor("output.weight")?, device)?
        } else {
            QMatMul::Tensor(embedding.clone())
        };
        let mut blocks = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut t = |name: &str| tensor(&format!("blk.{i}.{name}.weight"));
            blocks.push(Arc::new(Block {
                attn_norm: t("attn_norm")?.dequantize(device)?,
                wq: linear(t("attn_q")?, device)?,
                wk: linear(t("attn_k")?, device)?,
                wv: linear(t("attn_v")?, device)?,
                wo: linear(t("attn_output")?, device)?,
                ffn_norm: t("ffn_norm")?.dequantize(device)?,
                gate: linear(t("ffn_gate")?, device)?,
                up: linear(t("ffn_up")?, device)?,
                down: linear(t("ffn_down")?, device)?,
            }));
        }
        let norm = tensor("output_norm.weight")?.dequantize(device)?;
        let config = Config { vocab, ..config };
        let (cos, sin) = rotary_tables(&config, device)?;
        Ok(Arc::new(Weights {
            config,
            embedding,
            blocks,
            norm,
            head: Arc::new(head),
            cos,
            sin,
            device: device.clone(),
        }))
    }

    /// The checkpoint's shape.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// A dequantized linear layer (f32 weights `[out, in]`, no bias).
fn linear(w: QTensor, device: &Device) -> Result<QMatMul> {
    Ok(QMatMul::Tensor(w.dequantize(device)?))
}

/// `m` quantized to `dtype` (from its f32 values).
fn requantize(m: &QMatMul, dtype: GgmlDType) -> Result<QMatMul> {
    match m {
        QMatMul::Tensor(w) => QMatMul::from_qtensor(QTensor::quantize(w, dtype)?),
        _ => candle_core::bail!("only f32 weights are requantized"),
    }
}

/// cos and sin of the rotary embedding, `[max_positions, head_dim / 2]`.
fn rotary_tables(config: &Config, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = config.head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            1.0 / config
                .rope_base
                .powf(2.0 * i as f32 / config.head_dim as f32)
        })
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let positions = Tensor::arange(0u32, config.max_positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((config.max_positions, 1))?;
    let angles = positions.broadcast_mul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// The keys and values a model has computed for one sequence, per block it runs.
#[derive(Clone)]
pub struct KvCache {
    /// Per block run: keys and values `[1, kv_heads, len, head_dim]`.
    entries: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops every position from `len` on (rejected draft tokens). A no-op if it holds fewer.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len {
            return Ok(());
        }
        for (k, v) in self.entries.iter_mut().flatten() {
            *k = k.narrow(2, 0, len)?;
            *v = v.narrow(2, 0, len)?;
        }
        self.len = len;
        Ok(())
    }
}

/// A model over shared weights: the whole checkpoint (the target), or a cheaper model made
/// from it (a draft): some of its blocks (self-speculative, as LayerSkip), and/or its weights
/// quantized more coarsely, always with the final norm and head.
#[derive(Clone)]
pub struct Llama {
    weights: Arc<Weights>,
    /// Indices of the blocks run, in order, and their weights.
    block_ids: Vec<usize>,
    blocks: Vec<Arc<Block>>,
    head: Arc<QMatMul>,
    /// The matmuls' weight format, for reports.
    format: String,
}

impl Llama {
    /// The whole checkpoint, with f32 weights.
    pub fn full(weights: &Arc<Weights>) -> Self {
        Llama {
            weights: weights.clone(),
            block_ids: (0..weights.config.layers).collect(),
            blocks: weights.blocks.clone(),
            head: weights.head.clone(),
            format: "f32".into(),
        }
    }

    /// A draft: the blocks `blocks` (increasing, each below the checkpoint's count) with f32
    /// weights, or with every matmul's weights (the head's included) requantized to `quant`
    /// from the f32 values (candle's quantized matmul then also quantizes the activations).
    pub fn draft(
        weights: &Arc<Weights>,
        blocks: Vec<usize>,
        quant: Option<GgmlDType>,
    ) -> Result<Self> {
        let count = weights.config.layers;
        if blocks.is_empty() || blocks.windows(2).any(|w| w[0] >= w[1]) {
            candle_core::bail!("a model's blocks must be non-empty and increasing: {blocks:?}");
        }
        if let Some(&b) = blocks.iter().find(|&&b| b >= count) {
            candle_core::bail!("block {b} does not exist: the checkpoint has {count}");
        }
        let Some(dtype) = quant else {
            return Ok(Llama {
                weights: weights.clone(),
                blocks: blocks.iter().map(|&b| weights.blocks[b].clone()).collect(),
                block_ids: blocks,
                head: weights.head.clone(),
                format: "f32".into(),
            });
        };
        let q = |m: &QMatMul| requantize(m, dtype);
        let mut quantized = Vec::with_capacity(blocks.len());
        for &b in &blocks {
            let w = &weights.blocks[b];
            quantized.push(Arc::new(Block {
                attn_norm: w.attn_norm.clone(),
                wq: q(&w.wq)?,
                wk: q(&w.wk)?,
                wv: q(&w.wv)?,
                wo: q(&w.wo)?,
                ffn_norm: w.ffn_norm.clone(),
                gate: q(&w.gate)?,
                up: q(&w.up)?,
                down: q(&w.down)?,
            }));
        }
        Ok(Llama {
            weights: weights.clone(),
            block_ids: blocks,
            blocks: quantized,
            head: Arc::new(q(&weights.head)?),
            format: format!("{dtype:?}"),
        })
    }

    /// The indices of the blocks this model runs.
    pub fn blocks(&self) -> &[usize] {
        &self.block_ids
    }

    /// The matmuls' weight format ("f32", or the quantization of a draft).
    pub fn format(&self) -> &str {
        &self.format
    }

    /// The weights.
    pub fn weights(&self) -> &Arc<Weights> {
        &self.weights
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            entries: vec![None; self.blocks.len()],
            len: 0,
        }
    }

    /// Runs `tokens` at the positions after those in `cache`, appends their keys and values to
    /// it, and returns the logits of every position, `[tokens.len(), vocab]` (f32, on the
    /// weights' device).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let w = &*self.weights;
        let c = &w.config;
        let (pos, len) = (cache.len, tokens.len());
        if len == 0 {
            candle_core::bail!("a forward pass needs at least one token");
        }
        if pos + len > c.max_positions {
            candle_core::bail!(
                "{} positions exceed the model's context of {}",
                pos + len,
                c.max_positions
            );
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= c.vocab) {
            candle_core::bail!("token {t} is outside the vocabulary of {}", c.vocab);
        }
        let ids = Tensor::new(tokens, &w.device)?;
        let mut x = w.embedding.index_select(&ids, 0)?.unsqueeze(0)?;
        let cos = w.cos.narrow(0, pos, len)?;
        let sin = w.sin.narrow(0, pos, len)?;
        let mask = causal_mask(c, pos, len, &w.device)?;
        for (slot, block) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, c.eps as f32)?;
            let heads = |m: &QMatMul, n: usize| -> Result<Tensor> {
                m.forward(&h)?
                    .reshape((1, len, n, c.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let q = candle_nn::rotary_emb::rope_i(&heads(&block.wq, c.heads)?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&heads(&block.wk, c.kv_heads)?, &cos, &sin)?;
            let v = heads(&block.wv, c.kv_heads)?;
            let (k, v) = match &cache.entries[slot] {
                None => (k, v),
                Some((k0, v0)) => (Tensor::cat(&[k0, &k], 2)?, Tensor::cat(&[v0, &v], 2)?),
            };
            cache.entries[slot] = Some((k.clone(), v.clone()));
            let attn = attention(c, &q, &k, &v, mask.as_ref())?;
            x = (x + block.wo.forward(&attn)?)?;
            let h = candle_nn::ops::rms_norm(&x, &block.ffn_norm, c.eps as f32)?;
            let ffn = (candle_nn::ops::silu(&block.gate.forward(&h)?)? * block.up.forward(&h)?)?;
            x = (x + block.down.forward(&ffn)?)?;
        }
        cache.len = pos + len;
        let x = candle_nn::ops::rms_norm(&x, &w.norm, c.eps as f32)?;
        self.head.forward(&x)?.squeeze(0)
    }
}

/// The additive causal mask of a pass over `len` tokens after `pos`, `[group * len, pos + len]`
/// (rows in the order of [`attention`]'s grouped queries); `None` for one token, which sees
/// every key.
fn causal_mask(c: &Config, pos: usize, len: usize, device: &Device) -> Result<Option<Tensor>> {
    if len == 1 {
        return Ok(None);
    }
    let group = c.heads / c.kv_heads;
    let keys = pos + len;
    // Row (g, i) is query position pos + i: it sees keys 0..=pos + i.
    let mask: Vec<f32> = (0..group * len)
        .flat_map(|row| {
            let last = pos + row % len;
            (0..keys).map(move |key| if key > last { f32::NEG_INFINITY } else { 0.0 })
        })
        .collect();
    Tensor::from_vec(mask, (group * len, keys), device).map(Some)
}

/// Causal grouped-query attention of `q` (`[1, heads, L, head_dim]`, positions `pos..pos+L`)
/// over `k`, `v` (`[1, kv_heads, pos + L, head_dim]`), with [`causal_mask`]'s mask. Returns
/// `[1, L, heads * head_dim]`.
fn attention(
    c: &Config,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let len = q.dim(2)?;
    let group = c.heads / c.kv_heads;
    // Query head h = j * group + g reads key/value head j: each group's queries as one matrix.
    let q = q.reshape((1, c.kv_heads, group * len, c.head_dim))?;
    let scores = (q.matmul(&k.t()?)? * (1.0 / (c.head_dim as f64).sqrt()))?;
    let scores = match mask {
        Some(mask) => scores.broadcast_add(mask)?,
        None => scores,
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    probs
        .matmul(&v.contiguous()?)?
        .reshape((1, c.heads, len, c.head_dim))?
        .transpose(1, 2)?
        .reshape((1, len, c.heads * c.head_dim))
}

/// The logits of `row` of a `[rows, vocab]` tensor, on the host (f32).
pub fn row_to_vec(logits: &Tensor, row: usize) -> Result<Vec<f32>> {
    logits.i(row)?.to_dtype(DType::F32)?.to_vec1()
}
