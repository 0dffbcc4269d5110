//! HAR reader (being written).
