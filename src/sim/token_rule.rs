//! How the simulated LLM server counts a call's tokens: the rule is the server's, chosen by the
//! test, so that a test can put the client's estimator against a count it did not make.

/// How the simulated server counts the tokens of an LLM call (feature `llm`), both what it
/// charges against the tokens limit when the call arrives and the `prompt_tokens` /
/// `input_tokens` its answer reports in `usage`; see
/// [`SimulatedApiBuilder::token_rule`](super::SimulatedApiBuilder::token_rule).
///
/// Whatever the rule, a call is charged `prompt + allowance` when it arrives and nothing is
/// given back when the completion is shorter; the answer reports the prompt as charged and a
/// completion of at most the allowance.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum TokenRule {
    /// The client's own estimator, `reqwest_throttle::llm::estimate`: prompt = its input tokens,
    /// allowance = its output allowance. The default, so that a test of pacing sees no
    /// estimation error at all.
    ///
    /// This rule **shares the code under test**: the server agrees with the client by
    /// construction, so a test that runs under it cannot see a client estimate that is off.
    /// A test of estimates, of reconciliation from `usage`, or of pacing under a real
    /// provider's count must pick [`CharsOver4`](Self::CharsOver4) or
    /// [`ScaledEstimate`](Self::ScaledEstimate).
    #[default]
    ClientEstimate,
    /// The server's own rule, independent of the client's code: prompt = ⌈characters of the
    /// whole request body (JSON punctuation, keys, model name and all) / 4⌉; allowance =
    /// `max_tokens` (or `max_completion_tokens`, or `max_output_tokens`, the first present) ×
    /// `n`, or when none is present 1 024 × `n` (16 × `n` for a legacy `/completions` call, as
    /// OpenAI documents; 0 for `/embeddings`). A body that is not a JSON object is not an LLM
    /// call.
    CharsOver4,
    /// The client's estimate scaled by a fixed factor: the charge is ⌈client total × factor⌉
    /// and the prompt ⌈client prompt × factor⌉ (the rest is the allowance), so the client is
    /// off by a known factor: `ScaledEstimate(1.25)` charges 25 % more than the client
    /// books, `ScaledEstimate(0.75)` 25 % fewer.
    ///
    /// The factor is clamped to `[0, 1000]`; NaN counts as 1.
    ScaledEstimate(f64),
}
