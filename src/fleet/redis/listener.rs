//! The task that listens on the fleet's pub/sub channel, pings it, and reconnects when the
//! link fails or falls silent; and what a message on that channel means.

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use futures_core::Stream as _;
use redis::Client;
use tokio::time::timeout;

use super::{Inner, Job, lock};

/// How often the listener pings Redis, to find a dead or silent link.
const PING_EVERY: Duration = Duration::from_secs(1);

/// A message on the fleet's channel: `o <replica> <breaker> <ms> <circuit>` (opened for
/// `ms`), `c <replica> <breaker> 0 <circuit>` (closed) or `p <replica> <store> <ms> <key>` (a
/// server asked every caller of `key` to pause `ms`). Anyone who can publish on the channel
/// writes these, so [`Message::parse`] refuses anything else, and never panics.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Message<'a> {
    pub(super) kind: Kind,
    pub(super) replica: u64,
    pub(super) from: u64,
    pub(super) ms: u64,
    pub(super) key: &'a str,
}

/// What a [`Message`] says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Opened,
    Closed,
    Paused,
}

impl<'a> Message<'a> {
    pub(super) fn parse(payload: &'a str) -> Option<Message<'a>> {
        let mut parts = payload.splitn(5, ' ');
        let kind = match parts.next()? {
            "o" => Kind::Opened,
            "c" => Kind::Closed,
            "p" => Kind::Paused,
            _ => return None,
        };
        let mut number = || parts.next()?.parse::<u64>().ok();
        let (replica, from, ms) = (number()?, number()?, number()?);
        Some(Message {
            kind,
            replica,
            from,
            ms,
            key: parts.next()?,
        })
    }
}

impl Inner {
    pub(super) fn on_message(self: &Arc<Self>, payload: &str) {
        let Some(msg) = Message::parse(payload) else {
            return;
        };
        self.received.fetch_add(1, Relaxed);
        let skip = if msg.replica == self.replica {
            msg.from
        } else {
            0
        };
        let key = msg.key;
        match msg.kind {
            Kind::Opened => {
                let remaining = Duration::from_millis(msg.ms);
                self.note_open(key, remaining);
                self.deliver(skip, |s| s.opened(key, remaining));
            }
            Kind::Closed => {
                lock(&self.leases).remove(key);
                self.deliver(skip, |s| s.closed(key));
            }
            // Anyone who can publish names the length: no sink is handed more than the longest
            // pause a server may ask by default.
            Kind::Paused => {
                let wait = Duration::from_millis(msg.ms).min(super::LONGEST_PAUSE);
                self.deliver_pause(skip, key, wait);
            }
        }
    }
}

enum Event {
    Message(Option<redis::Msg>),
    Ping,
}

/// Listens to the fleet's channel, and reconnects when the link fails or falls silent.
pub(super) async fn listen(weak: Weak<Inner>, client: Client) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let (limit, channel) = (inner.timeout, inner.channel());
        drop(inner);
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = match timeout(limit, connected).await {
            Ok(Ok(p)) => p,
            _ => {
                if let Some(inner) = weak.upgrade() {
                    inner.mark(false);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let Some(inner) = weak.upgrade() else { return };
        inner.mark(true);
        // Whatever was said while this replica was not listening is in the stored states.
        inner.send(Job::Resync);
        drop(inner);
        let (mut sink, mut stream) = pubsub.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        loop {
            let event = std::future::poll_fn(|cx| {
                if let Poll::Ready(msg) = Pin::new(&mut stream).poll_next(cx) {
                    return Poll::Ready(Event::Message(msg));
                }
                ping.poll_tick(cx).map(|_| Event::Ping)
            })
            .await;
            let Some(inner) = weak.upgrade() else { return };
            match event {
                Event::Message(Some(msg)) => {
                    if let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) {
                        inner.on_message(text);
                    }
                }
                Event::Message(None) => break,
                Event::Ping => {
                    // Any reply will do: a subscribed connection answers `PING` with
                    // `["pong", ""]`, not `PONG`, so reading it as a string failed every ping
                    // and dropped the link once a second.
                    let alive = timeout(limit, sink.ping::<redis::Value>()).await;
                    // A failed ping is marked once, below, where the link is given up.
                    if !matches!(alive, Ok(Ok(_))) {
                        break;
                    }
                    inner.mark(true);
                }
            }
        }
        if let Some(inner) = weak.upgrade() {
            inner.mark(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::RedisFleet;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_never_panics(payload in any::<String>()) {
            let _ = Message::parse(&payload);
        }

        #[test]
        fn what_a_replica_publishes_reads_back(
            kind in prop_oneof![Just(Kind::Opened), Just(Kind::Closed), Just(Kind::Paused)],
            replica in any::<u64>(),
            from in any::<u64>(),
            ms in any::<u64>(),
            key in ".*",
        ) {
            let letter = match kind { Kind::Opened => "o", Kind::Closed => "c", Kind::Paused => "p" };
            let payload = format!("{letter} {replica} {from} {ms} {key}");
            let want = Message { kind, replica, from, ms, key: &key };
            prop_assert_eq!(Message::parse(&payload), Some(want));
        }
    }

    #[test]
    fn other_messages_are_refused() {
        for payload in [
            "",
            "o",
            "o 1 2 3",
            "x 1 2 3 k",
            "o -1 2 3 k",
            "o 1 2 3.5 k",
            "p 1 2 k",
        ] {
            assert_eq!(Message::parse(payload), None, "{payload:?}");
        }
    }

    /// A pause reaches every rate-limiter store of the process but the one that sent it
    /// (whose own message comes back from Redis), capped in length, and a dropped store is
    /// forgotten.
    #[tokio::test]
    async fn a_pause_reaches_every_store_but_its_sender() {
        use std::sync::Mutex;
        use std::time::Duration;

        use crate::fleet::{PauseSink, PauseStore};

        #[derive(Default)]
        struct Heard(Mutex<Vec<(String, Duration)>>);
        impl PauseSink for Heard {
            fn paused(&self, key: &str, wait: Duration) {
                self.0.lock().unwrap().push((key.to_owned(), wait));
            }
        }

        let fleet = RedisFleet::connect("redis://127.0.0.1:1").unwrap();
        let (a, b) = (Arc::new(Heard::default()), Arc::new(Heard::default()));
        let a_sink: Arc<dyn PauseSink> = a.clone();
        let b_sink: Arc<dyn PauseSink> = b.clone();
        let ia = fleet.attach_pauses(Arc::downgrade(&a_sink));
        fleet.attach_pauses(Arc::downgrade(&b_sink));
        let me = fleet.inner.replica;
        let heard = |h: &Heard| h.0.lock().unwrap().clone();

        fleet.inner.on_message(&format!("p {me} {ia} 3000 k"));
        assert!(heard(&a).is_empty(), "not back to its sender");
        assert_eq!(heard(&b), [("k".to_owned(), Duration::from_secs(3))]);

        fleet.inner.on_message(&format!("p {} {ia} 3000 k", me ^ 2));
        assert_eq!(
            heard(&a).len(),
            1,
            "another replica's store may have the same id"
        );

        fleet
            .inner
            .on_message(&format!("p {} 0 {} k k", me ^ 2, u64::MAX));
        assert_eq!(
            heard(&b).last().unwrap(),
            &("k k".to_owned(), crate::limit::DEFAULT_MAX_PAUSE),
            "a key with spaces, and any length capped"
        );

        drop((b, b_sink));
        fleet.inner.on_message(&format!("p {} 0 1 k", me ^ 2));
        assert_eq!(
            lock(&fleet.inner.pause_sinks).len(),
            1,
            "the dropped store forgotten"
        );
    }

    /// With Redis out of reach, a store's pause still holds its own replica at once, and no
    /// call waits or fails.
    #[tokio::test(start_paused = true)]
    async fn with_redis_down_a_pause_holds_this_replica() {
        use std::time::Duration;

        use crate::limit::{FleetStore, LimitStore, MemoryStore, Rate};

        let fleet = RedisFleet::connect("redis://127.0.0.1:1").unwrap();
        let store = FleetStore::new(MemoryStore::new(Rate::unlimited()), Arc::new(fleet));
        store.refused("k", Duration::from_secs(2));
        assert_eq!(store.acquire("k"), Err(Duration::from_secs(2)));
        assert!(store.acquire("other").is_ok());
    }

    /// Anyone who can publish on the channel can name any host, as often as they like: the
    /// probe leases kept are bounded, and news starts no task.
    #[tokio::test(start_paused = true)]
    async fn a_flood_of_news_keeps_bounded_leases_and_starts_no_task() {
        use std::time::Duration;

        use super::super::MAX_LEASES;

        let fleet = RedisFleet::connect("redis://127.0.0.1:1").unwrap();
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        // Nothing else runs between these lines: no await.
        let before = tasks();
        for ms in 1..=1_000 {
            fleet
                .inner
                .on_message(&format!("o 3 1 {} one-host", 60_000 + ms));
        }
        for i in 0..MAX_LEASES + 500 {
            fleet.inner.on_message(&format!("o 3 1 60000 host{i}"));
        }
        assert_eq!(lock(&fleet.inner.leases).len(), MAX_LEASES);
        assert_eq!(tasks(), before, "no task per message or per entry");

        // Past their open periods, the entries make room for new news.
        tokio::time::sleep(Duration::from_secs(62)).await;
        fleet.inner.on_message("o 3 1 60000 later");
        assert!(lock(&fleet.inner.leases).contains_key("later"));
        assert_eq!(fleet.stats().received, 1_000 + MAX_LEASES as u64 + 500 + 1);
    }

    /// Anyone who can publish on the channel can name any period: the longest opens the
    /// circuit, and panics nothing.
    #[tokio::test]
    async fn a_message_with_an_endless_period_does_not_panic() {
        let fleet = RedisFleet::connect("redis://127.0.0.1:1").unwrap();
        fleet
            .inner
            .on_message(&format!("o 3 1 {} some-host", u64::MAX));
        assert!(lock(&fleet.inner.leases).contains_key("some-host"));
        assert_eq!(fleet.stats().received, 1);
    }
}
