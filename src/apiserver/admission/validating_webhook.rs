//! `ValidatingAdmissionWebhook`: calls the webhooks of the stored
//! ValidatingWebhookConfigurations, all at once, after the kind's validation (see
//! [`super::webhook`]).
//!
//! Invariant: it never changes the object; any refusal stops the write.

use super::webhook::{Flavor, Webhooks};
use super::{Admit, Attributes, Plugin};
use crate::api::registry::ResourceType;
use crate::apiserver::ApiState;
use serde_json::Value;
use std::sync::Arc;

pub struct ValidatingAdmissionWebhook {
    hooks: Webhooks,
}

impl Default for ValidatingAdmissionWebhook {
    fn default() -> Self {
        ValidatingAdmissionWebhook {
            hooks: Webhooks::new(Flavor::Validating),
        }
    }
}

impl Plugin for ValidatingAdmissionWebhook {
    fn name(&self) -> &'static str {
        "ValidatingAdmissionWebhook"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        self.hooks.handles(attrs)
    }

    fn observe_write(&self, rt: &ResourceType) {
        self.hooks.cache.observe_write(rt);
    }

    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(self.hooks.validate(state, attrs, obj, old))
    }
}
