//! The GGUF tokenizer against an independent implementation and against the vocabulary.

mod common;

/// Strings and their token ids as Hugging Face's `tokenizers` (Rust, through its Python
/// package) encodes them when built from this GGUF file's own tokens and merges with SmolLM2's
/// pre-tokenizer: `python tests/tokenizer_oracle.py MODEL.gguf strings.json` (the script is
/// beside this file; pip install gguf tokenizers).
const ORACLE: [(&str, &[u32]); 8] = [
    ("Hello world", &[19556, 905]),
    (
        "Translate to German: The house is wonderful.",
        &[8241, 12837, 288, 3697, 42, 378, 2291, 314, 8264, 30],
    ),
    (
        "In 2024, 1234567 people paid $3.50 each!",
        &[
            788, 216, 34, 32, 34, 36, 28, 216, 33, 34, 35, 36, 37, 38, 39, 701, 5940, 1885, 35, 30,
            37, 32, 971, 17,
        ],
    ),
    (
        "  leading spaces and  double  spaces\n\nnew lines\t tabs ",
        &[
            216, 2899, 5600, 284, 216, 5561, 216, 5600, 198, 198, 2241, 3204, 197, 29416, 216,
        ],
    ),
    (
        "Ünïcödé: 日本語のテキスト, emoji 🦀 and café",
        &[
            142, 246, 94, 25972, 83, 7466, 84, 2756, 42, 17097, 241, 115, 40993, 179, 120, 248,
            26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226, 28, 649, 33777, 15107, 116, 218,
            284, 37366,
        ],
    ),
    (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        &[
            1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198,
        ],
    ),
    (
        "don't you're we'll I'm it's",
        &[12420, 982, 346, 2316, 392, 3060, 339, 5248, 357, 506],
    ),
    (
        "fn main() { println!(\"{}\", x[0] >= 1_000); }",
        &[
            7853, 1085, 1000, 1662, 1628, 34115, 17, 43331, 1002, 1792, 75, 32, 77, 10888, 216, 33,
            79, 32, 32, 32, 4258, 4029,
        ],
    ),
];

#[test]
fn encodes_as_the_independent_tokenizer() {
    let (_, tokenizer) = common::model();
    for (text, ids) in ORACLE {
        assert_eq!(tokenizer.encode(text).unwrap(), ids, "{text:?}");
    }
}

#[test]
fn decodes_what_it_encodes() {
    let (_, tokenizer) = common::model();
    for (text, ids) in ORACLE {
        assert_eq!(tokenizer.decode(ids).unwrap(), text);
    }
}

/// Token ids looked up in the GGUF's vocabulary by their spelling (GPT-2's byte alphabet:
/// Ġ is a space, Ċ a newline).
#[test]
fn pieces_are_the_vocabularys_entries() {
    let (_, tokenizer) = common::model();
    assert_eq!(tokenizer.vocab_size(), 49152);
    let spelled = |pieces: &[&str]| -> Vec<u32> {
        pieces
            .iter()
            .map(|p| tokenizer.id(p).unwrap_or_else(|| panic!("{p:?}")))
            .collect()
    };
    assert_eq!(
        tokenizer.encode("Hello world").unwrap(),
        spelled(&["Hello", "Ġworld"])
    );
    assert_eq!(
        tokenizer.encode("<|im_start|>user\n").unwrap(),
        spelled(&["<|im_start|>", "user", "Ċ"])
    );
    // Digits one by one, the space before them on its own.
    assert_eq!(tokenizer.encode(" 42").unwrap(), spelled(&["Ġ", "4", "2"]));
    assert_eq!(tokenizer.token(tokenizer.eos()), Some("<|im_end|>"));
}
