//! The byte-level BPE tokenizer of a GGUF file (`tokenizer.ggml.model = gpt2`): its tokens,
//! token types and merges, and the pre-tokenizer its `tokenizer.ggml.pre` names.
//!
//! Encoding: control tokens (`<|im_start|>` and the like) are matched literally first; the text
//! between them is split by the pre-tokenizer (SmolLM's: every digit alone, then GPT-2's
//! pattern), each piece's UTF-8 bytes are mapped to GPT-2's printable byte alphabet, and merges
//! are applied lowest rank first until none applies. Decoding maps the alphabet back to bytes.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use fancy_regex::Regex;

/// GPT-2's pre-tokenizer pattern (as Hugging Face's ByteLevel pre-tokenizer uses it).
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// GGUF token types (`tokenizer.ggml.token_type`) of tokens matched literally in text and
/// decoded as their text: control tokens and user-defined (added) tokens.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// A byte-level BPE tokenizer read from GGUF metadata.
pub struct Tokenizer {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    /// Rank of each merge, by the pair of symbols it joins.
    ranks: HashMap<(String, String), usize>,
    /// Control and user-defined tokens, longest first (so a longer one wins where two share a
    /// prefix).
    control: Vec<(String, u32)>,
    /// Pieces of text before BPE.
    pattern: Regex,
    /// Whether digits are split one by one before the pattern applies.
    split_digits: bool,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    eos: u32,
}

/// What went wrong reading or using a tokenizer.
#[derive(Debug)]
pub struct TokenizerError(pub String);

impl std::fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TokenizerError {}

fn err<T>(message: impl Into<String>) -> Result<T, TokenizerError> {
    Err(TokenizerError(message.into()))
}

fn strings(content: &Content, key: &str) -> Result<Vec<String>, TokenizerError> {
    let Some(Value::Array(values)) = content.metadata.get(key) else {
        return err(format!("GGUF metadata lacks the array {key}"));
    };
    values
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            _ => err(format!("{key} holds a non-string")),
        })
        .collect()
}

impl Tokenizer {
    /// Reads the tokenizer of the GGUF file at `path`.
    pub fn from_gguf_file(path: &Path) -> Result<Self, TokenizerError> {
        let mut file = std::fs::File::open(path)
            .map_err(|e| TokenizerError(format!("cannot open {}: {e}", path.display())))?;
        let content = Content::read(&mut file)
            .map_err(|e| TokenizerError(format!("{} is not GGUF: {e}", path.display())))?;
        Self::from_gguf(&content)
    }

