//! ConcurrencyLimit: slots per key, the bounded queue, cancellation, and streamed bodies.
//! Paused time throughout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_doer::limit::{ConcurrencyLimit, QueueWait};
use http_doer::testing::{doer_fn, response};
use http_doer::{Body, Doer, DoerExt, Error, ErrorKind, Request};
use tokio::time::Instant;

fn get(url: &str) -> Request {
    http::Request::get(url).body(Body::empty()).unwrap()
}

/// A Doer that takes `latency` to answer, and counts the most calls it had in flight at once.
fn slow(latency: Duration) -> (impl Doer + Clone, Arc<AtomicUsize>) {
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let peak = most.clone();
    let doer = doer_fn(move |_req: Request| {
        let (now, most) = (now.clone(), most.clone());
        async move {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(latency).await;
            now.fetch_sub(1, Ordering::SeqCst);
            Ok(response(200, "done"))
        }
    });
    (Arc::new(doer), peak)
}

#[tokio::test(start_paused = true)]
async fn at_most_n_calls_per_key_are_in_flight() {
    let (backend, peak) = slow(Duration::from_millis(100));
    let doer = Arc::new(backend.concurrency_limit(3));
    let start = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let doer = doer.clone();
            tokio::spawn(async move { doer.execute(get("https://api.test/")).await })
        })
        .collect();
    let mut queued = 0;
    for call in calls {
        let resp = call.await.unwrap().unwrap();
        queued += usize::from(resp.extensions().get::<QueueWait>().is_some());
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(700), "7 rounds of 3");
    assert_eq!(queued, 17);
    assert_eq!(doer.in_flight(&get("https://api.test/")), 0);
}

#[tokio::test(start_paused = true)]
async fn each_host_has_its_own_slots() {
    let (backend, peak) = slow(Duration::from_millis(100));
    let doer = backend.concurrency_limit(1);
    let start = Instant::now();
    let (a, b) = tokio::join!(
        doer.execute(get("https://a.test/")),
        doer.execute(get("https://b.test/"))
    );
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn past_the_queue_a_call_fails_at_once() {
    let (backend, _) = slow(Duration::from_secs(1));
    let doer = Arc::new(ConcurrencyLimit::new(backend, 1).max_queue(2));
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let doer = doer.clone();
            tokio::spawn(async move {
                let out = doer
                    .execute(get("https://u:pw@api.test/?token=s3cr3t"))
                    .await;
                (out, Instant::now())
            })
        })
        .collect();
    let start = Instant::now();
    let mut refused = Vec::new();
    let mut served = 0;
    for call in calls {
        match call.await.unwrap() {
            (Ok(_), _) => served += 1,
            (Err(err), at) => refused.push((err, at - start)),
        }
    }
    assert_eq!(served, 3, "one in flight and two queued");
    assert_eq!(refused.len(), 2);
    for (err, at) in refused {
        assert_eq!(err.kind(), ErrorKind::ConcurrencyLimited);
        assert_eq!(at, Duration::ZERO, "refused at once");
        assert_eq!(err.retry_after(), None);
        assert_eq!(
            err.to_string(),
            "concurrency limit reached: 1 calls in flight and 2 waiting (https://api.test/?token=REDACTED)"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_calls_give_their_slots_and_places_back() {
    let (backend, _) = slow(Duration::from_secs(60));
    let doer = ConcurrencyLimit::new(backend, 2)
        .max_queue(3)
        .max_wait(None);
    for _ in 0..5 {
        // Two are dropped while in flight, three while queued.
        let calls = (0..5).map(|_| doer.execute(get("https://api.test/")));
        let all = futures_util::future::join_all(calls);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), all)
                .await
                .is_err()
        );
        assert_eq!(
            doer.in_flight(&get("https://api.test/")),
            0,
            "no slot leaked"
        );
    }
    // Every slot and every place in the queue is free: five fit again, none refused.
    let calls = (0..5).map(|_| doer.execute(get("https://api.test/")));
    let start = Instant::now();
    let outcomes = futures_util::future::join_all(calls).await;
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(180),
        "3 rounds of 60 s"
    );
}

/// A Doer whose answer streams `chunks` chunks, one per `poll`, with no length.
fn streaming(chunks: usize) -> impl Doer {
    doer_fn(move |_req: Request| async move {
        let parts = (0..chunks).map(|_| Ok::<Bytes, Error>(Bytes::from_static(b"chunk")));
        let body = Body::from_stream(futures_util::stream::iter(parts));
        Ok(http::Response::new(body))
    })
}

#[tokio::test(start_paused = true)]
async fn a_streamed_body_holds_its_slot_until_read_to_its_end_or_dropped() {
    let doer = ConcurrencyLimit::new(streaming(3), 1).max_wait(Duration::ZERO);
    let key = get("https://api.test/");

    let first = doer.execute(get("https://api.test/")).await.unwrap();
    assert_eq!(doer.in_flight(&key), 1, "held while the body is unread");
    let err = doer.execute(get("https://api.test/")).await.unwrap_err();
    assert!(err.is_concurrency_limited());
    assert_eq!(first.into_body().text().await.unwrap(), "chunkchunkchunk");
    assert_eq!(doer.in_flight(&key), 0, "given back at the end");

    let second = doer.execute(get("https://api.test/")).await.unwrap();
    assert_eq!(doer.in_flight(&key), 1);
    drop(second);
    assert_eq!(doer.in_flight(&key), 0, "given back when dropped");

    let buffered =
        ConcurrencyLimit::new(http_doer::testing::ScriptedDoer::new().then_status(200), 1);
    let resp = buffered.execute(get("https://api.test/")).await.unwrap();
    assert_eq!(
        buffered.in_flight(&key),
        0,
        "a buffered answer holds nothing while it is held"
    );
    drop(resp);
}

#[tokio::test(start_paused = true)]
async fn errors_give_the_slot_back_and_pass_through() {
    let calls = Arc::new(Mutex::new(0));
    let n = calls.clone();
    let backend = doer_fn(move |_req: Request| {
        *n.lock().unwrap() += 1;
        async { Err::<http_doer::Response, _>(Error::from(ErrorKind::Transport)) }
    });
    let doer = ConcurrencyLimit::new(backend, 1).max_wait(Duration::ZERO);
    for _ in 0..3 {
        let err = doer.execute(get("https://api.test/")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transport);
    }
    assert_eq!(*calls.lock().unwrap(), 3);
    let text = format!("{doer:?}");
    assert!(
        text.contains("max_in_flight: 1") && text.contains("keys: 1"),
        "{text}"
    );
}
