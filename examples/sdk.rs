//! An SDK built on http-doer, run against an in-process to-do API.
//!
//! `examples/sdk/todo.rs` is the SDK: its constructor takes any `Doer`. This file plays the
//! application: it starts a small to-do server on a free loopback port, hands the SDK a real
//! backend, and prints what happens. No internet; it ends at once.
//!
//! Run it with `cargo run --example sdk`. The SDK's tests are in `tests/sdk.rs` (doubles and
//! mocks) and `tests/sdk_cassette.rs` (replayed from a committed cassette).

#[path = "sdk/todo.rs"]
mod todo;

#[path = "sdk/server.rs"]
mod server;

use http_doer::{ReqwestDoer, UreqDoer};
use todo::{TodoClient, TodoError};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = server::start().await?;

    // The application chooses the backend (and would stack retries, logging or auth here).
    let api = TodoClient::new(ReqwestDoer::new(), &base);
    let milk = api.create("buy milk").await?;
    let docs = api.create("write the docs").await?;
    api.complete(milk.id).await?;
    println!("to-dos after completing #{}:", milk.id);
    for t in api.list().await? {
        println!(
            "  #{} [{}] {}",
            t.id,
            if t.done { "x" } else { " " },
            t.title
        );
    }

    api.delete(docs.id).await?;
    match api.get(docs.id).await {
        Err(TodoError::NotFound) => println!("#{} after delete: not found, as expected", docs.id),
        other => return Err(format!("#{} should be gone, got {other:?}", docs.id).into()),
    }
    match api.create("").await {
        Err(e @ TodoError::Rejected { .. }) => println!("empty title: {e}"),
        other => return Err(format!("an empty title should be rejected, got {other:?}").into()),
    }

    // The same SDK over the other backend: nothing in it changes.
    let over_ureq = TodoClient::new(UreqDoer::new(), &base);
    let first = over_ureq.get(milk.id).await?;
    println!(
        "via UreqDoer: #{} \"{}\" done={}",
        first.id, first.title, first.done
    );
    Ok(())
}
