//! A short-lived cache of successful bearer-token lookups (upstream caches 10 s), so a
//! client sending the same token on every request pays for signature checks and object
//! lookups once per TTL.
//!
//! Invariant: an entry never outlives the token's own expiry nor [`TTL`]; failures are not
//! cached; the cache is bounded (it is emptied when full, rather than tracking LRU order).

use crate::apiserver::auth::UserInfo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TTL: Duration = Duration::from_secs(10);
const MAX_ENTRIES: usize = 8192;

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Arc<UserInfo>, Instant)>>,
}

impl TokenCache {
    pub fn get(&self, token: &str) -> Option<Arc<UserInfo>> {
        let mut entries = self.entries.lock();
        match entries.get(token) {
            Some((u, until)) if *until > Instant::now() => Some(u.clone()),
            Some(_) => {
                entries.remove(token);
                None
            }
            None => None,
        }
    }

    /// Caches `user` for [`TTL`], or until `expires` (unix seconds) if that is sooner.
    pub fn put(&self, token: &str, user: Arc<UserInfo>, expires: Option<i64>) {
        let mut ttl = TTL;
        if let Some(exp) = expires {
            let left = exp - chrono::Utc::now().timestamp();
            if left <= 0 {
                return;
            }
            ttl = ttl.min(Duration::from_secs(left as u64));
        }
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(token.to_owned(), (user, Instant::now() + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_with_the_token() {
        let c = TokenCache::default();
        let u = Arc::new(UserInfo::new("u", &[]));
        c.put("a", u.clone(), None);
        assert_eq!(c.get("a").unwrap().name, "u");
        c.put("b", u.clone(), Some(chrono::Utc::now().timestamp() - 1));
        assert!(c.get("b").is_none());
        assert!(c.get("c").is_none());
    }
}
