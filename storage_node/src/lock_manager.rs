//! Waiting for locks: what a pessimistic lock request does when another transaction holds
//! the key (TiKV's `LockManager` / `WaiterManager`, without deadlock detection).
//!
//! A pessimistic lock request that meets another transaction's lock does not fail at once:
//! it waits for the lock to go away (its owner commits or rolls back), up to a timeout, and
//! then tries again. Only if the lock is still there at the deadline does the client get
//! `KeyIsLocked`, which it answers by resolving the lock (expired) or backing off (alive).
//! Waiting on the server saves the client a round trip per backoff step and lets the waiter
//! run the moment the lock is released.
//!
//! The mechanism is deliberately coarse: the scheduler bumps a counter after every durable
//! batch that removed any lock, and waiters re-run their request on every bump. TiKV keeps a
//! queue per key; one process with one writer thread can afford to let a woken request find
//! out for itself whether *its* key is free (a re-run is one B-tree lookup per key).
//!
//! Deadlocks are not detected: two transactions waiting for each other each time out after
//! [`DEFAULT_WAIT`], return `KeyIsLocked`, and the clients' backoff eventually fails one of
//! them. TiKV's deadlock detector would fail one of them at once instead.

use std::time::Duration;

use tokio::sync::watch;

/// TiKV's `wait-for-lock-timeout` default, which is also the ceiling of any requested wait.
pub const DEFAULT_WAIT: Duration = Duration::from_millis(1000);

/// How long a request may wait, from its protobuf `wait_timeout` (TiKV's
/// `WaitTimeout::from_encoded` + `into_duration_with_ceiling`): 0 means "the server's
/// default", a negative value means "do not wait", a positive one is milliseconds, capped at
/// the default so a client cannot park a request for hours.
pub fn wait_timeout(encoded: i64) -> Option<Duration> {
    match encoded {
        0 => Some(DEFAULT_WAIT),
        ms if ms < 0 => None,
        ms => Some(Duration::from_millis(ms as u64).min(DEFAULT_WAIT)),
    }
}

/// The wake-up signal lock waiters subscribe to.
pub struct LockManager {
    // Bumped after every durable batch that released a lock.
    released: watch::Sender<u64>,
}

impl Default for LockManager {
    fn default() -> Self {
        LockManager {
            released: watch::channel(0).0,
        }
    }
}

impl LockManager {
    /// A subscription that sees every release after this call. Subscribe *before* running
    /// the request, so a release between the request and the wait is not missed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        let mut rx = self.released.subscribe();
        rx.borrow_and_update();
        rx
    }

    /// Called by the scheduler once a batch that removed locks is durable.
    pub fn wake_up(&self) {
        self.released.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_timeout_follows_tikv() {
        assert_eq!(wait_timeout(0), Some(DEFAULT_WAIT));
        assert_eq!(wait_timeout(-1), None);
        assert_eq!(wait_timeout(50), Some(Duration::from_millis(50)));
        assert_eq!(wait_timeout(60_000), Some(DEFAULT_WAIT));
    }

    #[tokio::test]
    async fn a_release_after_subscribing_is_seen() {
        let lm = LockManager::default();
        let mut rx = lm.subscribe();
        lm.wake_up();
        tokio::time::timeout(Duration::from_secs(1), rx.changed())
            .await
            .expect("woken")
            .unwrap();
    }
}
