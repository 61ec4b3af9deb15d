//! The prompts of the measurement, in SmolLM2's chat format.

/// A named prompt.
#[derive(Debug, Clone, Copy)]
pub struct Prompt {
    /// Short name (the table's row label).
    pub name: &'static str,
    /// The user's message.
    pub text: &'static str,
}

/// Translation (the paper's task, WMT16 style), question answering, and a story.
pub const PROMPTS: [Prompt; 3] = [
    Prompt {
        name: "translation",
        text: "Translate to German: The weather is beautiful today, so we will walk to the \
               market and buy fresh bread, cheese and apples.",
    },
    Prompt {
        name: "qa",
        text: "What is the capital of France, and why is it famous? Answer in a few sentences.",
    },
    Prompt {
        name: "story",
        text: "Write a short story about a robot who learns to paint.",
    },
];

/// `text` as the user's turn of SmolLM2-Instruct's chat template (its GGUF's
/// `tokenizer.chat_template`, with the default system message), ready for the assistant.
pub fn chat(text: &str) -> String {
    format!(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    )
}
