//! Tests of the example SDK (`examples/sdk/todo.rs`) as its author would write them: with the
//! scripted double and with `MockDoer`, asserting on exactly what was sent and on how answers
//! and failures reach the SDK's caller; then once end to end over loopback.

#[path = "../examples/sdk/todo.rs"]
mod todo;

use http::{Method, StatusCode, header};
use http_doer::testing::{ScriptedDoer, json_response, response};
use http_doer::{Body, ErrorKind, MockDoer, Request, ReqwestDoer};
use serde_json::{Value, json};
use todo::{Todo, TodoClient, TodoError};

const BASE: &str = "http://todo.test/v1";

fn todo_json(id: u64, title: &str, done: bool) -> Value {
    json!({ "id": id, "title": title, "done": done })
}

/// The JSON body of a recorded request (`Null` when it has none).
fn sent_json(req: &Request) -> Value {
    let bytes = req.body().as_bytes().expect("a buffered body");
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).expect("a JSON body")
    }
}

/// Checks what every request of the SDK carries, and returns `(method, path, json body)`.
fn sent(req: &Request) -> (Method, String, Value) {
    assert_eq!(req.headers()[header::ACCEPT], "application/json");
    assert_eq!(req.headers()[header::USER_AGENT], "todo-sdk/0.1");
    let body = sent_json(req);
    let content_type = req.headers().get(header::CONTENT_TYPE);
    if body.is_null() {
        assert!(content_type.is_none(), "{content_type:?} without a body");
    } else {
        assert_eq!(content_type.unwrap(), "application/json");
    }
    assert_eq!(req.uri().host(), Some("todo.test"));
    (req.method().clone(), req.uri().path().to_owned(), body)
}

#[tokio::test]
async fn every_call_sends_the_documented_request() {
    let doer = ScriptedDoer::new()
        .then_json(200, &json!([todo_json(1, "a", false)]))
        .then_json(200, &todo_json(7, "b", false))
        .then_json(201, &todo_json(8, "buy milk", false))
        .then_json(200, &todo_json(7, "b", true))
        .then_status(204);
    let api = TodoClient::new(doer.clone(), BASE);

    let list = api.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].title, "a");
    assert_eq!(api.get(7).await.unwrap().id, 7);
    let created = api.create("buy milk").await.unwrap();
    assert_eq!((created.id, created.title.as_str()), (8, "buy milk"));
    assert!(api.complete(7).await.unwrap().done);
    api.delete(7).await.unwrap();

    let seen: Vec<_> = doer.requests().iter().map(sent).collect();
    let want = [
        (Method::GET, "/v1/todos", Value::Null),
        (Method::GET, "/v1/todos/7", Value::Null),
        (Method::POST, "/v1/todos", json!({ "title": "buy milk" })),
        (Method::PATCH, "/v1/todos/7", json!({ "done": true })),
        (Method::DELETE, "/v1/todos/7", Value::Null),
    ];
    assert_eq!(seen.len(), want.len());
    for (got, (method, path, body)) in seen.iter().zip(want) {
        assert_eq!((&got.0, got.1.as_str(), &got.2), (&method, path, &body));
    }
}

#[tokio::test]
async fn a_trailing_slash_in_the_base_url_is_ignored() {
    let doer = ScriptedDoer::new().then_json(200, &json!([]));
    let api = TodoClient::new(doer.clone(), "http://todo.test/v1/");
    assert!(api.list().await.unwrap().is_empty());
    assert_eq!(doer.requests()[0].uri().path(), "/v1/todos");
}

