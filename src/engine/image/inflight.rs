//! What concurrent pulls share: which blobs and snapshots each is working on, so that one layer
//! wanted by two pulls is fetched once, and a failed pull rolls back only what no other pull
//! is counting on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
struct Entry {
    /// Pulls that hold a pin on the key.
    users: usize,
    /// Held while one pull fetches or unpacks the key's content; the others wait, then find it
    /// done.
    work: Arc<tokio::sync::Mutex<()>>,
}

/// Keys are blob digests and snapshot chain ids (both `sha256:…`, distinct by construction).
#[derive(Default)]
pub struct InFlight {
    entries: Mutex<HashMap<String, Entry>>,
}

impl InFlight {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `keys` as used by one more pull until the returned pins are dropped.
    pub fn pin<'a>(&'a self, keys: impl IntoIterator<Item = String>) -> Pins<'a> {
        let mut entries = self.entries();
        let keys: Vec<String> = keys.into_iter().collect();
        for k in &keys {
            entries.entry(k.clone()).or_default().users += 1;
        }
        Pins {
            inflight: self,
            keys,
        }
    }

    /// Waits until no other pull works on `key`, then holds it. The key must be pinned.
    pub async fn exclusive(&self, key: &str) -> OwnedMutexGuard<()> {
        let work = self
            .entries()
            .entry(key.to_string())
            .or_default()
            .work
            .clone();
        work.lock_owned().await
    }

    /// Runs `remove` for `key` unless another pull has it pinned too: the check and the removal
    /// happen under one lock, so a pull that pins the key afterwards finds it gone and fetches it
    /// again.
    pub fn remove_unless_shared(&self, key: &str, remove: impl FnOnce()) {
        let entries = self.entries();
        if entries.get(key).is_none_or(|e| e.users <= 1) {
            remove();
        }
    }

    /// Keys some pull holds right now (for tests).
    #[cfg(test)]
    fn pinned(&self) -> usize {
        self.entries().len()
    }
}

/// One pull's pins; dropping them releases the keys.
pub struct Pins<'a> {
    inflight: &'a InFlight,
    keys: Vec<String>,
}

impl Drop for Pins<'_> {
    fn drop(&mut self) {
        let mut entries = self.inflight.entries();
        for k in &self.keys {
            if let Some(e) = entries.get_mut(k) {
                e.users -= 1;
                if e.users == 0 {
                    entries.remove(k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_pinned_by_another_pull_is_not_removed() {
        let inflight = InFlight::default();
        let a = inflight.pin(["sha256:x".to_string(), "sha256:y".to_string()]);
        let b = inflight.pin(["sha256:x".to_string()]);
        let mut removed = Vec::new();
        inflight.remove_unless_shared("sha256:x", || removed.push("x"));
        inflight.remove_unless_shared("sha256:y", || removed.push("y"));
        assert_eq!(removed, ["y"], "x is still pinned by the second pull");
        drop(b);
        inflight.remove_unless_shared("sha256:x", || removed.push("x"));
        assert_eq!(removed, ["y", "x"]);
        drop(a);
        assert_eq!(inflight.pinned(), 0, "pins are released with their pull");
    }

    #[tokio::test]
    async fn the_second_worker_on_a_key_waits_for_the_first() {
        let inflight = InFlight::default();
        let _pins = inflight.pin(["sha256:x".to_string()]);
        let first = inflight.exclusive("sha256:x").await;
        let second = inflight.exclusive("sha256:x");
        tokio::pin!(second);
        assert!(
            futures_util::poll!(second.as_mut()).is_pending(),
            "the key is held by the first worker"
        );
        drop(first);
        let _held = second.await;
    }
}
