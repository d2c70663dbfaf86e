//! Watching a body go by: what decorators use to see a streamed response's bytes (to log its
//! first bytes, to keep a copy for the stale cache, to count a failure) without holding the
//! stream back.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

use super::{Body, Inner};
use crate::Error;

/// What watches a body: told of each chunk as the reader takes it, then once of how the body
/// ended, or of it being dropped before its end.
pub(crate) trait Tap: Send + Unpin + 'static {
    /// A chunk, just before the reader gets it.
    fn chunk(&mut self, _chunk: &Bytes) {}

    /// The body ended: whole (`Ok`) or with the reader's error. Called at most once.
    fn end(&mut self, _result: Result<(), &Error>) {}

    /// The body was dropped before its end (never called after [`end`](Self::end)).
    fn dropped(&mut self) {}
}

impl Body {
    /// This body, with `tap` told of what goes through it.
    ///
    /// A buffered body is told at once (one chunk and its end) and comes back unchanged. A
    /// replayable stream is not tapped (it is a request's, opened anew by every attempt) and
    /// comes back as it is.
    pub(crate) fn tap(self, mut tap: impl Tap) -> Body {
        match self.inner {
            Inner::Full(bytes) => {
                if !bytes.is_empty() {
                    tap.chunk(&bytes);
                }
                tap.end(Ok(()));
                Body {
                    inner: Inner::Full(bytes),
                }
            }
            Inner::Replay { .. } => self,
            _ => {
                let len = self.len();
                let limit = match &self.inner {
                    Inner::Open(open) => open.limit,
                    _ => None,
                };
                let tapped = Tapped {
                    body: self,
                    tap: Some(tap),
                    left: len,
                };
                Body::streamed(Box::pin(tapped), len, limit)
            }
        }
    }
}

impl Body {
    /// This body, each error of its stream passed through `f`. A buffered or replayable body
    /// comes back as it is.
    pub(crate) fn map_err(self, f: impl Fn(Error) -> Error + Send + Unpin + 'static) -> Body {
        match self.inner {
            Inner::Full(_) | Inner::Replay { .. } => self,
            _ => {
                let len = self.len();
                let limit = match &self.inner {
                    Inner::Open(open) => open.limit,
                    _ => None,
                };
                Body::streamed(Box::pin(MapErr { body: self, f }), len, limit)
            }
        }
    }
}

struct MapErr<F> {
    body: Body,
    f: F,
}

impl<F: Fn(Error) -> Error + Unpin> Stream for MapErr<F> {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = std::task::ready!(this.body.poll_chunk(cx));
        Poll::Ready(item.map(|r| r.map_err(&this.f)))
    }
}

struct Tapped<T: Tap> {
    body: Body,
    /// `None` once told of the end.
    tap: Option<T>,
    /// What is left of a declared length: a reader that stops once it has it all (as hyper
    /// does for a body of known length) has read the whole body, even if it never asks for
    /// the end.
    left: Option<u64>,
}

impl<T: Tap> Stream for Tapped<T> {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = std::task::ready!(this.body.poll_chunk(cx));
        if let Some(tap) = &mut this.tap {
            match &item {
                Some(Ok(chunk)) => {
                    tap.chunk(chunk);
                    if let Some(left) = &mut this.left {
                        *left = left.saturating_sub(chunk.len() as u64);
                    }
                    if this.left == Some(0) {
                        // The body's `Open` has checked the length: nothing more can come.
                        tap.end(Ok(()));
                        this.tap = None;
                    }
                }
                Some(Err(e)) => tap.end(Err(e)),
                None => tap.end(Ok(())),
            }
        }
        if !matches!(item, Some(Ok(_))) {
            this.tap = None;
        }
        Poll::Ready(item)
    }
}

impl<T: Tap> Drop for Tapped<T> {
    fn drop(&mut self) {
        if let Some(tap) = &mut self.tap {
            tap.dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::ErrorKind;

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl Tap for Seen {
        fn chunk(&mut self, chunk: &Bytes) {
            self.0
                .lock()
                .unwrap()
                .push(format!("chunk {}", chunk.len()));
        }
        fn end(&mut self, result: Result<(), &Error>) {
            let what = match result {
                Ok(()) => "end".to_owned(),
                Err(e) => format!("error {}", e.kind()),
            };
            self.0.lock().unwrap().push(what);
        }
        fn dropped(&mut self) {
            self.0.lock().unwrap().push("dropped".to_owned());
        }
    }

    fn stream_of(parts: Vec<Result<Bytes, Error>>) -> Body {
        Body::from_stream(futures_util::stream::iter(parts))
    }

    #[tokio::test]
    async fn a_stream_is_watched_chunk_by_chunk_then_its_end() {
        let seen = Seen::default();
        let body = stream_of(vec![Ok("ab".into()), Ok("cde".into())]).tap(seen.clone());
        assert_eq!(body.bytes().await.unwrap(), "abcde");
        assert_eq!(*seen.0.lock().unwrap(), ["chunk 2", "chunk 3", "end"]);
    }

    #[tokio::test]
    async fn an_error_ends_it_and_a_drop_is_told() {
        let seen = Seen::default();
        let failing = vec![Ok("ab".into()), Err(Error::from(ErrorKind::Body))];
        let err = stream_of(failing)
            .tap(seen.clone())
            .bytes()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Body);
        assert_eq!(*seen.0.lock().unwrap(), ["chunk 2", "error body error"]);

        let seen = Seen::default();
        let mut body = stream_of(vec![Ok("ab".into()), Ok("cd".into())]).tap(seen.clone());
        body.chunk().await.unwrap();
        drop(body);
        assert_eq!(*seen.0.lock().unwrap(), ["chunk 2", "dropped"]);
    }

    #[tokio::test]
    async fn a_body_of_declared_length_ends_with_its_last_byte() {
        let seen = Seen::default();
        let mut body = stream_of(vec![Ok("ab".into()), Ok("cd".into())]);
        body.declare_len(4);
        let mut body = body.tap(seen.clone());
        body.chunk().await.unwrap();
        body.chunk().await.unwrap();
        drop(body);
        assert_eq!(*seen.0.lock().unwrap(), ["chunk 2", "chunk 2", "end"]);
    }

    #[tokio::test]
    async fn a_buffered_body_is_told_at_once_and_kept() {
        let seen = Seen::default();
        let body = Body::from("abc").tap(seen.clone());
        assert_eq!(*seen.0.lock().unwrap(), ["chunk 3", "end"]);
        assert_eq!(body.as_bytes().unwrap(), "abc");
    }
}
