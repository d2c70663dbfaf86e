//! `tracing` callsites made at run time, so that the caller can choose the event target.
//!
//! `tracing`'s macros take the target as a compile-time constant: each macro call declares a
//! `static` callsite whose metadata holds the target and the level. A target passed to a builder
//! at run time cannot go through a macro, so this module builds by hand what the macros
//! generate: one callsite per distinct (target, level) pair, leaked once (callsites must be
//! `'static`) and interned, so that building many `Logging`s reuses them and the leak stays
//! bounded by the number of distinct targets a program names (a handful).
//!
//! The callsites go through `tracing-core`'s public registry, so subscribers see ordinary
//! events: per-target filters (`RUST_LOG=my_app::http=debug`), interest caching and
//! `LevelFilter::current()` all behave as they do for macro events. The one non-documented
//! API used is `FieldSet::value_set`, the same call `tracing-log` makes to turn `log` records
//! into events.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::level_filters::STATIC_MAX_LEVEL;
use tracing_core::callsite::Callsite;
use tracing_core::field::{Field, FieldSet, Value};
use tracing_core::metadata::Kind;
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Level, LevelFilter, Metadata};

/// The fields of every exchange event, in the order [`EventSite::emit`] takes their values.
pub(crate) const FIELDS: [&str; FIELD_COUNT] = [
    "message",
    "method",
    "url",
    "status",
    "elapsed_ms",
    "attempt",
    "request_bytes",
    "response_bytes",
    "error_kind",
    "error",
    "request_headers",
    "response_headers",
    "request_body",
    "response_body",
];

/// How many fields an exchange event has.
pub(crate) const FIELD_COUNT: usize = 14;

/// The values of one event, in [`FIELDS`] order; `None` leaves a field out.
pub(crate) type Values<'a> = [Option<&'a dyn Value>; FIELD_COUNT];

const INTEREST_UNKNOWN: u8 = 0;
const INTEREST_NEVER: u8 = 1;
const INTEREST_SOMETIMES: u8 = 2;
const INTEREST_ALWAYS: u8 = 3;

/// One event callsite for a (target, level) pair.
pub(crate) struct EventSite {
    interest: AtomicU8,
    // Set once, right after the site is leaked and before it is registered: the metadata must
    // name the site itself (its `Identifier`), so it cannot be built before the site exists.
    meta: OnceLock<(Metadata<'static>, [Field; FIELD_COUNT])>,
}

impl EventSite {
    /// The interned site for `target` and `level`, created and registered on first use.
    pub(crate) fn get(target: &'static str, level: Level) -> &'static EventSite {
        static SITES: Mutex<Vec<&'static EventSite>> = Mutex::new(Vec::new());
        // A panic elsewhere while the lock was held cannot leave the list half-written: a push
        // either happened or not.
        let mut sites = SITES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(site) = sites.iter().find(|s| {
            let meta = s.metadata();
            meta.target() == target && *meta.level() == level
        }) {
            return site;
        }
        let site: &'static EventSite = Box::leak(Box::new(EventSite {
            interest: AtomicU8::new(INTEREST_UNKNOWN),
            meta: OnceLock::new(),
        }));
        let meta = Metadata::new(
            "http exchange",
            target,
            level,
            Some(file!()),
            Some(line!()),
            Some(module_path!()),
            FieldSet::new(&FIELDS, tracing_core::identify_callsite!(site)),
            Kind::EVENT,
        );
        let fields = std::array::from_fn(|i| {
            meta.fields()
                .field(FIELDS[i])
                .expect("every name in FIELDS is in the field set built from FIELDS")
        });
        // Cannot fail: the site was created just above and is not shared yet.
        let _ = site.meta.set((meta, fields));
        tracing_core::callsite::register(site);
        sites.push(site);
        site
    }

    pub(crate) fn level(&self) -> Level {
        *self.metadata().level()
    }

    /// Whether an event here would reach a subscriber; cheap, so the caller can skip building
    /// the event's values when nobody listens.
    pub(crate) fn enabled(&self) -> bool {
        let level = self.level();
        if level > STATIC_MAX_LEVEL || level > LevelFilter::current() {
            return false;
        }
        match self.interest.load(Ordering::Relaxed) {
            INTEREST_NEVER => false,
            INTEREST_ALWAYS => true,
            _ => tracing_core::dispatcher::get_default(|d| d.enabled(self.metadata())),
        }
    }

    /// Sends one event with `values` (in [`FIELDS`] order) to the current subscriber.
    pub(crate) fn emit(&'static self, values: &Values<'_>) {
        let (meta, fields) = self.meta.get().expect("set before registration");
        let pairs: [(&Field, Option<&dyn Value>); FIELD_COUNT] =
            std::array::from_fn(|i| (&fields[i], values[i]));
        let value_set = meta.fields().value_set(&pairs);
        tracing_core::dispatcher::get_default(|d| {
            if d.enabled(meta) {
                d.event(&Event::new(meta, &value_set));
            }
        });
    }
}

impl Callsite for EventSite {
    fn set_interest(&self, interest: Interest) {
        let v = if interest.is_never() {
            INTEREST_NEVER
        } else if interest.is_always() {
            INTEREST_ALWAYS
        } else {
            INTEREST_SOMETIMES
        };
        self.interest.store(v, Ordering::Relaxed);
    }

    fn metadata(&self) -> &Metadata<'_> {
        &self.meta.get().expect("set before registration").0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_interned_per_target_and_level() {
        let a = EventSite::get("http_doer::test_a", Level::INFO);
        let b = EventSite::get("http_doer::test_a", Level::INFO);
        let c = EventSite::get("http_doer::test_a", Level::WARN);
        let d = EventSite::get("http_doer::test_b", Level::INFO);
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, c) && !std::ptr::eq(a, d));
        assert_eq!(a.metadata().target(), "http_doer::test_a");
        assert_eq!(*c.metadata().level(), Level::WARN);
        assert_eq!(a.metadata().fields().len(), FIELD_COUNT);
    }

    #[test]
    fn no_subscriber_means_not_enabled() {
        let site = EventSite::get("http_doer::test_none", Level::ERROR);
        let no_subscriber = tracing_core::Dispatch::none();
        tracing_core::dispatcher::with_default(&no_subscriber, || assert!(!site.enabled()));
    }
}
