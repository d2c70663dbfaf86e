//! Watching a streamed response body for the log: its size, how it ended, and a preview of its
//! first bytes, without holding a chunk back or keeping more than the preview's bytes.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use tokio::time::Instant;

use super::record::{self, Rest, Watch};
use super::{Config, Record, StreamedBody, emit};
use crate::body::Tap;
use crate::{Error, redact};

/// What the exchange event knew, for the event at the body's end.
pub(super) struct Exchange {
    pub(super) time: SystemTime,
    pub(super) start: Instant,
    pub(super) method: Method,
    pub(super) uri: Uri,
    /// The redacted URL, when the exchange event already made it.
    pub(super) url: Option<String>,
    pub(super) status: StatusCode,
    pub(super) attempt: Option<u32>,
    /// The exchange's line in the kept log.
    pub(super) kept: Option<u64>,
}

/// Told of a streamed response body's chunks and end by [`Body::tap`](crate::Body): counts
/// the bytes, keeps the first ones for the preview, and logs the end once.
pub(super) struct BodyWatch {
    config: Arc<Config>,
    exchange: Exchange,
    read: u64,
    preview: Option<Preview>,
}

impl BodyWatch {
    pub(super) fn new(config: Arc<Config>, exchange: Exchange, media: String) -> Self {
        let preview = config.body_cap.map(|cap| Preview::new(media, cap));
        BodyWatch {
            config,
            exchange,
            read: 0,
            preview,
        }
    }

    fn finish(&mut self, end: Result<(), &Error>, whole: bool) {
        let x = &mut self.exchange;
        let elapsed = x.start.elapsed();
        let streamed = match end {
            Ok(()) if whole => StreamedBody::Complete,
            Ok(()) => StreamedBody::Dropped,
            Err(e) => StreamedBody::Failed {
                kind: e.kind(),
                message: format!("{e:#}"),
            },
        };
        let c = &*self.config;
        if let (Some(log), Some(id)) = (&c.keep, x.kept) {
            let read = self.read;
            log.update(id, |entry| {
                entry.elapsed = elapsed;
                entry.response_bytes = Some(read);
                entry.streamed = Some(streamed.clone());
            });
        }
        let failed = end.is_err() || x.status.as_u16() >= 500;
        let site = if failed { c.failure } else { c.success };
        let to_tracing = c.tracing && site.enabled();
        if !to_tracing && c.sink.is_none() {
            return;
        }
        let url = x.url.take().unwrap_or_else(|| redact::uri(&x.uri));
        let preview = self.preview.take().and_then(|p| p.render(self.read, whole));
        let record = Record {
            time: x.time,
            level: site.level(),
            method: &x.method,
            url: &url,
            attempt: x.attempt,
            status: Some(x.status),
            error: end.err(),
            elapsed,
            request_bytes: None,
            response_bytes: Some(self.read),
            request_headers: None,
            response_headers: None,
            request_body: None,
            response_body: preview.as_deref(),
            streamed: Some(streamed),
        };
        if to_tracing {
            emit(site, &record);
        }
        if let Some(sink) = &c.sink {
            sink(&record);
        }
    }
}

impl Tap for BodyWatch {
    fn chunk(&mut self, chunk: &Bytes) {
        self.read += chunk.len() as u64;
        if let Some(preview) = &mut self.preview {
            preview.feed(chunk);
        }
    }

    fn end(&mut self, result: Result<(), &Error>) {
        self.finish(result, result.is_ok());
    }

    fn dropped(&mut self) {
        self.finish(Ok(()), false);
    }
}

/// The first `cap` bytes of a body, and what the bytes after them tell (see [`Rest`]), so the
/// preview follows the same rules as a whole body's.
struct Preview {
    media: String,
    cap: usize,
    head: Vec<u8>,
    /// Set when a byte came past the first `cap`.
    rest: Option<RestScan>,
}

