//! Pure internals exposed to fuzz targets (feature `internals`); not a stable API.
