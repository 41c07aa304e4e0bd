//! Without the `llm` feature the simulated server knows no LLM calls: every request costs one
//! request and no tokens.

/// An LLM call; none exist without the `llm` feature.
#[derive(Clone, Debug)]
pub(crate) enum LlmCall {}

/// The tokens an answered call reports.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Generated {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
}

impl Generated {
    pub(crate) fn total(&self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}

impl LlmCall {
    pub(crate) fn parse(
        _method: &http::Method,
        _path: &str,
        _body: &[u8],
        _rule: super::TokenRule,
        _usage: super::UsageRule,
    ) -> Option<LlmCall> {
        None
    }

    pub(crate) fn charge(&self) -> u64 {
        match *self {}
    }

    pub(crate) fn generate(&self, _seq: u64) -> Generated {
        match *self {}
    }

    pub(crate) fn render(&self, _seq: u64, _generated: Generated) -> (&'static str, String) {
        match *self {}
    }
}
