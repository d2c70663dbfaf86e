//! The machinery under a streamed [`Body`](super::Body): the open stream, its length check, and
//! the adapters that turn readers, files and `http_body` bodies into streams.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use sync_wrapper::SyncWrapper;
use tokio::io::AsyncRead;
use tokio_util::io::ReaderStream;

use crate::{Error, ErrorKind};

/// A stream of chunks whose errors are already [`Error`]s.
pub(crate) type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>;

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// How much a reader or a file is read at a time: large enough that a gigabyte is 16,384
/// reads, small enough that a few chunks in flight stay well under a megabyte.
const CHUNK: usize = 64 * 1024;

/// An error from a body's own stream: kept as it is when it already is an [`Error`] (a
/// backend's, or one the caller made), else wrapped as [`ErrorKind::Body`].
pub(crate) fn body_error(e: impl Into<BoxError>) -> Error {
    let e = e.into();
    match e.downcast::<Error>() {
        Ok(err) => *err,
        Err(e) => Error::new(ErrorKind::Body, e).with_message("the body stream failed"),
    }
}

/// Boxes a caller's stream, its errors turned into [`Error`]s.
pub(crate) fn boxed<S, E>(stream: S) -> BoxStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<BoxError>,
{
    Box::pin(ErrInto { inner: stream })
}

pin_project_lite::pin_project! {
    struct ErrInto<S> {
        #[pin]
        inner: S,
    }
}

impl<S, E> Stream for ErrInto<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<BoxError>,
{
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project()
            .inner
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(body_error)))
    }
}

/// A stream being read, with the length it declared (checked as it goes) and the limit
/// [`Body::bytes`](super::Body::bytes) keeps when it gathers the whole body.
pub(crate) struct Open {
    stream: SyncWrapper<BoxStream>,
    pub(crate) len: Option<u64>,
    pub(crate) limit: Option<u64>,
    seen: u64,
    done: bool,
}

impl Open {
    pub(crate) fn new(stream: BoxStream, len: Option<u64>) -> Self {
        Open {
            stream: SyncWrapper::new(stream),
            len,
            limit: None,
            seen: 0,
            done: false,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The next chunk. A stream longer or shorter than its declared length ends with an
    /// [`ErrorKind::Body`] error rather than sending (or returning) a body its length header
    /// contradicts; after an error or the end, it yields nothing more.
    pub(crate) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            let item = ready!(self.stream.get_mut().as_mut().poll_next(cx));
            let result = match item {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => {
                    self.seen += chunk.len() as u64;
                    match self.len {
                        Some(len) if self.seen > len => Err(length_error(
                            "the body stream is longer than its declared length",
                        )),
                        _ => Ok(chunk),
                    }
                }
                Some(Err(e)) => Err(e),
                None => {
                    self.done = true;
                    return Poll::Ready(match self.len {
                        Some(len) if self.seen < len => Some(Err(length_error(
                            "the body stream ended before its declared length",
                        ))),
                        _ => None,
                    });
                }
            };
            if result.is_err() {
                self.done = true;
            }
            return Poll::Ready(Some(result));
        }
    }
}

impl Open {
    /// What is left of the declared length.
    pub(crate) fn remaining(&self) -> Option<u64> {
        self.len.map(|len| len.saturating_sub(self.seen))
    }
}

/// An [`Open`] stream as a stream again, to be wrapped in a new body.
pub(crate) struct OpenStream(pub(crate) Box<Open>);

impl Stream for OpenStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_chunk(cx)
    }
}

fn length_error(why: &'static str) -> Error {
    Error::from(ErrorKind::Body).with_message(why)
}

/// Chunks read from an [`AsyncRead`], [`CHUNK`] bytes at a time.
pub(crate) fn from_reader<R: AsyncRead + Send + 'static>(reader: R) -> BoxStream {
    boxed(ReaderStream::with_capacity(reader, CHUNK))
}

/// A file's chunks, the file opened on the first poll, so that a factory which makes one per
/// attempt does no I/O until the attempt sends its body.
pub(crate) struct FileStream {
    state: FileState,
    /// The file's size when the body was made.
    expected: u64,
}

type Opened = io::Result<(tokio::fs::File, u64)>;

enum FileState {
    Closed(PathBuf),
    Opening(Pin<Box<dyn Future<Output = Opened> + Send>>),
    Reading(ReaderStream<tokio::fs::File>),
    Failed,
}

impl FileStream {
    pub(crate) fn new(path: PathBuf, expected: u64) -> Self {
        FileStream {
            state: FileState::Closed(path),
            expected,
        }
    }
}

impl Stream for FileStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match &mut self.state {
                FileState::Closed(path) => {
                    let path = std::mem::take(path);
                    self.state = FileState::Opening(Box::pin(async move {
                        let file = tokio::fs::File::open(path).await?;
                        let size = file.metadata().await?.len();
                        Ok((file, size))
                    }));
                }
                FileState::Opening(open) => match ready!(open.as_mut().poll(cx)) {
                    Ok((_, size)) if size != self.expected => {
                        self.state = FileState::Failed;
                        return Poll::Ready(Some(Err(Error::from(ErrorKind::Body).with_message(
                            "the body's file changed size since the body was made",
                        ))));
                    }
                    Ok((file, _)) => {
                        self.state = FileState::Reading(ReaderStream::with_capacity(file, CHUNK));
                    }
                    Err(e) => {
                        self.state = FileState::Failed;
                        return Poll::Ready(Some(Err(file_error(
                            e,
                            "cannot open the body's file",
                        ))));
                    }
                },
                FileState::Reading(reader) => {
                    return Pin::new(reader).poll_next(cx).map(|item| {
                        item.map(|r| r.map_err(|e| file_error(e, "cannot read the body's file")))
                    });
                }
                FileState::Failed => return Poll::Ready(None),
            }
        }
    }
}

fn file_error(e: io::Error, why: &'static str) -> Error {
    Error::new(ErrorKind::Body, e).with_message(why)
}

/// A [`Body`](super::Body) seen as a stream of `io::Result`, for `StreamReader`.
pub(crate) struct IoStream(pub(crate) super::Body);

impl Stream for IoStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .poll_chunk(cx)
            .map(|item| item.map(|r| r.map_err(to_io)))
    }
}

/// An [`Error`] as an `io::Error` (kept as its source, so it can be taken back out), of kind
/// `TimedOut` for a timeout.
pub(crate) fn to_io(e: Error) -> io::Error {
    let kind = if e.is_timeout() {
        io::ErrorKind::TimedOut
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}

/// The frames of an `http_body::Body` as chunks, its errors turned into [`Error`]s by
/// `map_err`; trailers are dropped.
pub(crate) struct HttpBodyStream<B, F> {
    body: B,
    map_err: F,
}

impl<B, F> HttpBodyStream<B, F> {
    pub(crate) fn new(body: B, map_err: F) -> Self {
        HttpBodyStream { body, map_err }
    }
}

impl<B, F> Stream for HttpBodyStream<B, F>
where
    B: http_body::Body + Unpin,
    F: FnMut(B::Error) -> Error + Unpin,
{
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err((self.map_err)(e)))),
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        let chunk = data.copy_to_bytes(data.remaining());
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                }
            }
        }
    }
}
