//! The example SDK (`examples/sdk/todo.rs`) replayed from a committed cassette, with no
//! network: how an SDK author tests against a real server's answers without the server.
//!
//! The cassette, `tests/data/cassettes/todo_sdk.json`, was recorded from a to-do API on
//! loopback (`examples/sdk/server.rs`, the one `cargo run --example sdk` runs). To record it
//! again, after the SDK or the API changed:
//!
//! ```text
//! HTTP_DOER_RECORD=all cargo test --test sdk_cassette -- the_sdk_workflow
//! ```
//!
//! (the filter keeps the other test from reading the cassette while it is being rewritten).
//!
//! Every other run replays it and never opens a socket.

#[path = "../examples/sdk/todo.rs"]
mod todo;

#[path = "../examples/sdk/server.rs"]
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_doer::testing::{Cassette, Order, RecordMode, doer_fn};
use http_doer::{Doer, DoerExt, ErrorKind, Request, ReqwestDoer};
use todo::{TodoClient, TodoError};

const CASSETTE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/cassettes/todo_sdk.json"
);

/// The base URL the SDK is given: not a real host. While recording, requests to it are sent to
/// the loopback API instead, so the cassette holds this stable URL rather than a random port.
const BASE: &str = "http://todo.test/v1";

/// The Doer a cassette records from: the example's to-do API (`examples/sdk/server.rs`),
/// started on loopback at the first request (so a replay starts nothing), reached with
/// `ReqwestDoer`. Counts the requests it sends.
fn to_loopback(sent: Arc<AtomicUsize>) -> impl Doer + Clone {
    let started = Arc::new(tokio::sync::OnceCell::new());
    doer_fn(move |mut req: Request| {
        let (started, sent) = (started.clone(), sent.clone());
        async move {
            sent.fetch_add(1, Ordering::SeqCst);
            let base: &String = started
                .get_or_try_init(server::start)
                .await
                .map_err(|e| http_doer::Error::new(ErrorKind::Connect, e))?;
            let path = req.uri().path().trim_start_matches("/v1");
            *req.uri_mut() = format!("{base}{path}").parse().map_err(http::Error::from)?;
            ReqwestDoer::new().execute(req).await
        }
    })
}

/// What the SDK's caller does, and what it must see.
async fn workflow(api: &TodoClient) {
    let milk = api.create("buy milk").await.unwrap();
    let docs = api.create("write the docs").await.unwrap();
    assert_eq!((milk.id, docs.id), (1, 2));
    assert!(api.complete(milk.id).await.unwrap().done);
    let all = api.list().await.unwrap();
    let titles: Vec<_> = all.iter().map(|t| (t.title.as_str(), t.done)).collect();
    assert_eq!(titles, [("buy milk", true), ("write the docs", false)]);
    api.delete(docs.id).await.unwrap();
    assert!(matches!(api.get(docs.id).await, Err(TodoError::NotFound)));
    match api.create("").await {
        Err(TodoError::Rejected { status, message }) => {
            assert_eq!(status, 422);
            assert_eq!(message.as_deref(), Some("title must not be empty"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn the_sdk_workflow_replays_from_the_committed_cassette() {
    let sent = Arc::new(AtomicUsize::new(0));
    // In order and on the body too: the SDK must send these very requests, in this order.
    let cassette = Cassette::new(to_loopback(sent.clone()), CASSETTE)
        .order(Order::InOrder)
        .match_body(true);
    // The stack an application would hand the SDK, over the cassette instead of the network.
    let api = TodoClient::new(cassette.clone().retrying().logging(), BASE);
    workflow(&api).await;
    assert_eq!(
        cassette.unplayed(),
        Some(0),
        "every recorded request was sent"
    );
    let replaying = matches!(RecordMode::from_env(), Ok(None | Some(RecordMode::Replay)));
    if replaying {
        assert_eq!(sent.load(Ordering::SeqCst), 0, "a replay sends nothing");
    }
}

#[tokio::test]
async fn a_call_the_cassette_never_saw_names_the_nearest_recorded_one() {
    let api = TodoClient::new(Cassette::replay(CASSETTE), BASE);
    match api.get(9).await {
        Err(TodoError::Http(e)) => {
            assert_eq!(e.kind(), ErrorKind::InvalidRequest);
            let msg = e.to_string();
            assert!(
                msg.contains("no match for GET http://todo.test/v1/todos/9"),
                "{msg}"
            );
            assert!(
                msg.contains("the nearest, #5 GET http://todo.test/v1/todos/2, differs: path /v1/todos/2 recorded"),
                "{msg}"
            );
        }
        other => panic!("expected a no-match error, got {other:?}"),
    }
}
