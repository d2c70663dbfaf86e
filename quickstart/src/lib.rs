//! Holds nothing: the package exists for its example, `examples/quickstart.rs` at the
//! workspace root (see Cargo.toml).
