//! [`Body`]: the bytes of a request or a response, buffered or streamed.

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use tokio::io::AsyncRead;

use crate::{Error, ErrorKind};

mod stream;
mod tap;

pub(crate) use stream::BoxError;
pub(crate) use stream::HttpBodyStream;
#[cfg(any(feature = "ureq", feature = "blocking"))]
pub(crate) use stream::to_io;
use stream::{BoxStream, FileStream, IoStream, Open, body_error};
pub(crate) use tap::Tap;

/// The body of a [`Request`](crate::Request) or a [`Response`](crate::Response).
///
/// A body is one of three kinds, and what a decorator may do with it follows from its kind:
///
/// | kind | made by | [`try_clone`](Self::try_clone) | retried and hedged |
/// |---|---|---|---|
/// | **buffered** | `From<Bytes>`, `Vec<u8>`, `String`, `&'static str`, [`empty`](Self::empty) | O(1), shares the bytes | yes, the same bytes |
/// | **replayable stream** | [`from_file`](Self::from_file), [`replayable`](Self::replayable) | O(1), shares the factory | yes, streamed again from the start |
/// | **one-shot stream** | [`from_stream`](Self::from_stream), [`from_reader`](Self::from_reader), [`from_http_body`](Self::from_http_body), a streamed response | `None` | sent once; resent only if no byte of it was taken |
///
/// A stream's length is known when it says so ([`from_file`](Self::from_file)) or when the
/// request carries a `Content-Length`; the backend then sends it with that length and fails the
/// call with [`ErrorKind::Body`] if the stream turns out longer or shorter. A stream of unknown
/// length is sent chunked.
///
/// Read a body whole with [`bytes`](Self::bytes), [`text`](Self::text) or `json` (feature
/// `json`, on by default), chunk by chunk with [`chunk`](Self::chunk), as a [`Stream`] of
/// [`Bytes`], as an [`AsyncRead`](Self::into_async_read), or as an [`http_body::Body`]. A
/// streamed response gathered by `bytes` keeps the backend's `max_body_size`.
///
/// ```
/// use http_doer::Body;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let body = Body::from("hello");
/// assert_eq!(body.len(), Some(5));
/// assert_eq!(body.as_bytes().map(|b| &b[..]), Some(&b"hello"[..]));
/// assert_eq!(Body::empty().is_empty(), Some(true));
///
/// // A replayable stream: every copy streams the content again from the start.
/// let chunks = || {
///     let parts = [Ok::<_, std::io::Error>(bytes::Bytes::from("he")), Ok("llo".into())];
///     futures_util::stream::iter(parts)
/// };
/// let body = Body::replayable(chunks);
/// let copy = body.try_clone().expect("replayable");
/// assert_eq!(body.bytes().await.unwrap(), "hello");
/// assert_eq!(copy.bytes().await.unwrap(), "hello");
/// # });
/// ```
#[derive(Default)]
pub struct Body {
    inner: Inner,
}

enum Inner {
    Full(Bytes),
    /// A stream not yet opened, made anew by its factory for every copy.
    Replay {
        factory: Arc<Factory>,
        len: Option<u64>,
    },
    /// A one-shot stream not yet taken. Copies made inside the crate (a retry's next attempt)
    /// share the slot: the first to read takes the stream, so a retry can tell whether the body
    /// was taken.
    OneShot {
        slot: Arc<Mutex<Option<BoxStream>>>,
        len: Option<u64>,
    },
    /// A stream being read.
    Open(Box<Open>),
}

impl Default for Inner {
    fn default() -> Self {
        Inner::Full(Bytes::new())
    }
}

type Factory = dyn Fn() -> BoxStream + Send + Sync;

impl Body {
    /// An empty body.
    pub const fn empty() -> Self {
        Body {
            inner: Inner::Full(Bytes::new()),
        }
    }

