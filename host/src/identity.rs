//! Identity (being written).
