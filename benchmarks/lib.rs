//! Nothing here: the benchmarks are in `benches/`. See `BENCHMARKS.md` at the
//! root of the repository for what they measure and their latest figures.
