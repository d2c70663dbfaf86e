//! [`Body`]: a response body read without an async runtime.

use std::fmt;
use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};

use super::Client;
use crate::body::to_io;
use crate::{Error, ErrorKind};

/// The body of a [`blocking::Response`](super::Response), read by blocking the calling thread.
///
/// Read it whole with [`bytes`](Self::bytes), [`text`](Self::text) or `json`, chunk by chunk
/// with [`chunk`](Self::chunk), or through [`std::io::Read`] (so `std::io::copy` streams it to a
/// file). A buffered body (the default, [`ResponseMode::Buffered`](crate::ResponseMode)) is
/// already in memory and reads without touching the runtime. A streamed one
/// ([`ResponseMode::Streamed`](crate::ResponseMode)) is read as it arrives, one chunk at a time,
/// by driving the client's runtime, so a body of any size reads in bounded memory; it keeps
/// the client's runtime alive until it is dropped.
///
/// A stream that fails (the connection was cut, the exchange's timeout passed) fails the read,
/// never gives a silently shorter body: [`chunk`](Self::chunk) and the whole-body readers
/// return the [`Error`]; `Read` returns an [`io::Error`] whose source is that [`Error`], of kind
/// [`io::ErrorKind::TimedOut`] for a timeout.
///
/// ```
/// use std::io::Read;
/// use http_doer::blocking::Client;
/// use http_doer::testing::{ScriptedDoer, response};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::new(ScriptedDoer::new().then(Ok(response(200, "hello"))))?;
/// let mut body = client.get("http://api.test/greeting")?.into_body();
/// let mut text = String::new();
/// body.read_to_string(&mut text)?;
/// assert_eq!(text, "hello");
/// # Ok(()) }
/// ```
pub struct Body {
    body: crate::Body,
    /// What `Read` has taken from the stream and not handed out yet.
    pending: Bytes,
    /// Keeps the runtime that drives a streamed body alive as long as the body.
    client: Client,
}

impl Body {
    pub(super) fn new(body: crate::Body, client: Client) -> Self {
        Body {
            body,
            pending: Bytes::new(),
            client,
        }
    }

    /// Reads the rest of the body.
    ///
    /// # Errors
    ///
    /// The stream's failure ([`ErrorKind::Body`], [`ErrorKind::Timeout`], ...);
    /// [`ErrorKind::TooLarge`] past the backend's `max_body_size` for a streamed body; the
    /// error of [`Client::execute`] when called from inside an async task.
    pub fn bytes(mut self) -> Result<Bytes, Error> {
        let body = std::mem::take(&mut self.body);
        let rest = match body.into_bytes() {
            Ok(bytes) => bytes,
            Err(stream) => self.client.block_on(stream.bytes())??,
        };
        if self.pending.is_empty() {
            return Ok(rest);
        }
        let mut all = BytesMut::with_capacity(self.pending.len() + rest.len());
        all.extend_from_slice(&self.pending);
        all.extend_from_slice(&rest);
        Ok(all.freeze())
    }

    /// Reads the rest of the body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// Those of [`bytes`](Self::bytes), and [`ErrorKind::Decode`] for invalid UTF-8.
    pub fn text(self) -> Result<String, Error> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.into()).map_err(|e| {
            Error::new(ErrorKind::Decode, e.utf8_error()).with_message("body is not valid UTF-8")
        })
    }

    /// Reads the rest of the body and parses it as JSON into `T`.
    ///
    /// # Errors
    ///
    /// Those of [`bytes`](Self::bytes), and [`ErrorKind::Decode`] (naming the line and column)
    /// for bad JSON or JSON of another shape.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let bytes = self.bytes()?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(ErrorKind::Decode, e).with_message("body is not the expected JSON")
        })
    }

    /// The next chunk of the body, or `None` at its end. A streamed body's chunks are as the
    /// backend hands them over (at most 512 KiB each from `UreqDoer`).
    ///
    /// # Errors
    ///
    /// The stream's failure, as for [`bytes`](Self::bytes); once a chunk fails, the body is
    /// done.
    pub fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if !self.pending.is_empty() {
            return Ok(Some(std::mem::take(&mut self.pending)));
        }
        self.next_chunk()
    }

    /// The next chunk from the body itself, past anything pending.
    fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if !self.body.is_stream() {
            let bytes = std::mem::take(&mut self.body)
                .into_bytes()
                .unwrap_or_default();
            return Ok((!bytes.is_empty()).then_some(bytes));
        }
        let body = &mut self.body;
        self.client.block_on(body.chunk())?
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Empty chunks are skipped: `Ok(0)` means the end of the body, and only that.
        while self.pending.is_empty() {
            match self.next_chunk() {
                Ok(Some(chunk)) => self.pending = chunk,
                Ok(None) => return Ok(0),
                Err(e) => return Err(to_io(e)),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.advance(n);
        Ok(n)
    }
}

// As the async body's: a size, never the content (it may hold a token).
impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.body, f)
    }
}