#[tokio::test]
async fn statuses_become_typed_errors() {
    let doer = ScriptedDoer::new()
        .then_json(404, &json!({ "error": "no such to-do" }))
        .then_json(422, &json!({ "error": "title must not be empty" }))
        .then(Ok(response(400, "<html>bad request</html>")))
        .then_status(503)
        .then_status(302);
    let api = TodoClient::new(doer, BASE);

    assert!(matches!(api.get(1).await, Err(TodoError::NotFound)));
    match api.create("").await {
        Err(TodoError::Rejected { status, message }) => {
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(message.as_deref(), Some("title must not be empty"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    match api.create("x").await {
        Err(e @ TodoError::Rejected { message: None, .. }) => {
            assert_eq!(e.to_string(), "request rejected (400 Bad Request)");
        }
        other => panic!("expected Rejected without a message, got {other:?}"),
    }
    match api.list().await {
        Err(TodoError::Server { status }) => assert_eq!(status, 503),
        other => panic!("expected Server, got {other:?}"),
    }
    match api.delete(1).await {
        Err(TodoError::Unexpected { status }) => assert_eq!(status, 302),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

#[tokio::test]
async fn failures_without_an_answer_keep_their_kind() {
    let doer = ScriptedDoer::new()
        .then_error(ErrorKind::Timeout)
        .then(Ok(response(200, "not json")));
    let api = TodoClient::new(doer, BASE);

    match api.list().await {
        Err(TodoError::Http(e)) => assert!(e.is_timeout(), "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    match api.get(1).await {
        Err(TodoError::Http(e)) => {
            assert_eq!(e.kind(), ErrorKind::Decode);
            let source = std::error::Error::source(&TodoError::Http(e)).is_some();
            assert!(source, "the http-doer error is the source");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_base_url_fails_before_anything_is_sent() {
    let doer = ScriptedDoer::new();
    let api = TodoClient::new(doer.clone(), "http://bad host");
    match api.list().await {
        Err(TodoError::Http(e)) => {
            assert_eq!(e.kind(), ErrorKind::InvalidRequest);
            assert_eq!(e.to_string(), "invalid request: the URL is not valid");
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    assert_eq!(doer.calls(), 0);
}

/// What the application sees when it reports the SDK's error with anyhow: the SDK's words, then
/// http-doer's, then the cause, each once.
#[tokio::test]
async fn an_unreachable_api_reads_once_under_anyhow() {
    let url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let api = TodoClient::new(http_doer::UreqDoer::new(), &url);
    let err = api.list().await.unwrap_err();
    assert!(
        matches!(&err, TodoError::Http(e) if e.is_connect()),
        "{err:?}"
    );
    let report = format!("{:#}", anyhow::Error::from(err));
    assert!(
        report.starts_with(&format!(
            "no usable answer from the to-do API: connect error ({url}/todos): "
        )),
        "{report}"
    );
    assert_eq!(report.matches("connect error").count(), 1, "{report}");
    assert_eq!(
        report.to_lowercase().matches("refused").count(),
        1,
        "{report}"
    );
}

#[tokio::test]
async fn mock_expects_exactly_one_create_with_this_json() {
    let mut mock = MockDoer::new();
    mock.expect_execute()
        .withf(|req| {
            req.method() == Method::POST
                && req.uri() == "http://todo.test/v1/todos"
                && req.headers()[header::CONTENT_TYPE] == "application/json"
                && sent_json(req) == json!({ "title": "write tests" })
        })
        .times(1)
        .returning(|_| Ok(json_response(201, &todo_json(3, "write tests", false))));
    let api = TodoClient::new(mock, BASE);
    let want = Todo {
        id: 3,
        title: "write tests".into(),
        done: false,
    };
    assert_eq!(api.create("write tests").await.unwrap(), want);
    // Dropping `api` drops the mock, which checks `times(1)`.
}

#[tokio::test]
async fn mock_checks_a_workflow_in_order() {
    let mut seq = mockall::Sequence::new();
    let mut mock = MockDoer::new();
    let mut expect = |method: Method, path: &'static str, answer: http_doer::Response| {
        mock.expect_execute()
            .withf(move |req| req.method() == method && req.uri().path() == path)
            .times(1)
            .in_sequence(&mut seq)
            .return_once(move |_| Ok(answer));
    };
    expect(
        Method::PATCH,
        "/v1/todos/5",
        json_response(200, &todo_json(5, "ship", true)),
    );
    expect(Method::DELETE, "/v1/todos/5", response(204, Body::empty()));

    let api = TodoClient::new(mock, BASE);
    assert!(api.complete(5).await.unwrap().done);
    api.delete(5).await.unwrap();
}

/// End to end: the SDK over `ReqwestDoer` and a loopback wiremock server, which checks that
/// exactly this request arrived.
#[tokio::test]
async fn the_sdk_talks_to_a_real_server() {
    use wiremock::matchers::{body_json, header as has_header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/todos/9"))
        .and(has_header("content-type", "application/json"))
        .and(has_header("accept", "application/json"))
        .and(body_json(json!({ "done": true })))
        .respond_with(ResponseTemplate::new(200).set_body_json(todo_json(9, "e2e", true)))
        .expect(1)
        .mount(&server)
        .await;

    let api = TodoClient::new(ReqwestDoer::new(), &server.uri());
    let todo = api.complete(9).await.unwrap();
    assert_eq!((todo.id, todo.done), (9, true));
    assert!(matches!(api.get(10).await, Err(TodoError::NotFound)));
}
