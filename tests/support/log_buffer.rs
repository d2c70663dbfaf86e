//! A writer for `tracing-subscriber`'s fmt layer that keeps what it is given, so a test can read
//! the log text a person would see. Included with `#[path]` by the tests that need it.

use std::io;
use std::sync::{Arc, Mutex};

/// Shared bytes: clones write into the same buffer.
#[derive(Clone, Default)]
pub struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
