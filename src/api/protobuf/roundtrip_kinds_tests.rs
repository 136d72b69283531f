//! k8s-pb → JSON → k8s-openapi roundtrips of kinds served since every GA kind of v1.35 is:
//! PriorityClass, CertificateSigningRequest (bytes, a map of string lists, conditions) and
//! ValidatingWebhookConfiguration (the inlined Rule of RuleWithOperations).

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1 as oadm;
use k8s_openapi::api::certificates::v1 as ocert;
use k8s_openapi::api::scheduling::v1 as osched;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as oam;
use k8s_openapi::ByteString;
use k8s_pb::api::admissionregistration::v1 as padm;
use k8s_pb::api::certificates::v1 as pcert;
use k8s_pb::api::scheduling::v1 as psched;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pbm;

use super::roundtrip_tests::{oa_meta, oa_time, pb_meta, roundtrip, s, strings, time};

#[test]
fn priority_class_roundtrips() {
    let pc = psched::PriorityClass {
        metadata: pb_meta("high"),
        value: Some(1_000_000),
        global_default: Some(true),
        description: s("important"),
        preemption_policy: s("Never"),
    };
    let want = osched::PriorityClass {
        metadata: oa_meta("high"),
        value: 1_000_000,
        global_default: Some(true),
        description: s("important"),
        preemption_policy: s("Never"),
    };
    roundtrip(&pc, &want);
}

#[test]
fn certificate_signing_request_roundtrips() {
    let request =
        b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n".to_vec();
    let csr = pcert::CertificateSigningRequest {
        metadata: pb_meta("alice"),
        spec: Some(pcert::CertificateSigningRequestSpec {
            request: Some(request.clone()),
            signer_name: s("kubernetes.io/kube-apiserver-client"),
            expiration_seconds: Some(86400),
            usages: strings(&["digital signature", "client auth"]),
            username: s("system:admin"),
            uid: s("u-1"),
            groups: strings(&["system:masters", "system:authenticated"]),
            extra: [(
                "scopes".to_owned(),
                pcert::ExtraValue {
                    items: strings(&["a", "b"]),
                },
            )]
            .into_iter()
            .collect(),
        }),
        status: Some(pcert::CertificateSigningRequestStatus {
            conditions: vec![pcert::CertificateSigningRequestCondition {
                r#type: s("Approved"),
                status: s("True"),
                reason: s("KubectlApprove"),
                message: s("approved"),
                last_update_time: Some(time(1_700_000_000)),
                last_transition_time: Some(time(1_700_000_000)),
            }],
            certificate: None,
        }),
    };
    let want = ocert::CertificateSigningRequest {
        metadata: oa_meta("alice"),
        spec: ocert::CertificateSigningRequestSpec {
            request: ByteString(request),
            signer_name: "kubernetes.io/kube-apiserver-client".into(),
            expiration_seconds: Some(86400),
            usages: Some(strings(&["digital signature", "client auth"])),
            username: s("system:admin"),
            uid: s("u-1"),
            groups: Some(strings(&["system:masters", "system:authenticated"])),
            extra: Some(BTreeMap::from([(
                "scopes".to_owned(),
                strings(&["a", "b"]),
            )])),
        },
        status: Some(ocert::CertificateSigningRequestStatus {
            conditions: Some(vec![ocert::CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: s("KubectlApprove"),
                message: s("approved"),
                last_update_time: Some(oa_time(1_700_000_000)),
                last_transition_time: Some(oa_time(1_700_000_000)),
            }]),
            certificate: None,
        }),
    };
    roundtrip(&csr, &want);
}

#[test]
fn validating_webhook_configuration_roundtrips_with_inlined_rules() {
    let cfg = padm::ValidatingWebhookConfiguration {
        metadata: pb_meta("check"),
        webhooks: vec![padm::ValidatingWebhook {
            name: s("check.example.com"),
            client_config: Some(padm::WebhookClientConfig {
                url: s("https://127.0.0.1:9443/validate"),
                service: None,
                ca_bundle: Some(b"ca".to_vec()),
            }),
            rules: vec![padm::RuleWithOperations {
                operations: strings(&["CREATE", "UPDATE"]),
                rule: Some(padm::Rule {
                    api_groups: strings(&[""]),
                    api_versions: strings(&["v1"]),
                    resources: strings(&["configmaps"]),
                    scope: s("Namespaced"),
                }),
            }],
            failure_policy: s("Ignore"),
            match_policy: s("Exact"),
            namespace_selector: Some(pbm::LabelSelector::default()),
            object_selector: None,
            side_effects: s("None"),
            timeout_seconds: Some(5),
            admission_review_versions: strings(&["v1"]),
            match_conditions: vec![],
        }],
    };
    let want = oadm::ValidatingWebhookConfiguration {
        metadata: oa_meta("check"),
        webhooks: Some(vec![oadm::ValidatingWebhook {
            name: "check.example.com".into(),
            client_config: oadm::WebhookClientConfig {
                url: s("https://127.0.0.1:9443/validate"),
                service: None,
                ca_bundle: Some(ByteString(b"ca".to_vec())),
            },
            rules: Some(vec![oadm::RuleWithOperations {
                operations: Some(strings(&["CREATE", "UPDATE"])),
                api_groups: Some(strings(&[""])),
                api_versions: Some(strings(&["v1"])),
                resources: Some(strings(&["configmaps"])),
                scope: s("Namespaced"),
            }]),
            failure_policy: s("Ignore"),
            match_policy: s("Exact"),
            namespace_selector: Some(oam::LabelSelector::default()),
            object_selector: None,
            side_effects: "None".into(),
            timeout_seconds: Some(5),
            admission_review_versions: strings(&["v1"]),
            match_conditions: None,
        }]),
    };
    roundtrip(&cfg, &want);
}
