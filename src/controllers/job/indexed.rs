//! Indexed Jobs: completion indexes of pods (annotation and label), the compressed interval
//! strings of `status.completedIndexes` / `status.failedIndexes` ("1,3-5"), and which
//! indexes still need a pod.
//!
//! Invariant: an [`Intervals`] is sorted, non-overlapping and non-adjacent, so its string
//! form is canonical and two equal index sets always compare and print equal.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};
use std::collections::BTreeSet;

/// Annotation (and label) carrying a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// How many failures the pod's index had before this pod (backoffLimitPerIndex).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// How many failures ignored by the pod failure policy the index had before this pod.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// The environment variable a pod reads its index from (through the downward API).
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// A set of indexes as sorted closed intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<(u32, u32)>);

impl Intervals {
    /// Parses "1,3-5", keeping only indexes below `completions`; malformed parts are
    /// skipped (the API server validated the string; an old one may hold indexes since
    /// scaled away).
    pub fn parse(s: &str, completions: u32) -> Intervals {
        let mut set = BTreeSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<u32>(), b.parse::<u32>()),
                None => (part.parse::<u32>(), part.parse::<u32>()),
            };
            let (Ok(a), Ok(b)) = (a, b) else { continue };
            for i in a..=b.min(completions.saturating_sub(1)) {
                set.insert(i);
            }
        }
        Intervals::from_sorted(set)
    }

    /// The intervals of a set of indexes.
    pub fn from_sorted(indexes: impl IntoIterator<Item = u32>) -> Intervals {
        let mut v: Vec<(u32, u32)> = Vec::new();
        for i in indexes {
            match v.last_mut() {
                Some((_, last)) if *last + 1 == i => *last = i,
                Some((_, last)) if *last >= i => {}
                _ => v.push((i, i)),
            }
        }
        Intervals(v)
    }

    pub fn has(&self, i: u32) -> bool {
        self.0.iter().any(|&(a, b)| a <= i && i <= b)
    }

    pub fn total(&self) -> u32 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().flat_map(|&(a, b)| a..=b)
    }

    /// This set plus `more`.
    pub fn with(&self, more: impl IntoIterator<Item = u32>) -> Intervals {
        let set: BTreeSet<u32> = self.iter().chain(more).collect();
        Intervals::from_sorted(set)
    }

    /// How many of `rule`'s indexes are in `self` (success policy matching).
    pub fn overlap(&self, rule: &Intervals) -> u32 {
        rule.iter().filter(|&i| self.has(i)).count() as u32
    }
}

impl std::fmt::Display for Intervals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, &(a, b)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else if b == a + 1 {
                write!(f, "{a},{b}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// The completion index a pod carries, if valid.
pub fn index_of(pod: &Pod) -> Option<u32> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .and_then(|v| v.parse().ok())
}

/// An integer annotation of a pod, 0 when absent or malformed.
pub fn count_annotation(pod: &Pod, key: &str) -> u32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Gives every container and init container `JOB_COMPLETION_INDEX` from the pod's
/// completion-index annotation (the kubelet resolves it through the downward API).
pub fn add_index_env(template: &mut PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let var = EnvVar {
        name: INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..Default::default()
        }),
    };
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        let env = c.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.name == INDEX_ENV) {
            env.push(var.clone());
        }
    }
}

/// Marks a pod template with its index: annotation, label and hostname `<job>-<index>`.
pub fn set_index(template: &mut PodTemplateSpec, job_name: &str, index: u32) {
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX.into(), index.to_string());
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX.into(), index.to_string());
    if let Some(spec) = template.spec.as_mut() {
        spec.hostname = Some(format!("{job_name}-{index}"));
    }
}

/// The first `count` indexes below `completions` that are neither succeeded, failed, nor
/// held by an active pod.
pub fn first_pending(
    count: usize,
    completions: u32,
    succeeded: &Intervals,
    failed: Option<&Intervals>,
    active: &BTreeSet<u32>,
) -> Vec<u32> {
    (0..completions)
        .filter(|i| !succeeded.has(*i) && !failed.is_some_and(|f| f.has(*i)) && !active.contains(i))
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_strings_compress_runs_and_keep_pairs_apart() {
        let i = Intervals::from_sorted([0, 1, 3, 4, 5, 7, 9, 10]);
        assert_eq!(i.to_string(), "0,1,3-5,7,9,10");
        assert_eq!(i.total(), 8);
        assert_eq!(Intervals::from_sorted([2]).to_string(), "2");
        assert_eq!(Intervals::default().to_string(), "");
    }

    #[test]
    fn interval_strings_parse_back_and_drop_indexes_past_completions() {
        let i = Intervals::parse("1,3-5,8-12", 10);
        assert_eq!(i.to_string(), "1,3-5,8,9");
        assert!(i.has(4) && !i.has(2) && !i.has(10));
        assert_eq!(Intervals::parse("0-2", 3).with([4, 3]).to_string(), "0-4");
        assert_eq!(Intervals::parse("x,2", 5).to_string(), "2");
    }

    #[test]
    fn pending_indexes_skip_succeeded_failed_and_active_ones() {
        let succeeded = Intervals::parse("0,2", 6);
        let failed = Intervals::parse("3", 6);
        let active = BTreeSet::from([1]);
        assert_eq!(
            first_pending(5, 6, &succeeded, Some(&failed), &active),
            vec![4, 5]
        );
        assert_eq!(first_pending(1, 6, &succeeded, None, &active), vec![3]);
    }

    #[test]
    fn index_env_reads_the_annotation_through_the_downward_api() {
        let mut t: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "i"}]}
        }))
        .unwrap();
        add_index_env(&mut t);
        set_index(&mut t, "work", 3);
        let spec = t.spec.unwrap();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let env = c.env.as_ref().unwrap();
            let path = &env[0]
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path;
            assert_eq!(
                path,
                "metadata.annotations['batch.kubernetes.io/job-completion-index']"
            );
        }
        assert_eq!(spec.hostname.as_deref(), Some("work-3"));
        assert_eq!(t.metadata.unwrap().labels.unwrap()[COMPLETION_INDEX], "3");
    }
}