    /// Reads the tokenizer of parsed GGUF metadata.
    pub fn from_gguf(content: &Content) -> Result<Self, TokenizerError> {
        let text = |key: &str| match content.metadata.get(key) {
            Some(Value::String(s)) => Ok(s.as_str()),
            _ => err(format!("GGUF metadata lacks the string {key}")),
        };
        let model = text("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return err(format!(
                "tokenizer model {model:?}: only byte-level BPE (gpt2)"
            ));
        }
        // llama.cpp's names of pre-tokenizers: these two are GPT-2's pattern, SmolLM's with
        // digits split first.
        let split_digits = match text("tokenizer.ggml.pre")? {
            "smollm" => true,
            "gpt2" | "default" => false,
            other => return err(format!("pre-tokenizer {other:?} is not supported")),
        };
        let tokens = strings(content, "tokenizer.ggml.tokens")?;
        let merges = strings(content, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(v)) => v
                .iter()
                .map(|t| t.to_i32().map_err(|e| TokenizerError(e.to_string())))
                .collect::<Result<_, _>>()?,
            _ => return err("GGUF metadata lacks tokenizer.ggml.token_type"),
        };
        if types.len() != tokens.len() {
            return err("token types and tokens differ in length");
        }
        let eos = match content.metadata.get("tokenizer.ggml.eos_token_id") {
            Some(v) => v.to_u32().map_err(|e| TokenizerError(e.to_string()))?,
            None => return err("GGUF metadata lacks tokenizer.ggml.eos_token_id"),
        };
        let ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            let Some((a, b)) = merge.split_once(' ') else {
                return err(format!("merge {rank} ({merge:?}) is not two symbols"));
            };
            ranks.entry((a.to_string(), b.to_string())).or_insert(rank);
        }
        let mut control: Vec<(String, u32)> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (s, t))| (**t == CONTROL || **t == USER_DEFINED) && !s.is_empty())
            .map(|(i, (s, _))| (s.clone(), i as u32))
            .collect();
        control.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let byte_to_char = gpt2_byte_alphabet();
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Ok(Tokenizer {
            tokens,
            ids,
            ranks,
            control,
            pattern: Regex::new(GPT2_PATTERN).expect("the GPT-2 pattern compiles"),
            split_digits,
            byte_to_char,
            char_to_byte,
            eos,
        })
    }

    /// The number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The end-of-sequence token (for an instruct model, the end of its turn).
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// The token string of `id` as the vocabulary spells it (GPT-2's byte alphabet).
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a token string, as the vocabulary spells it.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Encodes `text`; control (and user-defined) tokens written literally in it become their
    /// ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            // The earliest control token (the longest where several start at one place).
            let next = self
                .control
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            let (plain, control) = match next {
                Some((at, len, id)) => (&rest[..at], Some((id, at + len))),
                None => (rest, None),
            };
            self.encode_plain(plain, &mut out)?;
            match control {
                Some((id, end)) => {
                    out.push(id);
                    rest = &rest[end..];
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Decodes `ids` to text (invalid UTF-8, as a cut multi-byte character, becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(token) = self.token(id) else {
                return err(format!("token {id} is outside the vocabulary"));
            };
            if self.control.iter().any(|(_, c)| *c == id) {
                bytes.extend_from_slice(token.as_bytes());
                continue;
            }
            for ch in token.chars() {
                match self.char_to_byte.get(&ch) {
                    Some(&b) => bytes.push(b),
                    None => return err(format!("token {id} ({token:?}) holds a non-byte symbol")),
                }
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Encodes text holding no control token.
    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        for chunk in self.digit_chunks(text) {
            for piece in self.pattern.find_iter(chunk) {
                let piece = piece.map_err(|e| TokenizerError(e.to_string()))?.as_str();
                self.encode_piece(piece, out)?;
            }
        }
        Ok(())
    }

    /// `text` cut before and after every digit (\p{N}), if this pre-tokenizer splits digits.
    fn digit_chunks<'t>(&self, text: &'t str) -> Vec<&'t str> {
        if !self.split_digits {
            return vec![text];
        }
        let mut chunks = Vec::new();
        let mut start = 0;
        for (at, ch) in text.char_indices() {
            if ch.is_numeric() {
                if start < at {
                    chunks.push(&text[start..at]);
                }
                let end = at + ch.len_utf8();
                chunks.push(&text[at..end]);
                start = end;
            }
        }
        if start < text.len() {
            chunks.push(&text[start..]);
        }
        chunks
    }

    /// BPE over one pre-tokenized piece.
    fn encode_piece(&self, piece: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let mut symbols: Vec<String> = piece
            .bytes()
            .map(|b| self.byte_to_char[b as usize].to_string())
            .collect();
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let right = symbols.remove(i + 1);
            symbols[i].push_str(&right);
        }
        for s in symbols {
            match self.ids.get(&s) {
                Some(&id) => out.push(id),
                None => {
                    return err(format!(
                        "BPE produced {s:?}, which is not in the vocabulary"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// GPT-2's map of bytes to printable characters: printable Latin-1 bytes map to themselves,
/// the others to U+0100 onwards in byte order.
fn gpt2_byte_alphabet() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut map = ['\0'; 256];
    let mut next = 0x100u32;
    for b in 0..256u32 {
        map[b as usize] = if printable(b) {
            char::from_u32(b).expect("Latin-1")
        } else {
            let c = char::from_u32(next).expect("below U+0200");
            next += 1;
            c
        };
    }
    map
}