    /// A replayable body that streams the file at `path`, opened anew (and read from its
    /// start) for every attempt, so a retry or a hedge resends it without holding it in memory.
    ///
    /// The length is the file's size now; if the file is a different size when an attempt
    /// reads it, that attempt fails with [`ErrorKind::Body`] instead of sending a body its
    /// `Content-Length` contradicts.
    ///
    /// ```no_run
    /// use http_doer::Body;
    ///
    /// # fn run() -> Result<(), http_doer::Error> {
    /// let upload = http::Request::put("https://files.test/backup.tar")
    ///     .body(Body::from_file("backup.tar")?)?;
    /// # let _ = upload; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Body`] when the file's metadata cannot be read now (it does not exist, no
    /// permission) or the path is not a regular file.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let meta = std::fs::metadata(&path).map_err(|e| {
            Error::new(ErrorKind::Body, e).with_message("cannot read the body's file")
        })?;
        if !meta.is_file() {
            return Err(Error::from(ErrorKind::Body).with_message("the body's path is not a file"));
        }
        let len = meta.len();
        Ok(Body {
            inner: Inner::Replay {
                factory: Arc::new(move || -> BoxStream {
                    Box::pin(FileStream::new(path.clone(), len))
                }),
                len: Some(len),
            },
        })
    }

    /// A replayable body: `open` makes the content's stream, and is called again for every
    /// attempt or hedge copy, which streams the content from its start.
    ///
    /// Errors from the stream end the attempt with [`ErrorKind::Body`] (or with the
    /// [`Error`] itself, when the stream yields one). The length is unknown (the body is sent
    /// chunked) unless the request has a `Content-Length`.
    pub fn replayable<F, S, E>(open: F) -> Self
    where
        F: Fn() -> S + Send + Sync + 'static,
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        Body {
            inner: Inner::Replay {
                factory: Arc::new(move || stream::boxed(open())),
                len: None,
            },
        }
    }

    /// A one-shot body read from `stream`: sent once, never retried or hedged after a byte of
    /// it was taken. The length is unknown unless the request has a `Content-Length`.
    pub fn from_stream<S, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        Self::one_shot(stream::boxed(stream), None)
    }

    /// A one-shot body read from `reader`, 64 KiB at a time.
    pub fn from_reader<R: AsyncRead + Send + 'static>(reader: R) -> Self {
        Self::one_shot(stream::from_reader(reader), None)
    }

    /// A one-shot body that reads `body`'s data frames (its trailers are not sent). Its length
    /// is `body`'s exact size hint, when it has one.
    pub fn from_http_body<B>(body: B) -> Self
    where
        B: http_body::Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let len = http_body::Body::size_hint(&body).exact();
        let stream = HttpBodyStream::new(Box::pin(body), |e: B::Error| body_error(e));
        Self::one_shot(Box::pin(stream), len)
    }

    fn one_shot(stream: BoxStream, len: Option<u64>) -> Self {
        Body {
            inner: Inner::OneShot {
                slot: Arc::new(Mutex::new(Some(stream))),
                len,
            },
        }
    }

    /// A streamed response body: already open, of `len` when the head declared it, gathered
    /// by [`bytes`](Self::bytes) up to `limit`.
    pub(crate) fn streamed(stream: BoxStream, len: Option<u64>, limit: Option<u64>) -> Self {
        let mut open = Open::new(stream, len);
        open.limit = limit;
        Body {
            inner: Inner::Open(Box::new(open)),
        }
    }

    /// A copy of the body, when it can be sent again: buffered and replayable bodies (O(1),
    /// sharing the bytes or the factory); `None` for a one-shot stream, or one being read.
    pub fn try_clone(&self) -> Option<Self> {
        let inner = match &self.inner {
            Inner::Full(bytes) => Inner::Full(bytes.clone()),
            Inner::Replay { factory, len } => Inner::Replay {
                factory: factory.clone(),
                len: *len,
            },
            Inner::OneShot { .. } | Inner::Open(_) => return None,
        };
        Some(Body { inner })
    }

    /// Whether [`try_clone`](Self::try_clone) would give a copy: the body is buffered or a
    /// replayable stream.
    pub fn is_replayable(&self) -> bool {
        matches!(self.inner, Inner::Full(_) | Inner::Replay { .. })
    }

    /// A copy for another attempt of the same call, made inside the crate: a clone for a
    /// replayable body; for a one-shot one, a handle on the same slot, so that whichever is
    /// read first takes the stream and the other can tell. A body being read gives an empty
    /// one-shot whose read fails.
    pub(crate) fn share(&self) -> Self {
        match &self.inner {
            Inner::OneShot { slot, len } => Body {
                inner: Inner::OneShot {
                    slot: slot.clone(),
                    len: *len,
                },
            },
            Inner::Open(open) => Body {
                inner: Inner::OneShot {
                    slot: Arc::new(Mutex::new(None)),
                    len: open.len,
                },
            },
            _ => self.try_clone().unwrap_or_default(),
        }
    }

    /// Makes a stream being read (a streamed response forwarded as a request body) a one-shot
    /// body of what is left of it, so that [`share`](Self::share) hands it on rather than an
    /// empty slot.
    pub(crate) fn make_shareable(&mut self) {
        if let Inner::Open(open) = &self.inner {
            let len = open.remaining();
            if let Inner::Open(open) = std::mem::take(&mut self.inner) {
                *self = Self::one_shot(Box::pin(stream::OpenStream(open)), len);
            }
        }
    }

    /// Whether the body can still be sent whole: replayable, or a one-shot stream of which no
    /// byte was taken yet.
    pub(crate) fn can_resend(&self) -> bool {
        match &self.inner {
            Inner::Full(_) | Inner::Replay { .. } => true,
            Inner::OneShot { slot, .. } => lock(slot).is_some(),
            Inner::Open(_) => false,
        }
    }

    /// Sets the length a stream of unknown length is sent with (from the request's
    /// `Content-Length`); the stream is then held to it.
    #[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
    pub(crate) fn declare_len(&mut self, declared: u64) {
        match &mut self.inner {
            Inner::Replay { len, .. } | Inner::OneShot { len, .. } => *len = Some(declared),
            Inner::Open(open) => open.len = Some(declared),
            Inner::Full(_) => {}
        }
    }

    /// The bytes of a buffered body, or the body itself when it is a stream.
    #[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
    pub(crate) fn into_bytes(self) -> Result<Bytes, Body> {
        match self.inner {
            Inner::Full(bytes) => Ok(bytes),
            inner => Err(Body { inner }),
        }
    }

    /// The buffered bytes, or `None` for a streamed body.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.inner {
            Inner::Full(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The exact length in bytes, when it is known without reading the body; for a stream
    /// being read, what is left of it (what a backend sending it on must frame).
    pub fn len(&self) -> Option<u64> {
        match &self.inner {
            Inner::Full(bytes) => Some(bytes.len() as u64),
            Inner::Replay { len, .. } | Inner::OneShot { len, .. } => *len,
            Inner::Open(open) => open.remaining(),
        }
    }

    /// Whether the body is empty, when that is known without reading it (`None` for a stream
    /// of unknown length).
    pub fn is_empty(&self) -> Option<bool> {
        self.len().map(|len| len == 0)
    }

    /// Whether the body is a stream rather than bytes in memory.
    pub fn is_stream(&self) -> bool {
        !matches!(self.inner, Inner::Full(_))
    }

    /// The next chunk of the body, or `None` at its end.
    ///
    /// # Errors
    ///
    /// A stream that fails gives an [`Error`], never a silently shorter body:
    /// [`ErrorKind::Body`] when the connection was cut or the caller's own stream failed (or a
    /// one-shot body was already taken), [`ErrorKind::Timeout`] when the exchange's timeout
    /// passed, or the kind of the [`Error`] the caller's stream yielded.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        std::future::poll_fn(|cx| self.poll_chunk(cx))
            .await
            .transpose()
    }

    pub(crate) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Error>>> {
        loop {
            match &mut self.inner {
                Inner::Full(bytes) if bytes.is_empty() => return Poll::Ready(None),
                Inner::Full(bytes) => return Poll::Ready(Some(Ok(std::mem::take(bytes)))),
                Inner::Open(open) => return open.poll_chunk(cx),
                Inner::Replay { factory, len } => {
                    self.inner = Inner::Open(Box::new(Open::new(factory(), *len)));
                }
                Inner::OneShot { slot, len } => {
                    let len = *len;
                    let Some(taken) = lock(slot).take() else {
                        self.inner = Inner::Full(Bytes::new());
                        return Poll::Ready(Some(Err(Error::from(ErrorKind::Body).with_message(
                            "a one-shot body was already sent and cannot be read again",
                        ))));
                    };
                    self.inner = Inner::Open(Box::new(Open::new(taken, len)));
                }
            }
        }
    }

    /// Reads the whole body.
    ///
    /// # Errors
    ///
    /// As [`chunk`](Self::chunk) for a stream; and a streamed response is gathered up to its
    /// backend's `max_body_size`, past which the read fails with [`ErrorKind::TooLarge`]. A
    /// buffered body never fails.
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        let limit = match &mut self.inner {
            Inner::Full(bytes) => return Ok(std::mem::take(bytes)),
            Inner::Open(open) => open.limit,
            _ => None,
        };
        // A body in one chunk is kept as it came, without a copy.
        let mut first: Option<Bytes> = None;
        let mut rest = BytesMut::new();
        let mut total: u64 = 0;
        while let Some(chunk) = self.chunk().await? {
            total += chunk.len() as u64;
            if let Some(limit) = limit.filter(|limit| total > *limit) {
                return Err(Error::from(ErrorKind::TooLarge)
                    .with_message(format!("response body is over the {limit}-byte limit")));
            }
            match first.take() {
                None if rest.is_empty() => first = Some(chunk),
                prev => {
                    if let Some(prev) = prev {
                        // Room for what was read and what is left. The declared length is only
                        // a hint (a server's `Content-Length`): never reserve past the limit
                        // the body is read to.
                        let whole = self.len().unwrap_or(0).saturating_add(total);
                        // Nor past 1 MiB more than was read: with no limit (or a huge one),
                        // a declared length is no reason to allocate it before it arrives.
                        let hint = whole
                            .min(limit.unwrap_or(u64::MAX))
                            .min(total.saturating_add(1 << 20));
                        rest.reserve(usize::try_from(hint).unwrap_or(usize::MAX));
                        rest.extend_from_slice(&prev);
                    }
                    rest.extend_from_slice(&chunk);
                }
            }
        }
        Ok(first.unwrap_or_else(|| rest.freeze()))
    }

    /// Reads the whole body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// As [`bytes`](Self::bytes); and [`ErrorKind::Decode`] when the body is not valid UTF-8.
    pub async fn text(self) -> Result<String, Error> {
        let bytes = self.bytes().await?;
        match std::str::from_utf8(&bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(Error::new(ErrorKind::Decode, e).with_message("body is not valid UTF-8")),
        }
    }

    /// The body as an [`AsyncRead`]. A failed stream reads as an `io::Error` whose source is
    /// the [`Error`] (of kind `TimedOut` for a timeout).
    pub fn into_async_read(self) -> impl AsyncRead + Send + Sync + Unpin + 'static {
        tokio_util::io::StreamReader::new(IoStream(self))
    }

    /// Serializes `value` as a JSON body (feature `json`, on by default).
    ///
    /// The body carries no headers: set `Content-Type: application/json` on the request.
    ///
    /// ```
    /// use http_doer::Body;
    ///
    /// # fn run() -> Result<(), http_doer::Error> {
    /// let req = http::Request::post("https://api.test/items")
    ///     .header("content-type", "application/json")
    ///     .body(Body::from_json(&serde_json::json!({"name": "milk"}))?)?;
    /// assert_eq!(req.body().len(), Some(15));
    /// # Ok(()) }
    /// # run().unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when `value` cannot be serialized as JSON: a map whose
    /// keys are not strings, or a `Serialize` impl that fails.
    #[cfg(feature = "json")]
    pub fn from_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        serde_json::to_vec(value).map(Body::from).map_err(|e| {
            Error::new(ErrorKind::InvalidRequest, e).with_message("cannot encode JSON body")
        })
    }

    /// Reads the whole body and parses it as JSON into `T` (feature `json`, on by default).
    ///
    /// ```
    /// use http_doer::Body;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let ids: Vec<u32> = Body::from("[1, 2]").json().await.unwrap();
    /// assert_eq!(ids, [1, 2]);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// As [`bytes`](Self::bytes); and [`ErrorKind::Decode`] when the body is not JSON, or JSON
    /// of another shape, with serde's message (line and column) as the source.
    #[cfg(feature = "json")]
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(ErrorKind::Decode, e).with_message("body is not the expected JSON")
        })
    }
}

