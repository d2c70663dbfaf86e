//! The proxy's settings, read from `RETTER_*` environment variables.
//!
//! The names are retter's (github.com/hyperjumptech/retter), so a retter deployment can switch
//! over without renaming anything; settings retter does not have follow the same pattern. A bad
//! value is an error that names the variable, never a silent fallback to the default.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use http_doer::fleet::{DEFAULT_PREFIX, FleetKey};

/// Every setting of the proxy. Build it with [`Config::from_env`] or [`Config::from_lookup`].
#[derive(Clone)]
pub struct Config {
    /// Where the proxy listens (`RETTER_SERVER_LISTEN`).
    pub listen: SocketAddr,
    /// The backend every request is forwarded to, with an optional path prefix and no trailing
    /// slash (`RETTER_BACKEND_BASEURL`).
    pub backend: http::Uri,
    /// The timeout of one exchange with the backend, connect to last body byte
    /// (`RETTER_BACKEND_TIMEOUT`).
    pub backend_timeout: Duration,
    /// The largest backend response body the proxy passes on (`RETTER_BACKEND_MAX_BODY`).
    pub backend_max_body: u64,
    /// How long a good answer may be served stale while the circuit is open (`RETTER_CACHE_TTL`).
    pub cache_ttl: Duration,
    /// The most answers kept for serving stale (`RETTER_CACHE_MAX_ENTRIES`).
    pub cache_max_entries: usize,
    /// The most bytes kept for serving stale (`RETTER_CACHE_MAX_BYTES`).
    pub cache_max_bytes: usize,
    /// Also serve the last good answer when a call fails while the circuit is still closed,
    /// as retter does (`RETTER_CACHE_ON_FAILURE`).
    pub cache_on_failure: bool,
    /// The failure rate, over the breaker's window, that opens the circuit
    /// (`RETTER_BREAKER_FAIL_RATE`).
    pub fail_rate: f64,
    /// The fewest calls in the window before the failure rate counts
    /// (`RETTER_BREAKER_MIN_CALLS`).
    pub min_calls: u32,
    /// The rolling window the failure rate is measured over (`RETTER_BREAKER_WINDOW`).
    pub window: Duration,
    /// The number of consecutive failures that opens the circuit
    /// (`RETTER_BREAKER_CONSECUTIVE_FAIL`).
    pub consecutive_fail: u32,
    /// How long the circuit stays open before a probe is let through
    /// (`RETTER_BREAKER_OPEN_DURATION`).
    pub open_duration: Duration,
    /// How many times a safe request is retried after the first attempt (`RETTER_RETRY_MAX`).
    pub retry_max: u32,
    /// The time allowed to receive a request's head and body (`RETTER_SERVER_TIMEOUT_READ`).
    pub read_timeout: Duration,
    /// The time allowed to produce an answer once the request head is in
    /// (`RETTER_SERVER_TIMEOUT_WRITE`).
    pub write_timeout: Duration,
    /// How long in-flight requests may run on after a shutdown signal
    /// (`RETTER_SERVER_TIMEOUT_GRACESHUT`).
    pub grace: Duration,
    /// The largest request body the proxy accepts (`RETTER_SERVER_MAX_BODY`).
    pub max_request_body: u64,
    /// The Redis through which several proxy instances share the backend's circuit and, with
    /// [`fleet_key`](Self::fleet_key), their stale answers (`RETTER_REDIS_URL`; none: each
    /// instance alone).
    pub redis_url: Option<RedisUrl>,
    /// The prefix of the keys and channel in Redis (`RETTER_REDIS_PREFIX`): instances that
    /// share must have the same.
    pub redis_prefix: String,
    /// The key that encrypts and authenticates the stale answers kept in Redis
    /// (`RETTER_FLEET_KEY`: 32 bytes, as 64 hex digits or base64; none: answers stay in each
    /// instance). Never printed.
    pub fleet_key: Option<FleetKey>,
}

