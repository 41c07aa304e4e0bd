//! How the simulated LLM server counts a call's tokens: what its limiter charges when the call
//! arrives ([`TokenRule`]) and what its answer reports in `usage` ([`UsageRule`]). Both rules
//! are the server's, chosen by the test, so that a test can put the client's estimator against
//! counts it did not make.

/// How the simulated server's limiter counts the tokens of an LLM call (feature `llm`) when it
/// arrives; see [`SimulatedApiBuilder::token_rule`](super::SimulatedApiBuilder::token_rule).
///
/// Whatever the rule, a call is charged `prompt + allowance` when it arrives and nothing is
/// given back when the completion is shorter (as OpenAI's limiter does); the answer reports a
/// completion of at most the allowance (at most `max_tokens` × `n`, when the body sets one).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum TokenRule {
    /// The server's own rule, independent of the client's code, and the default: prompt =
    /// ⌈characters of the whole request body (JSON punctuation, keys, model name and all) / 4⌉;
    /// allowance = `max_tokens` (or `max_completion_tokens`, or `max_output_tokens`, the first
    /// present) × `n`, or when none is present 1 024 × `n` (16 × `n` for a legacy
    /// `/completions` call, as OpenAI documents; 0 for `/embeddings`). A body that is not a
    /// JSON object is not an LLM call.
    #[default]
    CharsOver4,
    /// Prompt as [`CharsOver4`](Self::CharsOver4); allowance a fixed number of output tokens
    /// whatever the body asks for (0 for `/embeddings`), as mock servers that charge a flat
    /// completion estimate do.
    CharsOver4FixedOutput(u64),
    /// The client's estimate scaled by a fixed factor: the charge is ⌈client total × factor⌉
    /// and the prompt ⌈client prompt × factor⌉ (the rest is the allowance), so the client is
    /// off by a known factor: `ScaledEstimate(1.25)` charges 25 % more than the client
    /// books, `ScaledEstimate(0.75)` 25 % fewer.
    ///
    /// This rule **shares the code under test** (`reqwest_throttle::llm::estimate`) on purpose,
    /// to put a known error on it; `ScaledEstimate(1.0)` is the client's count itself, which
    /// can never show an estimate to be wrong. Prefer the rules above for anything else.
    ///
    /// The factor is clamped to `[0, 1000]`; NaN counts as 1.
    ScaledEstimate(f64),
}

/// What the simulated server reports as the prompt tokens (`prompt_tokens`, `input_tokens`) in
/// an answer's `usage`; see [`SimulatedApiBuilder::usage_rule`](super::SimulatedApiBuilder::usage_rule).
///
/// Real providers report their model's tokenizer count in `usage`, which is not what their
/// limiter charged on arrival (OpenAI's limiter counts about four characters a token of the
/// request): a client that learns the limiter's charge from `usage` alone learns the wrong one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UsageRule {
    /// The prompt as the [`TokenRule`] charged it (the default).
    #[default]
    AsCharged,
    /// The server's own tokenizer: one token per word (a run of letters and digits) and per
    /// other visible character, in every string value of the body but the model's name, plus 3
    /// per message and 3 for the reply. The limiter still charges by the [`TokenRule`].
    Words,
}
