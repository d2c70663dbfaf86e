//! The task that sends every queued job to Redis, in order, each bounded by a timeout.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

use super::{Holder, Inner, Job, lock, scripts};

/// One answer of a circuit's stale index as `STALE_FETCH` returns it: name, blob, ms left.
type Fetched = (Vec<u8>, Vec<u8>, i64);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Sends every queued job to Redis, in order.
pub(super) async fn work(
    weak: Weak<Inner>,
    mut conn: ConnectionManager,
    mut rx: mpsc::Receiver<Job>,
) {
    let failed = Script::new(scripts::FAILED);
    let put = Script::new(scripts::STALE_PUT);
    let remove = Script::new(scripts::STALE_REMOVE);
    let fetch = Script::new(scripts::STALE_FETCH);
    let acquire = Script::new(scripts::ACQUIRE);
    while let Some(job) = rx.recv().await {
        let Some(inner) = weak.upgrade() else { return };
        let i = &*inner;
        let limit = i.timeout;
        let ok = match job {
            Job::Opened {
                from,
                key,
                until,
                period,
            } => {
                let open_for = until.saturating_duration_since(Instant::now());
                if open_for.is_zero() {
                    continue;
                }
                let msg = format!("o {} {from} {} {key}", i.replica, ms(open_for));
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .pset_ex(i.key("state", &key), ms(period), ms(open_for))
                    .ignore()
                    .sadd(i.open_index(), &key)
                    .ignore()
                    .del(i.key("fails", &key))
                    .ignore()
                    .publish(i.channel(), msg)
                    .ignore();
                run(limit, pipe.query_async::<()>(&mut conn))
                    .await
                    .is_some()
            }
            Job::Paused { from, key, until } => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    continue;
                }
                let msg = format!("p {} {from} {} {key}", i.replica, ms(left));
                let mut pipe = redis::pipe();
                pipe.publish(i.channel(), msg).ignore();
                run(limit, pipe.query_async::<()>(&mut conn))
                    .await
                    .is_some()
            }
            Job::Closed { from, key } => {
                let msg = format!("c {} {from} 0 {key}", i.replica);
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .del(&[
                        i.key("state", &key),
                        i.key("lease", &key),
                        i.key("fails", &key),
                    ])
                    .ignore()
                    .srem(i.open_index(), &key)
                    .ignore()
                    .publish(i.channel(), msg)
                    .ignore();
                run(limit, pipe.query_async::<()>(&mut conn))
                    .await
                    .is_some()
            }
            Job::Failed { key, trip } => {
                // When the fleet's count reaches the threshold, the script opens the circuit
                // everywhere, this replica's breakers included (breaker id 0 is nobody's), in
                // the same round trip: a second one would let more calls reach the host.
                let open_for = ms(trip.open_for);
                let msg = format!("o {} 0 {open_for} {key}", i.replica);
                let n: Option<u64> = run(
                    limit,
                    failed
                        .key(i.key("fails", &key))
                        .key(i.key("state", &key))
                        .key(i.open_index())
                        .arg(ms(trip.window))
                        .arg(trip.threshold)
                        .arg(open_for)
                        .arg(i.channel())
                        .arg(msg)
                        .arg(&key)
                        .invoke_async(&mut conn),
                )
                .await;
                if n == Some(u64::from(trip.threshold)) {
                    tracing::warn!(
                        target: "http_doer::fleet",
                        key,
                        failures = trip.threshold,
                        "fleet failures in a row reached the threshold: opened everywhere"
                    );
                }
                n.is_some()
            }
            Job::Recovered { key } => run(
                limit,
                redis::cmd("DEL")
                    .arg(i.key("fails", &key))
                    .query_async::<()>(&mut conn),
            )
            .await
            .is_some(),
            Job::Acquire { key, ttl } => {
                let got: Option<(u8, i64)> = run(
                    limit,
                    acquire
                        .key(i.key("lease", &key))
                        .arg(i.replica)
                        .arg(ms(ttl))
                        .invoke_async(&mut conn),
                )
                .await;
                if let Some((mine, left)) = got {
                    let left = Duration::from_millis(left.max(1) as u64).min(super::LONGEST);
                    let until = Instant::now() + left;
                    if let Some(lease) = lock(&i.leases).get_mut(&key) {
                        lease.holder = match mine {
                            1 => Holder::Mine(until),
                            _ => Holder::Theirs(until),
                        };
                        lease.asked = None;
                    }
                }
                got.is_some()
            }
            Job::Put {
                circuit,
                name,
                answer,
                ttl,
            } => {
                let (slot, idx) = i.stale_names(&circuit, name);
                let ttl_ms = ms(ttl);
                let mut plain = Vec::with_capacity(8 + answer.len());
                plain.extend_from_slice(&ttl_ms.to_le_bytes());
                plain.extend_from_slice(&answer);
                let Some(blob) = i.key.as_ref().and_then(|k| k.seal(slot.as_bytes(), &plain))
                else {
                    continue;
                };
                let p = &i.prefix;
                run(
                    limit,
                    put.key(&slot)
                        .key(idx)
                        .key(format!("{p}:stale-lru"))
                        .key(format!("{p}:stale-size"))
                        .key(format!("{p}:stale-bytes"))
                        .key(format!("{p}:stale-seq"))
                        .arg(blob)
                        .arg(ttl_ms)
                        .arg(i.bound.max_entries)
                        .arg(i.bound.max_bytes)
                        .invoke_async::<u64>(&mut conn),
                )
                .await
                .is_some()
            }
            Job::Remove { circuit, name } => {
                let (slot, _) = i.stale_names(&circuit, name);
                let p = &i.prefix;
                run(
                    limit,
                    remove
                        .key(&slot)
                        .key(format!("{p}:stale-lru"))
                        .key(format!("{p}:stale-size"))
                        .key(format!("{p}:stale-bytes"))
                        .invoke_async::<u64>(&mut conn),
                )
                .await
                .is_some()
            }
            Job::Fetch { circuit, sink } => {
                let (_, idx) = i.stale_names(&circuit, 0);
                // Names as bytes: a member that is not text (written by anyone with access to
                // Redis) is skipped below, where reading it as a `String` would fail the
                // whole fetch, and mark the link down.
                let got: Option<Vec<Fetched>> =
                    run(limit, fetch.key(idx).invoke_async(&mut conn)).await;
                if let (Some(entries), Some(sink), Some(key)) = (&got, sink.upgrade(), &i.key) {
                    for (slot, blob, left) in entries {
                        let Ok(slot) = std::str::from_utf8(slot) else {
                            continue;
                        };
                        let Some(plain) = key.open(slot.as_bytes(), blob) else {
                            tracing::warn!(
                                target: "http_doer::fleet",
                                "a stale answer in Redis did not open (altered, or another key): skipped"
                            );
                            continue;
                        };
                        let Some((ttl, answer)) = plain.split_first_chunk::<8>() else {
                            continue;
                        };
                        // The slot ends with the answer's name, which its seal is bound to.
                        let Some(name) = slot
                            .rsplit(':')
                            .next()
                            .and_then(|n| u128::from_str_radix(n, 16).ok())
                        else {
                            continue;
                        };
                        let held = u64::from_le_bytes(*ttl).saturating_sub((*left).max(0) as u64);
                        sink.adopt(&circuit, name, answer, Duration::from_millis(held));
                    }
                }
                got.is_some()
            }
            Job::Resync => resync(&inner, &mut conn).await,
        };
        inner.mark(ok);
    }
}