// Not derived: the backend URL may carry a password (sent as Basic), which `http::Uri`'s Debug
// prints.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("backend", &http_doer::redact::uri(&self.backend))
            .field("backend_timeout", &self.backend_timeout)
            .field("backend_max_body", &self.backend_max_body)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_max_entries", &self.cache_max_entries)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("cache_on_failure", &self.cache_on_failure)
            .field("fail_rate", &self.fail_rate)
            .field("min_calls", &self.min_calls)
            .field("window", &self.window)
            .field("consecutive_fail", &self.consecutive_fail)
            .field("open_duration", &self.open_duration)
            .field("retry_max", &self.retry_max)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("grace", &self.grace)
            .field("max_request_body", &self.max_request_body)
            .field("redis_url", &self.redis_url)
            .field("redis_prefix", &self.redis_prefix)
            .field("fleet_key", &self.fleet_key)
            .finish()
    }
}

/// A Redis URL, which may carry a password: its `Debug` and `Display` leave it out.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL as given, password included: for the Redis client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.parse::<http::Uri>() {
            Ok(uri) => f.write_str(&http_doer::redact::uri(&uri)),
            Err(_) => f.write_str("redis://(unreadable)"),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// A variable the proxy reads: its name, default, and what it means.
struct Var {
    name: &'static str,
    default: &'static str,
    help: &'static str,
}

/// Every variable, in the order they are printed at start.
const VARS: &[Var] = &[
    Var {
        name: "RETTER_SERVER_LISTEN",
        default: "127.0.0.1:8089",
        help: "address to listen on (\":8089\" means every interface)",
    },
    Var {
        name: "RETTER_BACKEND_BASEURL",
        default: "http://localhost:8088",
        help: "base URL of the service behind the proxy",
    },
    Var {
        name: "RETTER_BACKEND_TIMEOUT",
        default: "15s",
        help: "timeout of one exchange with the backend",
    },
    Var {
        name: "RETTER_BACKEND_MAX_BODY",
        default: "10485760",
        help: "largest backend response body, in bytes",
    },
    Var {
        name: "RETTER_CACHE_TTL",
        default: "60s",
        help: "max age of a last good answer served while the circuit is open",
    },
    Var {
        name: "RETTER_CACHE_MAX_ENTRIES",
        default: "1024",
        help: "most answers kept for serving stale",
    },
    Var {
        name: "RETTER_CACHE_MAX_BYTES",
        default: "16777216",
        help: "most bytes kept for serving stale",
    },
    Var {
        name: "RETTER_CACHE_ON_FAILURE",
        default: "false",
        help: "also serve stale when a GET fails while the circuit is closed",
    },
    Var {
        name: "RETTER_BREAKER_FAIL_RATE",
        default: "0.66",
        help: "failure rate that opens the circuit (0 < rate <= 1)",
    },
    Var {
        name: "RETTER_BREAKER_MIN_CALLS",
        default: "5",
        help: "fewest calls in the window before the rate counts",
    },
    Var {
        name: "RETTER_BREAKER_WINDOW",
        default: "10s",
        help: "rolling window of the failure rate",
    },
    Var {
        name: "RETTER_BREAKER_CONSECUTIVE_FAIL",
        default: "5",
        help: "consecutive failures that open the circuit",
    },
    Var {
        name: "RETTER_BREAKER_OPEN_DURATION",
        default: "10s",
        help: "how long the circuit stays open before a probe",
    },
    Var {
        name: "RETTER_RETRY_MAX",
        default: "2",
        help: "retries of a safe request after the first attempt",
    },
    Var {
        name: "RETTER_SERVER_TIMEOUT_READ",
        default: "15s",
        help: "time to receive a request (and to wait on an idle connection)",
    },
    Var {
        name: "RETTER_SERVER_TIMEOUT_WRITE",
        default: "15s",
        help: "time to produce an answer (504 past it)",
    },
    Var {
        name: "RETTER_SERVER_TIMEOUT_GRACESHUT",
        default: "15s",
        help: "grace period for in-flight requests on shutdown",
    },
    Var {
        name: "RETTER_SERVER_MAX_BODY",
        default: "10485760",
        help: "largest request body, in bytes (413 past it)",
    },
    Var {
        name: "RETTER_REDIS_URL",
        default: "",
        help: "Redis where several proxies share the circuit and stale answers",
    },
    Var {
        name: "RETTER_REDIS_PREFIX",
        default: DEFAULT_PREFIX,
        help: "prefix of the keys in Redis (the same on every proxy that shares)",
    },
    Var {
        name: "RETTER_FLEET_KEY",
        default: "",
        help: "secret that encrypts stale answers kept in Redis (openssl rand -hex 32)",
    },
];

