//! A `tracing` layer that keeps every event with its fields as text, and the lock that lets one
//! test at a time hold a subscriber of its own. Included with `#[path]` by the tests that need
//! it, each of which uses only some of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::field::{Field, Visit};
use tracing::{Dispatch, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry;

/// One event as a subscriber saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub level: Level,
    pub target: String,
    pub fields: BTreeMap<String, String>,
}

impl Seen {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// A layer that keeps every event (or only those of one target) with its fields as text.
#[derive(Clone, Default)]
pub struct Capture {
    seen: Arc<Mutex<Vec<Seen>>>,
    target: Option<&'static str>,
}

impl Capture {
    /// Keeps only the events of `target`, not those of the HTTP libraries under it.
    pub fn of(target: &'static str) -> Self {
        Capture {
            target: Some(target),
            ..Capture::default()
        }
    }

    pub fn events(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let target = event.metadata().target();
        if self.target.is_some_and(|only| only != target) {
            return;
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.seen.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            target: target.to_owned(),
            fields,
        });
    }
}

/// One test with a subscriber of its own at a time. tracing caches each callsite's interest and
/// the max level for all threads at once, so a scoped subscriber set or dropped on one test's
/// thread can race another's (about 1 run in 10 lost an event). Serializing them costs little.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    // A global dispatcher that takes every callsite, so that no callsite's interest is ever
    // cached as "never" by a thread that registered it while no scoped subscriber was alive
    // (the race that serializing alone did not close: about 1 run in 10 lost an event).
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        let _ = tracing::subscriber::set_global_default(registry());
    });
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A scoped subscriber, dropped before the serial lock is released (fields drop in order).
pub struct Scoped(tracing::dispatcher::DefaultGuard, MutexGuard<'static, ()>);

impl Scoped {
    /// Takes the serial lock, then makes `dispatch` this thread's default until dropped.
    pub fn new(dispatch: impl Into<Dispatch>) -> Self {
        let serial = serial();
        let guard = tracing::dispatcher::set_default(&dispatch.into());
        Scoped(guard, serial)
    }
}

/// Installs a subscriber that keeps every event on this thread (tests run on a current-thread
/// runtime).
pub fn capture() -> (Capture, Scoped) {
    scoped(Capture::default())
}

/// Installs `cap` alone on this thread.
pub fn scoped(cap: Capture) -> (Capture, Scoped) {
    let scoped = Scoped::new(registry().with(cap.clone()));
    (cap, scoped)
}
