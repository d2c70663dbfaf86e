//! `todo`: a small SDK for a JSON to-do API, written the way an SDK author would with http-doer.
//!
//! The constructor takes any [`Doer`], so the application chooses the backend, timeouts,
//! retries, logging and authentication (stack decorators before passing it in), and the SDK's
//! own tests run against a scripted double or a mock instead of a network.
//!
//! The API: `GET /todos`, `POST /todos {"title"}` (201), `GET /todos/{id}`,
//! `PATCH /todos/{id} {"done"}`, `DELETE /todos/{id}` (204). Errors come as
//! `{"error": "..."}` with a 4xx or 5xx status.

use std::fmt;
use std::sync::Arc;

use http::{Method, StatusCode, header};
use http_doer::{Body, Doer, Error, Request, Response};
use serde::{Deserialize, Serialize};

/// One to-do item, as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    /// Assigned by the server.
    pub id: u64,
    /// What to do.
    pub title: String,
    /// Whether it is done.
    pub done: bool,
}

/// Why a call to the to-do API failed.
#[derive(Debug)]
pub enum TodoError {
    /// The to-do does not exist (404).
    NotFound,
    /// The API refused the request (another 4xx), with its explanation when it gave one.
    Rejected {
        /// The status the API answered with.
        status: StatusCode,
        /// The `error` field of the answer, if it had one.
        message: Option<String>,
    },
    /// The API failed (5xx).
    Server {
        /// The status the API answered with.
        status: StatusCode,
    },
    /// A status the API does not use (1xx, 3xx).
    Unexpected {
        /// The status the API answered with.
        status: StatusCode,
    },
    /// No usable answer: no connection, a timeout, or a body that is not the expected JSON.
    Http(Error),
}

impl fmt::Display for TodoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TodoError::NotFound => f.write_str("no such to-do"),
            TodoError::Rejected {
                status,
                message: Some(m),
            } => write!(f, "request rejected ({status}): {m}"),
            TodoError::Rejected { status, .. } => write!(f, "request rejected ({status})"),
            TodoError::Server { status } => write!(f, "to-do API failed ({status})"),
            TodoError::Unexpected { status } => write!(f, "unexpected answer ({status})"),
            // The cause is the `source`, not repeated here: a reporter such as anyhow's `{:#}`
            // prints the chain, each message once.
            TodoError::Http(_) => f.write_str("no usable answer from the to-do API"),
        }
    }
}

impl std::error::Error for TodoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TodoError::Http(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for TodoError {
    fn from(e: Error) -> Self {
        TodoError::Http(e)
    }
}

/// A client for the to-do API.
///
/// Cloning is cheap and clones share the Doer.
#[derive(Clone)]
pub struct TodoClient {
    doer: Arc<dyn Doer>,
    base: String,
}

#[derive(Serialize)]
struct NewTodo<'a> {
    title: &'a str,
}

#[derive(Serialize)]
struct SetDone {
    done: bool,
}

#[derive(Deserialize)]
struct ApiError {
    error: String,
}

impl TodoClient {
    /// A client for the API at `base_url` (for example `https://todo.example/v1`), sending
    /// every request through `doer`.
    pub fn new(doer: impl Doer + 'static, base_url: &str) -> Self {
        TodoClient {
            doer: Arc::new(doer),
            base: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Every to-do.
    pub async fn list(&self) -> Result<Vec<Todo>, TodoError> {
        let resp = self.send(Method::GET, "/todos", None).await?;
        Ok(resp.into_body().json().await?)
    }

    /// The to-do `id`.
    pub async fn get(&self, id: u64) -> Result<Todo, TodoError> {
        let resp = self
            .send(Method::GET, &format!("/todos/{id}"), None)
            .await?;
        Ok(resp.into_body().json().await?)
    }

    /// Creates a to-do and returns it with its id.
    pub async fn create(&self, title: &str) -> Result<Todo, TodoError> {
        let body = Body::from_json(&NewTodo { title })?;
        let resp = self.send(Method::POST, "/todos", Some(body)).await?;
        Ok(resp.into_body().json().await?)
    }

    /// Marks the to-do `id` as done and returns it.
    pub async fn complete(&self, id: u64) -> Result<Todo, TodoError> {
        let body = Body::from_json(&SetDone { done: true })?;
        let path = format!("/todos/{id}");
        let resp = self.send(Method::PATCH, &path, Some(body)).await?;
        Ok(resp.into_body().json().await?)
    }

    /// Deletes the to-do `id`.
    pub async fn delete(&self, id: u64) -> Result<(), TodoError> {
        self.send(Method::DELETE, &format!("/todos/{id}"), None)
            .await
            .map(drop)
    }

    /// Sends one request and turns a status other than 2xx into a [`TodoError`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        json: Option<Body>,
    ) -> Result<Response, TodoError> {
        let req = self.request(method, path, json)?;
        let resp = self.doer.execute(req).await?;
        let status = resp.status();
        match status.as_u16() {
            200..=299 => Ok(resp),
            404 => Err(TodoError::NotFound),
            400..=499 => {
                let message = resp.into_body().json::<ApiError>().await.ok();
                let message = message.map(|e| e.error);
                Err(TodoError::Rejected { status, message })
            }
            500..=599 => Err(TodoError::Server { status }),
            _ => Err(TodoError::Unexpected { status }),
        }
    }

    fn request(&self, method: Method, path: &str, json: Option<Body>) -> Result<Request, Error> {
        const JSON: &str = "application/json";
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, JSON)
            .header(header::USER_AGENT, "todo-sdk/0.1");
        if json.is_some() {
            req = req.header(header::CONTENT_TYPE, JSON);
        }
        // A base URL that is not a URL fails here: `?` makes it an `InvalidRequest` error.
        Ok(req.body(json.unwrap_or_default())?)
    }
}