// Bodies can hold secrets (tokens in a form, a password in JSON), so Debug shows the size only.
impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.inner {
            Inner::Full(bytes) => return write!(f, "Body({} bytes)", bytes.len()),
            Inner::Replay { .. } => "replayable stream",
            Inner::OneShot { .. } | Inner::Open(_) => "stream",
        };
        match self.len() {
            Some(len) => write!(f, "Body({kind}, {len} bytes)"),
            None => write!(f, "Body({kind}, length unknown)"),
        }
    }
}

impl Stream for Body {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_chunk(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            Inner::Full(bytes) => (
                usize::from(!bytes.is_empty()),
                Some(usize::from(!bytes.is_empty())),
            ),
            _ => (0, None),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        self.get_mut()
            .poll_chunk(cx)
            .map(|item| item.map(|r| r.map(http_body::Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(bytes) => bytes.is_empty(),
            Inner::Open(open) => open.is_done(),
            _ => false,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.inner {
            Inner::Full(bytes) => http_body::SizeHint::with_exact(bytes.len() as u64),
            Inner::Open(open) if open.is_done() => http_body::SizeHint::with_exact(0),
            // What is left, as http_body asks, not the length the stream started with.
            Inner::Open(open) => match open.remaining() {
                Some(left) => http_body::SizeHint::with_exact(left),
                None => http_body::SizeHint::new(),
            },
            _ => match self.len() {
                Some(len) => http_body::SizeHint::with_exact(len),
                None => http_body::SizeHint::new(),
            },
        }
    }
}

/// The slot's lock; a poisoned lock still holds a usable `Option`.
fn lock(slot: &Mutex<Option<BoxStream>>) -> std::sync::MutexGuard<'_, Option<BoxStream>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body {
            inner: Inner::Full(bytes),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Self {
        Bytes::from_static(s).into()
    }
}

impl From<()> for Body {
    fn from(_: ()) -> Self {
        Body::empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conversions_keep_bytes() {
        assert_eq!(
            Body::from(Bytes::from_static(b"a")).bytes().await.unwrap(),
            "a"
        );
        assert_eq!(
            Body::from(vec![0u8, 255]).bytes().await.unwrap(),
            &[0u8, 255][..]
        );
        assert_eq!(Body::from(String::from("s")).text().await.unwrap(), "s");
        assert_eq!(Body::from(&b"\x00\x01"[..]).len(), Some(2));
        assert_eq!(Body::from(()).len(), Some(0));
        assert_eq!(Body::default().is_empty(), Some(true));
    }

    #[test]
    fn clone_shares_the_buffer() {
        let a = Body::from(vec![7u8; 1024]);
        let b = a.try_clone().unwrap();
        assert_eq!(
            a.as_bytes().unwrap().as_ptr(),
            b.as_bytes().unwrap().as_ptr()
        );
    }

    #[tokio::test]
    async fn invalid_utf8_is_a_decode_error() {
        let err = Body::from(vec![0xff, 0xfe]).text().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
    }

    #[test]
    fn debug_hides_content() {
        let s = format!("{:?}", Body::from("password=hunter2"));
        assert_eq!(s, "Body(16 bytes)");
    }

    #[cfg(feature = "json")]
    #[tokio::test]
    async fn json_round_trip_and_bad_json() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct T {
            a: u32,
        }
        let body = Body::from_json(&T { a: 1 }).unwrap();
        assert_eq!(
            body.try_clone().unwrap().text().await.unwrap(),
            r#"{"a":1}"#
        );
        assert_eq!(body.json::<T>().await.unwrap(), T { a: 1 });
        let err = Body::from("{not json").json::<T>().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    }
}