impl Preview {
    fn new(media: String, cap: usize) -> Self {
        Preview {
            media,
            cap,
            head: Vec::new(),
            rest: None,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        let mut bytes = chunk;
        if self.head.len() < self.cap {
            let take = (self.cap - self.head.len()).min(bytes.len());
            // Exact, so the preview never holds more than `cap` bytes, slack included.
            self.head.reserve_exact(take);
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.is_empty() {
            return;
        }
        let (media, head) = (&self.media, &self.head);
        self.rest
            .get_or_insert_with(|| RestScan::after(media, head))
            .feed(bytes);
    }

    /// The preview, once the body ended (`whole`) or stopped after `total` bytes.
    fn render(self, total: u64, whole: bool) -> Option<String> {
        let Some(scan) = self.rest else {
            // The whole body (or all of it that was read) is in hand: the buffered rules.
            return record::render_bytes(&self.media, &self.head, self.cap, None);
        };
        let rest = Rest {
            total,
            whole,
            // A character cut by the body's end is not UTF-8.
            utf8: scan.utf8 && (!whole || scan.partial.is_empty()),
            whitespace: scan.whitespace,
            secret_word: scan.secret_word,
        };
        record::render_bytes(&self.media, &self.head, self.cap, Some(&rest))
    }
}

/// How many bytes of a word one chunk may hold while the rest of it is in the next: one less
/// than the longest [`record::SECRET_WORDS`] entry.
const SEAM: usize = 12;

/// What is learnt of the bytes past the preview's, chunk by chunk, keeping only the few bytes
/// that straddle two chunks.
struct RestScan {
    watch: Watch,
    utf8: bool,
    whitespace: bool,
    secret_word: bool,
    /// The first bytes of a character whose last ones are in the next chunk.
    partial: Vec<u8>,
    /// The last bytes scanned for a word, for a word split between two chunks.
    seam: Vec<u8>,
}

impl RestScan {
    /// A scan of what follows `head`, the first bytes of a body of type `media`.
    fn after(media: &str, head: &[u8]) -> Self {
        let watch = record::what_to_watch(media, head);
        let text_end = match std::str::from_utf8(head) {
            Ok(_) => head.len(),
            Err(e) => e.valid_up_to(),
        };
        RestScan {
            watch,
            utf8: true,
            whitespace: false,
            secret_word: false,
            partial: head[text_end..].to_vec(),
            seam: head[head.len().saturating_sub(SEAM)..].to_vec(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.watch.secret_word && !self.secret_word {
            // A word that starts in the seam and ends in this chunk, then one inside it.
            let mut joint = std::mem::take(&mut self.seam);
            joint.extend_from_slice(&bytes[..bytes.len().min(SEAM)]);
            self.secret_word = record::has_secret_word(&joint) || record::has_secret_word(bytes);
            // The new seam: the last bytes scanned, of this chunk and of the seam before it.
            if bytes.len() >= SEAM {
                joint.clear();
                joint.extend_from_slice(&bytes[bytes.len() - SEAM..]);
            } else {
                // `joint` is the old seam and the whole chunk.
                joint.drain(..joint.len().saturating_sub(SEAM));
            }
            self.seam = joint;
        }
        if self.watch.utf8 && self.utf8 {
            self.feed_text(bytes);
        }
    }

    /// Checks that `bytes` continue the body as UTF-8, and looks for whitespace in them.
    fn feed_text(&mut self, mut bytes: &[u8]) {
        if let Some(&lead) = self.partial.first() {
            let needed = char_len(lead).saturating_sub(self.partial.len());
            let take = needed.min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if take < needed {
                return;
            }
            let Ok(c) = std::str::from_utf8(&self.partial) else {
                self.utf8 = false;
                return;
            };
            let space = c.contains(char::is_whitespace);
            self.note_whitespace(space);
            self.partial.clear();
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                self.note_whitespace(self.watch.whitespace && !self.whitespace && has_space(text))
            }
            Err(e) => {
                let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
                self.note_whitespace(self.watch.whitespace && has_space(valid));
                match e.error_len() {
                    Some(_) => self.utf8 = false,
                    None => self.partial = bytes[e.valid_up_to()..].to_vec(),
                }
            }
        }
    }

    fn note_whitespace(&mut self, space: bool) {
        self.whitespace |= space;
    }
}

fn has_space(text: &str) -> bool {
    text.contains(char::is_whitespace)
}

/// The length of the UTF-8 sequence a lead byte starts (1 for a byte that starts none).
fn char_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview(media: &str, cap: usize, chunks: &[&[u8]], whole: bool) -> Option<String> {
        let mut p = Preview::new(media.to_owned(), cap);
        let mut total = 0;
        for chunk in chunks {
            p.feed(chunk);
            total += chunk.len() as u64;
        }
        assert!(p.head.len() <= cap && p.head.capacity() <= cap);
        p.render(total, whole)
    }

    #[test]
    fn a_body_within_the_cap_is_shown_as_a_buffered_one_is() {
        let chunks: [&[u8]; 2] = [b"user=ann&pass", b"word=hunter2"];
        let whole = b"user=ann&password=hunter2";
        let buffered = record::render_bytes("", whole, 100, None);
        assert_eq!(preview("", 100, &chunks, true), buffered);
        assert_eq!(buffered.as_deref(), Some("user=ann&password=REDACTED"));
        let json = br#"{"token":"t0k","n":1}"#;
        assert_eq!(
            preview("application/json", 100, &[json], true),
            record::render_bytes("application/json", json, 100, None)
        );
        assert_eq!(preview("", 10, &[], true), None);
    }

    #[test]
    fn a_longer_body_shows_its_first_bytes_redacted_with_its_size() {
        let form: [&[u8]; 3] = [b"a=1&passw", b"ord=hunter2&b=", b"22222222"];
        assert_eq!(
            preview("", 16, &form, true).as_deref(),
            Some("a=1&password=RED... [31 bytes in all]")
        );
        let text: [&[u8]; 2] = [b"hello world, ", b"how are you"];
        assert_eq!(
            preview("text/plain", 5, &text, false).as_deref(),
            Some("hello... [24 bytes read]")
        );
    }

    #[test]
    fn a_secret_word_past_the_preview_hides_free_text_even_split_between_chunks() {
        // The secret is in the preview, the word that marks it only later: a buffered body
        // with the same bytes is not shown, so neither is the preview.
        let chunks: [&[u8]; 3] = [b"hunter2 is what I type as my pa", b"ssw", b"ord"];
        let shown = preview("text/plain", 8, &chunks, true).unwrap();
        assert_eq!(shown, "[37-byte body not shown: it may hold a secret]");
        let plain: [&[u8]; 2] = [b"hunter2 is what I type as my pa", b"ss"];
        assert!(
            preview("text/plain", 8, &plain, true)
                .unwrap()
                .starts_with("hunter2")
        );
    }

    #[test]
    fn whitespace_past_the_preview_makes_free_text_of_a_form_look() {
        let chunks: [&[u8]; 2] = [b"s3cr3t=x&y=1", b" my password"];
        let shown = preview("", 8, &chunks, true).unwrap();
        assert!(shown.contains("not shown"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn json_longer_than_the_preview_is_not_shown() {
        let chunks: [&[u8]; 2] = [br#"{"user":"ann","#, br#""token":"t0k"}"#];
        let shown = preview("application/json", 10, &chunks, true).unwrap();
        assert!(
            shown.starts_with("[28-byte JSON body not shown: only its first 10"),
            "{shown}"
        );
        assert!(
            !shown.contains("t0k") && !shown.contains("\"ann\""),
            "{shown}"
        );
    }

    #[test]
    fn utf8_is_checked_across_chunks_and_the_cut() {
        // "é" is C3 A9: cut by the preview, then by a chunk end, stays text.
        let chunks: [&[u8]; 3] = [b"ab\xc3", b"\xa9cd\xc3", b"\xa9"];
        assert_eq!(
            preview("text/plain", 3, &chunks, true).as_deref(),
            Some("ab... [8 bytes in all]")
        );
        let bad: [&[u8]; 2] = [b"abc", b"d\xff"];
        assert_eq!(
            preview("text/plain", 2, &bad, true).as_deref(),
            Some("[5 bytes of binary]")
        );
        // A body that ends inside a character is not UTF-8; one dropped there may still be.
        let cut: [&[u8]; 2] = [b"abc", b"d\xc3"];
        assert_eq!(
            preview("text/plain", 2, &cut, true).as_deref(),
            Some("[5 bytes of binary]")
        );
        assert_eq!(
            preview("text/plain", 2, &cut, false).as_deref(),
            Some("ab... [5 bytes read]")
        );
    }
}
