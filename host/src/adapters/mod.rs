//! Conversions from the protocols that carry requests into the normalised exchange.
pub mod http;
