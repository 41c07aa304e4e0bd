//! Policies per model ([`Policy::model`]): on one host, each model named here is budgeted in
//! its own lanes under its own limits, the others under the host's.
//!
//! A model is found by the name its lanes carry (`scheme://host:port/MODEL/key:…`, see
//! [`LaneKey::model`]), which writes a few characters of a model's name otherwise: the names
//! given here are written the same way, and two that would meet in one lane are refused.

use std::sync::Arc;

use super::error::PolicyError;
use super::Policy;
use crate::key::model_segment;

/// The models of a policy that have their own.
#[derive(Clone, Debug, Default)]
pub(super) struct Models {
    /// In the order given.
    entries: Vec<ModelPolicy>,
}

#[derive(Clone, Debug)]
struct ModelPolicy {
    /// As given.
    name: String,
    /// As lane names write it.
    lane: String,
    policy: Arc<Policy>,
}

impl Models {
    /// Gives `name` its `policy`, replacing the one it had.
    pub(super) fn insert(&mut self, name: String, policy: Policy) {
        let entry = ModelPolicy {
            lane: model_segment(&name),
            name,
            policy: Arc::new(policy),
        };
        match self.entries.iter_mut().find(|e| e.name == entry.name) {
            Some(existing) => *existing = entry,
            None => self.entries.push(entry),
        }
    }

    /// The policy of the model whose lanes carry `model`.
    pub(super) fn for_lane(&self, model: &str) -> Option<&Arc<Policy>> {
        self.entries
            .iter()
            .find(|entry| entry.lane == model)
            .map(|entry| &entry.policy)
    }

    /// The policy given to `name`.
    pub(super) fn get(&self, name: &str) -> Option<&Policy> {
        self.entries
            .iter()
            .find(|entry| entry.name == name)
            .map(|entry| &*entry.policy)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Policy)> + '_ {
        self.entries
            .iter()
            .map(|entry| (entry.name.as_str(), &*entry.policy))
    }

    /// Checks the models of a policy that has (`has_cost_model`) or has not a cost model.
    pub(super) fn validate(&self, has_cost_model: bool) -> Result<(), PolicyError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        if !has_cost_model {
            return Err(PolicyError::ModelsWithoutCostModel);
        }
        for (index, entry) in self.entries.iter().enumerate() {
            if entry.name.trim().is_empty() || entry.name == "-" {
                return Err(PolicyError::ModelName {
                    model: entry.name.clone(),
                });
            }
            if let Some(earlier) = self.entries[..index].iter().find(|e| e.lane == entry.lane) {
                return Err(PolicyError::SameModelLane {
                    first: earlier.name.clone(),
                    second: entry.name.clone(),
                    lane: entry.lane.clone(),
                });
            }
            let in_model = |error| PolicyError::InModel {
                model: entry.name.clone(),
                error: Box::new(error),
            };
            if !entry.policy.models.entries.is_empty() {
                return Err(in_model(PolicyError::NestedModels));
            }
            if entry.policy.cost_model.is_none() {
                return Err(in_model(PolicyError::ModelWithoutCostModel));
            }
            entry.policy.validate().map_err(in_model)?;
        }
        Ok(())
    }
}
