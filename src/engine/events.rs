//! The engine's event bus behind `GET /events`: every event goes to the live subscribers and into
//! a short history, so that `since` replays what happened before the request, as dockerd does
//! (it keeps the last 256 events in memory).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::wire::EventMessage;

/// How many past events are kept for `since` (dockerd's `eventsLimit`).
const HISTORY: usize = 256;
/// Live events buffered per subscriber before a slow one starts losing them.
const LIVE_BUFFER: usize = 1024;

#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    live: broadcast::Sender<EventMessage>,
    history: Mutex<VecDeque<EventMessage>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Self {
            inner: Arc::new(Inner {
                live,
                history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            }),
        }
    }

    /// Publish an event: kept in the history and sent to every live subscriber.
    pub fn send(&self, event: EventMessage) {
        // One lock around both, so a subscriber sees each event either in its replay or live.
        let mut history = self.history();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(event.clone());
        let _ = self.inner.live.send(event);
    }

    /// Live events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EventMessage> {
        self.inner.live.subscribe()
    }

    /// The kept events at or after `since_nanos` (Unix nanoseconds), and a receiver for every
    /// event after them: no event is missed or seen twice between the two.
    pub fn subscribe_since(
        &self,
        since_nanos: i64,
    ) -> (Vec<EventMessage>, broadcast::Receiver<EventMessage>) {
        let history = self.history();
        let past = history
            .iter()
            .filter(|e| e.time_nano >= since_nanos)
            .cloned()
            .collect();
        (past, self.inner.live.subscribe())
    }

    fn history(&self) -> std::sync::MutexGuard<'_, VecDeque<EventMessage>> {
        // A panic while holding the lock cannot leave the deque half-changed: keep using it.
        self.inner
            .history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, time_nano: i64) -> EventMessage {
        EventMessage {
            kind: "volume".into(),
            action: action.into(),
            time: time_nano / 1_000_000_000,
            time_nano,
            ..Default::default()
        }
    }

    #[test]
    fn since_replays_kept_events_then_streams_live_ones() {
        let bus = EventBus::new();
        bus.send(event("create", 1_000));
        bus.send(event("destroy", 2_000));
        let (past, mut live) = bus.subscribe_since(1_500);
        let actions: Vec<&str> = past.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["destroy"]);
        bus.send(event("mount", 3_000));
        assert_eq!(live.try_recv().expect("live event").action, "mount");
        assert!(live.try_recv().is_err(), "nothing twice");
    }

    #[test]
    fn history_keeps_the_last_256_events() {
        let bus = EventBus::new();
        for i in 0..300 {
            bus.send(event(&format!("e{i}"), i));
        }
        let (past, _) = bus.subscribe_since(0);
        assert_eq!(past.len(), 256);
        assert_eq!(past[0].action, "e44");
        assert_eq!(past[255].action, "e299");
    }
}