/// retter variables this proxy deliberately does not read, and why.
const NOT_SUPPORTED: &[(&str, &str)] = &[
    (
        "RETTER_CACHE_DETECT_SESSION",
        "Cookie and Authorization are always part of the cache key, so one user's page never \
         reaches another",
    ),
    (
        "RETTER_CACHE_DETECT_QUERY",
        "the query is always part of the cache key",
    ),
    (
        "RETTER_SERVER_TIMEOUT_IDLE",
        "an idle connection is closed after RETTER_SERVER_TIMEOUT_READ (hyper's header timer \
         starts as soon as a connection waits for a request)",
    ),
];

/// A setting that could not be used: which variable, its value, and what was expected.
#[derive(Debug, PartialEq)]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// The value found, as printed (a URL's credentials are removed).
    pub value: String,
    /// What a good value looks like.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: expected {}",
            self.var, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (a variable's value, or `None` when unset); unset or empty
    /// variables take their default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| -> (&'static str, String) {
            let value = lookup(name).filter(|v| !v.trim().is_empty());
            (name, value.unwrap_or_else(|| default_of(name).to_owned()))
        };
        Ok(Config {
            listen: parse_listen(get("RETTER_SERVER_LISTEN"))?,
            backend: parse_backend(get("RETTER_BACKEND_BASEURL"))?,
            backend_timeout: parse_duration(get("RETTER_BACKEND_TIMEOUT"))?,
            backend_max_body: parse_count(get("RETTER_BACKEND_MAX_BODY"), 1)?,
            cache_ttl: parse_duration(get("RETTER_CACHE_TTL"))?,
            cache_max_entries: parse_usize(get("RETTER_CACHE_MAX_ENTRIES"))?,
            cache_max_bytes: parse_usize(get("RETTER_CACHE_MAX_BYTES"))?,
            cache_on_failure: parse_bool(get("RETTER_CACHE_ON_FAILURE"))?,
            fail_rate: parse_rate(get("RETTER_BREAKER_FAIL_RATE"))?,
            min_calls: parse_u32(get("RETTER_BREAKER_MIN_CALLS"), 1)?,
            window: parse_duration(get("RETTER_BREAKER_WINDOW"))?,
            consecutive_fail: parse_u32(get("RETTER_BREAKER_CONSECUTIVE_FAIL"), 1)?,
            open_duration: parse_duration(get("RETTER_BREAKER_OPEN_DURATION"))?,
            retry_max: parse_u32(get("RETTER_RETRY_MAX"), 0)?,
            read_timeout: parse_duration(get("RETTER_SERVER_TIMEOUT_READ"))?,
            write_timeout: parse_duration(get("RETTER_SERVER_TIMEOUT_WRITE"))?,
            grace: parse_duration(get("RETTER_SERVER_TIMEOUT_GRACESHUT"))?,
            max_request_body: parse_count(get("RETTER_SERVER_MAX_BODY"), 0)?,
            redis_url: parse_redis_url(get("RETTER_REDIS_URL"))?,
            redis_prefix: parse_prefix(get("RETTER_REDIS_PREFIX"))?,
            fleet_key: parse_fleet_key(get("RETTER_FLEET_KEY"), lookup("RETTER_REDIS_URL"))?,
        })
    }

    /// The settings as printed at start: one line per variable with its value and whether it
    /// is the default, then a line per retter variable that is set but not supported.
    ///
    /// `is_set` tells whether a variable is set in the environment.
    pub fn describe(&self, is_set: impl Fn(&str) -> bool) -> String {
        let mut out = String::new();
        for var in VARS {
            let value = self.value_of(var.name);
            let origin = if is_set(var.name) { "set" } else { "default" };
            out.push_str(&format!(
                "  {:<32} {:<24} {:<8} {}\n",
                var.name, value, origin, var.help
            ));
        }
        for (name, why) in NOT_SUPPORTED {
            if is_set(name) {
                out.push_str(&format!("  {name} is ignored: {why}\n"));
            }
        }
        out
    }

    /// Names of `RETTER_*` variables in `names` that this proxy does not know (typos, most
    /// likely), so the operator hears about them at start.
    pub fn unknown_vars<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        names
            .into_iter()
            .filter(|n| n.starts_with("RETTER_"))
            .filter(|n| !VARS.iter().any(|v| v.name == *n))
            .filter(|n| !NOT_SUPPORTED.iter().any(|(name, _)| name == n))
            .collect()
    }

    fn value_of(&self, name: &str) -> String {
        match name {
            "RETTER_SERVER_LISTEN" => self.listen.to_string(),
            "RETTER_BACKEND_BASEURL" => http_doer::redact::uri(&self.backend),
            "RETTER_BACKEND_TIMEOUT" => show_duration(self.backend_timeout),
            "RETTER_BACKEND_MAX_BODY" => self.backend_max_body.to_string(),
            "RETTER_CACHE_TTL" => show_duration(self.cache_ttl),
            "RETTER_CACHE_MAX_ENTRIES" => self.cache_max_entries.to_string(),
            "RETTER_CACHE_MAX_BYTES" => self.cache_max_bytes.to_string(),
            "RETTER_CACHE_ON_FAILURE" => self.cache_on_failure.to_string(),
            "RETTER_BREAKER_FAIL_RATE" => self.fail_rate.to_string(),
            "RETTER_BREAKER_MIN_CALLS" => self.min_calls.to_string(),
            "RETTER_BREAKER_WINDOW" => show_duration(self.window),
            "RETTER_BREAKER_CONSECUTIVE_FAIL" => self.consecutive_fail.to_string(),
            "RETTER_BREAKER_OPEN_DURATION" => show_duration(self.open_duration),
            "RETTER_RETRY_MAX" => self.retry_max.to_string(),
            "RETTER_SERVER_TIMEOUT_READ" => show_duration(self.read_timeout),
            "RETTER_SERVER_TIMEOUT_WRITE" => show_duration(self.write_timeout),
            "RETTER_SERVER_TIMEOUT_GRACESHUT" => show_duration(self.grace),
            "RETTER_SERVER_MAX_BODY" => self.max_request_body.to_string(),
            "RETTER_REDIS_URL" => self
                .redis_url
                .as_ref()
                .map_or_else(|| "(none)".to_owned(), RedisUrl::to_string),
            "RETTER_REDIS_PREFIX" => self.redis_prefix.clone(),
            // Whether it is set, never what it is.
            "RETTER_FLEET_KEY" => match self.fleet_key {
                Some(_) => "(set, hidden)",
                None => "(none)",
            }
            .to_owned(),
            _ => String::new(),
        }
    }
}

