//! Streaming 1 GiB up and down (placeholder; being written).
fn main() {}
