//! JSONL reader (being written).