fn default_of(name: &str) -> &'static str {
    VARS.iter()
        .find(|v| v.name == name)
        .map_or("", |v| v.default)
}

fn bad(var: &'static str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        value: value.to_owned(),
        expected: expected.into(),
    }
}

/// `host:port`, `[v6]:port`, or Go's `:port` (every interface), as retter accepts.
fn parse_listen((var, value): (&'static str, String)) -> Result<SocketAddr, ConfigError> {
    let expected = "an address such as 127.0.0.1:8089, [::1]:8089, localhost:8089 or :8089";
    let text = value.trim();
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_owned(),
    };
    if let Ok(addr) = full.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match full.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| bad(var, text, expected)),
        Err(_) => Err(bad(var, text, expected)),
    }
}

fn parse_backend((var, value): (&'static str, String)) -> Result<http::Uri, ConfigError> {
    let expected = "an http:// or https:// URL with a host, and no query";
    let text = value.trim();
    let shown = |text: &str| match text.parse::<http::Uri>() {
        Ok(uri) => http_doer::redact::uri(&uri),
        // Userinfo that breaks the URL (a space, a quote) is still a password.
        Err(_) if text.contains('@') => {
            "(unreadable; not shown, it may hold a password)".to_owned()
        }
        Err(_) => text.to_owned(),
    };
    let uri: http::Uri = text.parse().map_err(|_| bad(var, &shown(text), expected))?;
    let scheme_ok = matches!(uri.scheme_str(), Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    if !scheme_ok || !host_ok || uri.query().is_some() {
        return Err(bad(var, &shown(text), expected));
    }
    // The incoming path is appended to the base path, so "/api/" + "/x" must not become "//x".
    let path = uri.path().trim_end_matches('/').to_owned();
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(
        if path.is_empty() { "/" } else { &path }
            .parse()
            .map_err(|_| bad(var, &shown(text), expected))?,
    );
    http::Uri::from_parts(parts).map_err(|_| bad(var, &shown(text), expected))
}

/// A duration: a bare number is seconds (retter's `RETTER_CACHE_TTL` is in seconds); `ms`, `s`,
/// `m` and `h` suffixes and retter's own "15 seconds" form are accepted too.
fn parse_duration((var, value): (&'static str, String)) -> Result<Duration, ConfigError> {
    let text = value.trim();
    let expected = "a duration such as 30, 30s, 500ms, 2m or \"15 seconds\"";
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad(var, text, expected))?;
    let seconds_per_unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "second" | "seconds" => 1.0,
        "ms" | "millisecond" | "milliseconds" => 0.001,
        "m" | "min" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        _ => return Err(bad(var, text, expected)),
    };
    // Past some 290 billion years, `Instant + Duration` overflows where hyper and the stack
    // add them (a panic per connection): a hundred years is "forever" enough.
    const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    Duration::try_from_secs_f64(number * seconds_per_unit)
        .ok()
        .filter(|d| !d.is_zero() && *d <= LONGEST)
        .ok_or_else(|| {
            bad(
                var,
                text,
                format!("{expected}, above zero and at most 100 years"),
            )
        })
}

fn parse_count((var, value): (&'static str, String), min: u64) -> Result<u64, ConfigError> {
    let text = value.trim();
    match text.parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(bad(var, text, format!("a whole number of at least {min}"))),
    }
}

fn parse_u32((var, value): (&'static str, String), min: u32) -> Result<u32, ConfigError> {
    let text = value.trim();
    match text.parse::<u32>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(bad(
            var,
            text,
            format!("a whole number from {min} to {}", u32::MAX),
        )),
    }
}

fn parse_usize((var, value): (&'static str, String)) -> Result<usize, ConfigError> {
    let text = value.trim();
    text.parse::<usize>()
        .map_err(|_| bad(var, text, "a whole number, 0 or more"))
}

/// `true`/`false`, as retter's `RETTER_CACHE_DETECT_*` take, and the usual synonyms.
fn parse_bool((var, value): (&'static str, String)) -> Result<bool, ConfigError> {
    let text = value.trim();
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(bad(var, text, "true or false")),
    }
}

fn parse_rate((var, value): (&'static str, String)) -> Result<f64, ConfigError> {
    let text = value.trim();
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        _ => Err(bad(var, text, "a rate above 0 and at most 1, such as 0.66")),
    }
}

/// `redis://[user:password@]host[:port][/db]`; empty: no Redis. A password is never echoed.
fn parse_redis_url((var, value): (&'static str, String)) -> Result<Option<RedisUrl>, ConfigError> {
    let text = value.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let expected = "a redis:// URL with a host, such as redis://127.0.0.1:6379/0 (rediss:// \
                    needs TLS, which this build leaves out)";
    let url = RedisUrl(text.to_owned());
    let ok = text.parse::<http::Uri>().is_ok_and(|uri| {
        uri.scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("redis"))
            && uri.host().is_some_and(|h| !h.is_empty())
            && uri.query().is_none()
    });
    if ok {
        Ok(Some(url))
    } else {
        Err(bad(var, &url.to_string(), expected))
    }
}

fn parse_prefix((var, value): (&'static str, String)) -> Result<String, ConfigError> {
    let text = value.trim();
    let fits = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
    if text.len() <= 64 && text.chars().all(fits) {
        Ok(text.to_owned())
    } else {
        Err(bad(
            var,
            text,
            "up to 64 letters, digits, '-', '_', '.' or ':'",
        ))
    }
}

/// The fleet key: its value is never echoed, not even in an error. It needs a Redis to share
/// through: a key without one is a mistake the operator should hear about.
fn parse_fleet_key(
    (var, value): (&'static str, String),
    redis: Option<String>,
) -> Result<Option<FleetKey>, ConfigError> {
    let text = value.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let hidden = "(hidden)";
    if redis.is_none_or(|r| r.trim().is_empty()) {
        return Err(bad(var, hidden, "to be set only with RETTER_REDIS_URL"));
    }
    FleetKey::parse(text).map(Some).map_err(|_| {
        bad(
            var,
            hidden,
            "32 random bytes as 64 hex digits or base64 (openssl rand -hex 32)",
        )
    })
}

/// `1m30s`-style text for a duration, down to milliseconds.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if !ms.is_multiple_of(60_000) || ms == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m", ms / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_mirror_retter() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8089".parse().unwrap());
        assert_eq!(c.backend, "http://localhost:8088/");
        assert_eq!(c.backend_timeout, Duration::from_secs(15));
        assert_eq!(c.cache_ttl, Duration::from_secs(60));
        assert_eq!(c.fail_rate, 0.66);
        assert_eq!(c.consecutive_fail, 5);
        assert_eq!(c.min_calls, 5);
        assert_eq!(c.window, Duration::from_secs(10));
        assert_eq!(c.open_duration, Duration::from_secs(10));
        assert_eq!(c.cache_max_entries, 1024);
        assert_eq!(c.cache_max_bytes, 16 * 1024 * 1024);
        assert!(!c.cache_on_failure);
        assert_eq!(c.read_timeout, Duration::from_secs(15));
        assert_eq!(c.write_timeout, Duration::from_secs(15));
        assert_eq!(c.grace, Duration::from_secs(15));
        assert_eq!(c.backend_max_body, 10 * 1024 * 1024);
        assert_eq!(c.max_request_body, 10 * 1024 * 1024);
    }

    #[test]
    fn every_variable_is_read() {
        let c = config(&[
            ("RETTER_SERVER_LISTEN", ":9000"),
            ("RETTER_BACKEND_BASEURL", "https://api.test:8443/v1/"),
            ("RETTER_BACKEND_TIMEOUT", "2s"),
            ("RETTER_BACKEND_MAX_BODY", "1000"),
            ("RETTER_CACHE_TTL", "5"),
            ("RETTER_CACHE_MAX_ENTRIES", "10"),
            ("RETTER_CACHE_MAX_BYTES", "0"),
            ("RETTER_CACHE_ON_FAILURE", "yes"),
            ("RETTER_BREAKER_FAIL_RATE", "0.5"),
            ("RETTER_BREAKER_MIN_CALLS", "20"),
            ("RETTER_BREAKER_WINDOW", "30s"),
            ("RETTER_BREAKER_CONSECUTIVE_FAIL", "3"),
            ("RETTER_BREAKER_OPEN_DURATION", "250ms"),
            ("RETTER_RETRY_MAX", "0"),
            ("RETTER_SERVER_TIMEOUT_READ", "15 seconds"),
            ("RETTER_SERVER_TIMEOUT_WRITE", "1m"),
            ("RETTER_SERVER_TIMEOUT_GRACESHUT", "1.5s"),
            ("RETTER_SERVER_MAX_BODY", "0"),
        ])
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.backend, "https://api.test:8443/v1");
        assert_eq!(c.backend_timeout, Duration::from_secs(2));
        assert_eq!(c.backend_max_body, 1000);
        assert_eq!(c.cache_ttl, Duration::from_secs(5));
        assert_eq!(c.cache_max_entries, 10);
        assert_eq!(c.cache_max_bytes, 0);
        assert!(c.cache_on_failure);
        assert_eq!(c.fail_rate, 0.5);
        assert_eq!(c.min_calls, 20);
        assert_eq!(c.window, Duration::from_secs(30));
        assert_eq!(c.consecutive_fail, 3);
        assert_eq!(c.open_duration, Duration::from_millis(250));
        assert_eq!(c.retry_max, 0);
        assert_eq!(c.read_timeout, Duration::from_secs(15));
        assert_eq!(c.write_timeout, Duration::from_secs(60));
        assert_eq!(c.grace, Duration::from_millis(1500));
        assert_eq!(c.max_request_body, 0);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("RETTER_SERVER_LISTEN", "nowhere"),
            ("RETTER_SERVER_LISTEN", "127.0.0.1:99999"),
            ("RETTER_BACKEND_BASEURL", "localhost:8088"),
            ("RETTER_BACKEND_BASEURL", "ftp://files.test/"),
            ("RETTER_BACKEND_BASEURL", "http://api.test/?x=1"),
            ("RETTER_BACKEND_TIMEOUT", "soon"),
            ("RETTER_BACKEND_TIMEOUT", "0"),
            ("RETTER_BACKEND_TIMEOUT", "-1s"),
            ("RETTER_BACKEND_MAX_BODY", "0"),
            ("RETTER_CACHE_TTL", "5 fortnights"),
            ("RETTER_CACHE_MAX_ENTRIES", "many"),
            ("RETTER_CACHE_ON_FAILURE", "sometimes"),
            ("RETTER_BREAKER_MIN_CALLS", "0"),
            ("RETTER_BREAKER_WINDOW", "forever"),
            ("RETTER_BREAKER_FAIL_RATE", "1.5"),
            ("RETTER_BREAKER_FAIL_RATE", "0"),
            ("RETTER_BREAKER_FAIL_RATE", "NaN"),
            ("RETTER_BREAKER_CONSECUTIVE_FAIL", "0"),
            ("RETTER_BREAKER_CONSECUTIVE_FAIL", "-2"),
            ("RETTER_BREAKER_OPEN_DURATION", "1e9999"),
            ("RETTER_RETRY_MAX", "two"),
            ("RETTER_SERVER_TIMEOUT_GRACESHUT", "ms"),
            ("RETTER_SERVER_MAX_BODY", "10MB"),
        ];
        for (var, value) in cases {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}");
            let text = err.to_string();
            assert!(text.starts_with(var) && text.contains("expected"), "{text}");
        }
    }

    #[test]
    fn a_bad_url_never_prints_its_password() {
        let err =
            config(&[("RETTER_BACKEND_BASEURL", "ftp://me:hunter2@files.test/")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let c = config(&[("RETTER_BACKEND_BASEURL", "http://me:hunter2@api.test/")]).unwrap();
        assert!(!c.describe(|_| true).contains("hunter2"));
    }

    #[test]
    fn redis_settings_are_read_and_secrets_never_shown() {
        let c = config(&[]).unwrap();
        assert!(c.redis_url.is_none() && c.fleet_key.is_none());
        assert_eq!(c.redis_prefix, DEFAULT_PREFIX);
        let key = "5e".repeat(32);
        let c = config(&[
            ("RETTER_REDIS_URL", "redis://:hunter2@redis.test:6380/2"),
            ("RETTER_REDIS_PREFIX", "shop-proxy"),
            ("RETTER_FLEET_KEY", &key),
        ])
        .unwrap();
        let url = c.redis_url.as_ref().unwrap();
        assert_eq!(url.expose(), "redis://:hunter2@redis.test:6380/2");
        assert_eq!(c.redis_prefix, "shop-proxy");
        assert!(c.fleet_key.is_some());
        let shown = format!("{}\n{c:?}", c.describe(|_| true));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains(&key), "{shown}");
        assert!(shown.contains("redis://redis.test:6380/2"), "{shown}");
        assert!(shown.contains("(set, hidden)"), "{shown}");
    }

    #[test]
    fn bad_redis_settings_name_the_variable_and_hide_secrets() {
        for (vars, var) in [
            (
                &[("RETTER_REDIS_URL", "http://redis.test")][..],
                "RETTER_REDIS_URL",
            ),
            (
                &[("RETTER_REDIS_URL", "rediss://:hunter2@redis.test")],
                "RETTER_REDIS_URL",
            ),
            (&[("RETTER_REDIS_PREFIX", "a b")], "RETTER_REDIS_PREFIX"),
            (&[("RETTER_FLEET_KEY", "hunter2")], "RETTER_FLEET_KEY"),
            (
                &[
                    ("RETTER_REDIS_URL", "redis://redis.test"),
                    ("RETTER_FLEET_KEY", "hunter2"),
                ],
                "RETTER_FLEET_KEY",
            ),
        ] {
            let err = config(vars).unwrap_err();
            assert_eq!(err.var, var);
            let text = format!("{err} {err:?}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn empty_values_take_the_default() {
        let c = config(&[("RETTER_CACHE_TTL", " ")]).unwrap();
        assert_eq!(c.cache_ttl, Duration::from_secs(60));
    }

    #[test]
    fn describe_lists_every_variable_and_its_origin() {
        let c = config(&[("RETTER_CACHE_TTL", "5")]).unwrap();
        let text =
            c.describe(|name| name == "RETTER_CACHE_TTL" || name == "RETTER_CACHE_DETECT_SESSION");
        for var in VARS {
            assert!(text.contains(var.name), "{} missing from\n{text}", var.name);
        }
        let ttl_line = text
            .lines()
            .find(|l| l.contains("RETTER_CACHE_TTL"))
            .unwrap();
        assert!(
            ttl_line.contains("5s") && ttl_line.contains("set"),
            "{ttl_line}"
        );
        assert!(
            text.contains("RETTER_CACHE_DETECT_SESSION is ignored"),
            "{text}"
        );
    }

    #[test]
    fn unknown_retter_variables_are_reported() {
        let names = [
            "RETTER_CACHE_TTL",
            "RETTER_CACHE_TLL",
            "PATH",
            "RETTER_CACHE_DETECT_QUERY",
        ];
        assert_eq!(Config::unknown_vars(names), ["RETTER_CACHE_TLL"]);
    }

    #[test]
    fn durations_print_compactly() {
        assert_eq!(show_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(show_duration(Duration::from_secs(15)), "15s");
        assert_eq!(show_duration(Duration::from_secs(120)), "2m");
        assert_eq!(show_duration(Duration::from_secs(90)), "90s");
    }
}
