//! Nothing to see here: the benchmarks are in `benches/codec.rs`. Run them with
//! `cd bench/codec && cargo bench`.
