//! A tiny in-memory to-do API over hyper, the server `examples/sdk.rs` runs the SDK against
//! (and `tests/sdk_cassette.rs` records its cassette from).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::todo::Todo;

#[derive(Default)]
struct Store {
    next_id: u64,
    todos: BTreeMap<u64, Todo>,
}

#[derive(Deserialize)]
struct Changes {
    title: Option<String>,
    done: Option<bool>,
}

/// Starts the API on a free loopback port and returns its base URL.
pub async fn start() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let store = Arc::new(Mutex::new(Store::default()));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            let service = hyper::service::service_fn(move |req| serve(store.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::spawn(conn);
        }
    });
    Ok(base)
}

async fn serve(
    store: Arc<Mutex<Store>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (status, value) = {
        let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
        route(&mut store, &parts.method, parts.uri.path(), &body)
    };
    let body = match value {
        Value::Null => Bytes::new(),
        value => Bytes::from(value.to_string()),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let json = header::HeaderValue::from_static("application/json");
    resp.headers_mut().insert(header::CONTENT_TYPE, json);
    Ok(resp)
}

fn route(store: &mut Store, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
    let changes = serde_json::from_slice::<Changes>(body).ok();
    if path == "/todos" {
        return match (method, changes.and_then(|c| c.title)) {
            (&Method::GET, _) => (
                StatusCode::OK,
                json!(store.todos.values().collect::<Vec<_>>()),
            ),
            (&Method::POST, Some(title)) if !title.is_empty() => {
                store.next_id += 1;
                let todo = Todo {
                    id: store.next_id,
                    title,
                    done: false,
                };
                store.todos.insert(todo.id, todo.clone());
                (StatusCode::CREATED, json!(todo))
            }
            (&Method::POST, _) => {
                error(StatusCode::UNPROCESSABLE_ENTITY, "title must not be empty")
            }
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        };
    }
    let id = path
        .strip_prefix("/todos/")
        .and_then(|id| id.parse::<u64>().ok());
    let Some(id) = id else {
        return error(StatusCode::NOT_FOUND, "no such route");
    };
    let Some(todo) = store.todos.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "no such to-do");
    };
    match *method {
        Method::GET => (StatusCode::OK, json!(todo)),
        Method::PATCH => {
            if let Some(done) = changes.and_then(|c| c.done) {
                todo.done = done;
            }
            (StatusCode::OK, json!(todo))
        }
        Method::DELETE => {
            store.todos.remove(&id);
            (StatusCode::NO_CONTENT, Value::Null)
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

fn error(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (status, json!({ "error": message }))
}
