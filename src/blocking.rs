//! A blocking client (work in progress).