/// Reads every circuit the fleet holds open, for a replica that starts or comes back: the
/// states of the circuits the index of open circuits names (no other key of the database is
/// read), forgetting those whose state has expired.
async fn resync(inner: &Arc<Inner>, conn: &mut ConnectionManager) -> bool {
    let index = inner.open_index();
    let mut cursor = 0u64;
    // Bounded, as anything read from Redis: 100 pages of about 200 circuits.
    for _ in 0..100 {
        // Names as bytes: a member that is not text is skipped, not a failed page.
        let page: Option<(u64, Vec<Vec<u8>>)> = run(
            inner.timeout,
            redis::cmd("SSCAN")
                .arg(&index)
                .arg(cursor)
                .arg("COUNT")
                .arg(200)
                .query_async(conn),
        )
        .await;
        let Some((next, keys)) = page else {
            return false;
        };
        for key in &keys {
            let Ok(key) = std::str::from_utf8(key) else {
                continue;
            };
            let state = inner.key("state", key);
            let got: Option<(i64, Option<Vec<u8>>)> = run(
                inner.timeout,
                redis::pipe()
                    .cmd("PTTL")
                    .arg(&state)
                    .cmd("GET")
                    .arg(&state)
                    .query_async(conn),
            )
            .await;
            match got {
                Some((left, period)) if left > 0 => {
                    let remaining = Duration::from_millis(left as u64);
                    // The whole period, for the probe lease; an older replica's `open` (or
                    // anything else) leaves what is left of it.
                    let period = period
                        .as_deref()
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                        .map_or(remaining, Duration::from_millis);
                    inner.note_open_for(key, remaining, period);
                    inner.deliver(0, |s| s.opened(key, remaining));
                }
                // No state (expired, or closed by a replica that could not reach the index).
                Some((-2, _)) => {
                    let _: Option<()> = run(
                        inner.timeout,
                        redis::cmd("SREM").arg(&index).arg(key).query_async(conn),
                    )
                    .await;
                }
                _ => {}
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    true
}

async fn run<T>(
    limit: Duration,
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Option<T> {
    match timeout(limit, f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::debug!(target: "http_doer::fleet", error = %e, "Redis command failed");
            None
        }
        Err(_) => None,
    }
}
