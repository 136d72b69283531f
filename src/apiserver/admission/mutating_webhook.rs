//! `MutatingAdmissionWebhook`: calls the webhooks of the stored
//! MutatingWebhookConfigurations in order, applying their JSONPatches (see [`super::webhook`]).
//!
//! Invariant: the object the kind's validation sees is the one the last webhook left.
//! Upstream also calls mutating webhooks for deletes (with no object); the chain has no
//! mutating phase for deletes, so they run at the start of the validating phase here,
//! before any validating plugin.

use super::webhook::{Flavor, Webhooks};
use super::{Admit, Attributes, Operation, Plugin};
use crate::api::registry::ResourceType;
use crate::apiserver::ApiState;
use serde_json::Value;
use std::sync::Arc;

pub struct MutatingAdmissionWebhook {
    hooks: Webhooks,
}

impl Default for MutatingAdmissionWebhook {
    fn default() -> Self {
        MutatingAdmissionWebhook {
            hooks: Webhooks::new(Flavor::Mutating),
        }
    }
}

impl Plugin for MutatingAdmissionWebhook {
    fn name(&self) -> &'static str {
        "MutatingAdmissionWebhook"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        self.hooks.handles(attrs)
    }

    fn observe_write(&self, rt: &ResourceType) {
        self.hooks.cache.observe_write(rt);
    }

    fn admit<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(self.hooks.mutate(state, attrs, Some(obj), old))
    }

    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        _obj: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            match attrs.operation {
                // A delete has no object to mutate, so its mutating webhooks run here (a
                // patch is then an error); a connect's options went through `admit`.
                Operation::Delete => self.hooks.mutate(state, attrs, None, old).await,
                Operation::Create | Operation::Update | Operation::Connect => Ok(()),
            }
        })
    }
}
