//! Counting the tokens of a piece of text for a model.
//!
//! With the `tiktoken` feature the count is exact for OpenAI models: tiktoken-rs picks the
//! encoding of the model's family (`o200k_base` for gpt-4o, gpt-4.1, gpt-5 and the o-series,
//! `cl100k_base` for gpt-4, gpt-3.5-turbo and the `text-embedding-*` models, `p50k`/`r50k` for
//! the legacy completion models) from BPE tables compiled into that crate, so nothing is
//! downloaded. A model tiktoken does not know (Claude, a local model, an Azure deployment
//! name) is counted with `o200k_base`, the encoding of current OpenAI models: close for most
//! modern tokenizers, and reconciled with the server's `usage` after the response anyway.
//!
//! Without the feature, a text counts [`CHARS_PER_TOKEN`] characters per token, rounded up:
//! OpenAI's rule of thumb for English text. It is cheap and needs no tables; it over- or
//! under-estimates by ±30 % on code and non-English text, which the reconciliation with
//! `usage` corrects after each response.

/// Characters per token of the estimate used without the `tiktoken` feature (OpenAI's rule of
/// thumb for English text: "one token is about four characters").
pub const CHARS_PER_TOKEN: u64 = 4;

/// A token counter for one model, chosen once per request.
#[derive(Clone, Copy)]
pub(crate) struct Counter {
    #[cfg(feature = "tiktoken")]
    bpe: &'static tiktoken_rs::CoreBPE,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counter")
    }
}

impl Counter {
    /// The counter of `model`'s family.
    #[cfg(feature = "tiktoken")]
    pub(crate) fn for_model(model: &str) -> Counter {
        use tiktoken_rs::tokenizer::{get_tokenizer, Tokenizer};
        let tokenizer = get_tokenizer(model).unwrap_or(Tokenizer::O200kBase);
        // `bpe_for_tokenizer` never fails in this version; fall back to o200k if it ever does.
        let bpe = tiktoken_rs::bpe_for_tokenizer(tokenizer)
            .unwrap_or_else(|_| tiktoken_rs::o200k_base_singleton());
        Counter { bpe }
    }

    /// The counter of `model`'s family.
    #[cfg(not(feature = "tiktoken"))]
    pub(crate) fn for_model(model: &str) -> Counter {
        let _ = model;
        Counter {}
    }

    /// Tokens of `text` (special tokens such as `<|endoftext|>` in the text count as one token
    /// each, as tiktoken-rs's own message counting does).
    #[cfg(feature = "tiktoken")]
    pub(crate) fn count(&self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        self.bpe.count_with_special_tokens(text) as u64
    }

    /// Tokens of `text`: [`CHARS_PER_TOKEN`] characters per token, rounded up.
    #[cfg(not(feature = "tiktoken"))]
    pub(crate) fn count(&self, text: &str) -> u64 {
        (text.chars().count() as u64).div_ceil(CHARS_PER_TOKEN)
    }
}

/// Tokens of `text` for `model`, counted the way this crate estimates prompts: exact with the
/// `tiktoken` feature (the encoding of the model's family; `o200k_base` for a model tiktoken-rs
/// does not know), [`CHARS_PER_TOKEN`] characters per token, rounded up, without it.
///
/// ```
/// use reqwest_throttle::llm::count_tokens;
///
/// let tokens = count_tokens("gpt-4o", "Hello, world!");
/// assert!(tokens >= 3 && tokens <= 4);
/// assert_eq!(count_tokens("gpt-4o", ""), 0);
/// ```
pub fn count_tokens(model: &str, text: &str) -> u64 {
    Counter::for_model(model).count(text)
}
