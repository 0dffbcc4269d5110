//! (being written — temporary stub)
use crate::decision::Redaction;
use crate::exchange::{Request, Response};
#[derive(Debug, Default, Clone)]
pub struct Applied;
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct RedactError;
pub fn apply_to_request(_: &mut Request, _: &[Redaction]) -> Result<Applied, RedactError> { Err(RedactError) }
pub fn apply_to_response(_: &mut Response, _: &[Redaction]) -> Result<Applied, RedactError> { Err(RedactError) }
