//! [`Timeout`]: a deadline for one call (work in progress).
