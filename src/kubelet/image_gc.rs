//! Image garbage collection, as upstream's image manager: every `period` (5 min), when the
//! image filesystem is used past `high_threshold_percent` (85), unused images are removed,
//! least recently used first, until usage is back at `low_threshold_percent` (80). An image
//! is never removed while a container (even an exited one) uses it, nor before `min_age`
//! (2 min) has passed since the kubelet first saw it. Not freeing enough is a
//! `FreeDiskSpaceFailed` warning on the Node.
//!
//! What images were first seen and last used is kept in memory, as upstream: a restarted
//! agent sees every image as new, so it removes nothing in its first `min_age`.

use super::cri::{Cri, CriError, FsStats, StoredImage};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `--image-gc-high-threshold`, `--image-gc-low-threshold`, `--image-minimum-gc-age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    pub high_threshold_percent: u8,
    pub low_threshold_percent: u8,
    pub min_age: Duration,
    /// How often usage is checked (upstream's fixed `ImageGCPeriod`).
    pub period: Duration,
}

impl Default for ImageGcPolicy {
    fn default() -> Self {
        ImageGcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
            period: Duration::from_secs(300),
        }
    }
}

impl ImageGcPolicy {
    /// Checks the thresholds as upstream's kubelet config validation does.
    pub fn validate(&self) -> Result<(), String> {
        if self.high_threshold_percent > 100 {
            return Err(format!(
                "--image-gc-high-threshold {} must be between 0 and 100",
                self.high_threshold_percent
            ));
        }
        if self.low_threshold_percent > 100 {
            return Err(format!(
                "--image-gc-low-threshold {} must be between 0 and 100",
                self.low_threshold_percent
            ));
        }
        if self.low_threshold_percent >= self.high_threshold_percent {
            return Err(format!(
                "--image-gc-low-threshold {} must be less than --image-gc-high-threshold {}",
                self.low_threshold_percent, self.high_threshold_percent
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    first_detected: Instant,
    /// `None`: never seen in use.
    last_used: Option<Instant>,
}

/// One pass's decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Bytes to free to get back to the low threshold (0: below the high one).
    pub to_free: u64,
    /// Images to remove, in order.
    pub victims: Vec<String>,
    /// What removing the victims frees (by the images' sizes).
    pub freeing: u64,
}

pub struct ImageGc {
    policy: ImageGcPolicy,
    seen: HashMap<String, Seen>,
}

impl ImageGc {
    pub fn new(policy: ImageGcPolicy) -> ImageGc {
        ImageGc {
            policy,
            seen: HashMap::new(),
        }
    }

    pub fn policy(&self) -> &ImageGcPolicy {
        &self.policy
    }

    /// Notes which images exist and which are in use at `now`, then decides what to remove.
    pub fn plan(&mut self, images: &[StoredImage], fs: FsStats, now: Instant) -> Plan {
        let to_free = bytes_to_free(&self.policy, fs);
        self.plan_freeing(images, to_free, now)
    }

    /// [`ImageGc::plan`] for a given amount (`u64::MAX`: every image that may go).
    fn plan_freeing(&mut self, images: &[StoredImage], to_free: u64, now: Instant) -> Plan {
        self.seen.retain(|id, _| images.iter().any(|i| &i.id == id));
        for i in images {
            let seen = self.seen.entry(i.id.clone()).or_insert(Seen {
                first_detected: now,
                last_used: None,
            });
            if i.in_use {
                seen.last_used = Some(now);
            }
        }
        if to_free == 0 {
            return Plan::default();
        }
        let mut candidates: Vec<(&StoredImage, Seen)> = images
            .iter()
            .filter(|i| !i.in_use)
            .filter_map(|i| Some((i, *self.seen.get(&i.id)?)))
            .filter(|(_, s)| now.duration_since(s.first_detected) >= self.policy.min_age)
            .collect();
        // Least recently used first (never used before any use), then first detected.
        candidates.sort_by_key(|(i, s)| (s.last_used, s.first_detected, i.id.clone()));
        let mut plan = Plan {
            to_free,
            ..Plan::default()
        };
        for (i, _) in candidates {
            if plan.freeing >= to_free {
                break;
            }
            plan.victims.push(i.id.clone());
            plan.freeing += i.size;
        }
        plan
    }

    /// One pass against the runtime; returns the plan carried out and the bytes the runtime
    /// reports freed. A shortfall is the `Err` upstream's message describes.
    pub async fn run_once(&mut self, cri: &dyn Cri) -> Result<(Plan, u64), GcError> {
        let fs = cri.image_fs_info().await?;
        if fs.capacity == 0 {
            return Err(GcError::InvalidCapacity);
        }
        let images = cri.list_images().await?;
        let plan = self.plan(&images, fs, Instant::now());
        let freed = if plan.victims.is_empty() {
            0
        } else {
            cri.remove_images(plan.victims.clone()).await?
        };
        if plan.freeing < plan.to_free {
            return Err(GcError::Shortfall {
                wanted: plan.to_free,
                found: plan.freeing,
            });
        }
        Ok((plan, freed))
    }
}

impl ImageGc {
    /// Node-level reclaim under disk pressure, before any pod is evicted (upstream's
    /// `DeleteUnusedImages`): every unused image past `min_age`, whatever the thresholds.
    /// Returns the bytes freed.
    pub async fn remove_unused(&mut self, cri: &dyn Cri) -> Result<u64, GcError> {
        let images = cri.list_images().await?;
        let plan = self.plan_freeing(&images, u64::MAX, Instant::now());
        if plan.victims.is_empty() {
            return Ok(0);
        }
        Ok(cri.remove_images(plan.victims).await?)
    }
}

/// Upstream's arithmetic: usage in whole percent (rounded up); at or past the high
/// threshold, free down to the low one.
fn bytes_to_free(policy: &ImageGcPolicy, fs: FsStats) -> u64 {
    if fs.capacity == 0 || policy.high_threshold_percent >= 100 {
        return 0;
    }
    let available = fs.available.min(fs.capacity);
    let usage_percent = 100 - (available as u128 * 100 / fs.capacity as u128) as u64;
    if usage_percent < u64::from(policy.high_threshold_percent) {
        return 0;
    }
    let target_available =
        fs.capacity as u128 * (100 - u128::from(policy.low_threshold_percent)) / 100;
    (target_available as u64).saturating_sub(available)
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("invalid capacity 0 on image filesystem")]
    InvalidCapacity,
    #[error(
        "Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {found} bytes eligible to free."
    )]
    Shortfall { wanted: u64, found: u64 },
    #[error("{0}")]
    Runtime(#[from] CriError),
}

impl GcError {
    /// The Node event upstream records for it.
    pub fn reason(&self) -> &'static str {
        match self {
            GcError::InvalidCapacity => "InvalidDiskCapacity",
            GcError::Shortfall { .. } => "FreeDiskSpaceFailed",
            GcError::Runtime(_) => "ImageGCFailed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::fake_cri::{FakeCri, FAKE_IMAGE_SIZE};

    const MIB: u64 = 1 << 20;

    fn image(id: &str, size: u64, in_use: bool) -> StoredImage {
        StoredImage {
            id: id.into(),
            size,
            in_use,
        }
    }

    fn fs(capacity: u64, available: u64) -> FsStats {
        FsStats {
            capacity,
            available,
        }
    }

    fn policy(min_age: u64) -> ImageGcPolicy {
        ImageGcPolicy {
            min_age: Duration::from_secs(min_age),
            ..ImageGcPolicy::default()
        }
    }

    #[test]
    fn below_the_high_threshold_nothing_is_freed() {
        let p = ImageGcPolicy::default();
        // 84% used: under 85.
        assert_eq!(bytes_to_free(&p, fs(100 * MIB, 16 * MIB)), 0);
        // 85% used: down to 80% means 5 MiB.
        assert_eq!(bytes_to_free(&p, fs(100 * MIB, 15 * MIB)), 5 * MIB);
        // A threshold of 100 turns collection off.
        let off = ImageGcPolicy {
            high_threshold_percent: 100,
            ..p
        };
        assert_eq!(bytes_to_free(&off, fs(100 * MIB, 0)), 0);
    }

    #[test]
    fn unused_images_past_min_age_go_least_recently_used_first_until_enough() {
        let mut gc = ImageGc::new(policy(60));
        let t0 = Instant::now();
        let full = fs(100 * MIB, 10 * MIB); // 90% used: free 10 MiB.
        let imgs = |a_used: bool, b_used: bool| {
            vec![
                image("a", 6 * MIB, a_used),
                image("b", 6 * MIB, b_used),
                image("c", 6 * MIB, false),
                image("d", 6 * MIB, true),
            ]
        };
        // Everything is new: nothing is old enough yet.
        let first = gc.plan(&imgs(true, false), full, t0);
        assert_eq!((first.to_free, first.victims.len()), (10 * MIB, 0));
        // b is used later than a; c never; d still runs.
        gc.plan(&imgs(false, true), full, t0 + Duration::from_secs(30));
        let plan = gc.plan(&imgs(false, false), full, t0 + Duration::from_secs(90));
        assert_eq!(
            plan.victims,
            ["c", "a"],
            "never used, then least recently used"
        );
        assert_eq!(plan.freeing, 12 * MIB);
    }

    #[test]
    fn thresholds_are_validated_as_upstream() {
        assert!(ImageGcPolicy::default().validate().is_ok());
        let bad = ImageGcPolicy {
            low_threshold_percent: 90,
            ..ImageGcPolicy::default()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            "--image-gc-low-threshold 90 must be less than --image-gc-high-threshold 85"
        );
    }

    #[tokio::test]
    async fn under_disk_pressure_every_unused_image_past_min_age_goes() {
        let cri = FakeCri::new().with_image("a").with_image("b");
        cri.set_image_fs(fs(100 * MIB, 90 * MIB)); // Under every threshold.
        let mut young = ImageGc::new(policy(3600));
        assert_eq!(young.remove_unused(&cri).await.unwrap(), 0);
        let mut gc = ImageGc::new(policy(0));
        assert_eq!(gc.remove_unused(&cri).await.unwrap(), 2 * FAKE_IMAGE_SIZE);
        assert!(cri.images().is_empty());
    }

    #[tokio::test]
    async fn a_pass_removes_unused_images_and_reports_a_shortfall() {
        let cri = FakeCri::new().with_image("old").with_image("other");
        cri.set_image_fs(fs(100 * MIB, 5 * MIB)); // 95% used: 15 MiB to free.
        let mut gc = ImageGc::new(policy(0));
        let err = gc.run_once(&cri).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Failed to garbage collect required amount of images. Attempted to free {} bytes, but only found {} bytes eligible to free.",
                15 * MIB,
                2 * FAKE_IMAGE_SIZE
            )
        );
        assert_eq!(err.reason(), "FreeDiskSpaceFailed");
        assert!(cri.images().is_empty(), "both were removed anyway");
    }
}
