//! (being written — temporary stub)
use crate::decision::Redaction;
use crate::redact::{Applied, RedactError};
pub fn apply_to_http_request(_: &mut http::Request<Vec<u8>>, _: &[Redaction]) -> Result<Applied, RedactError> { Err(RedactError) }
pub fn apply_to_http_response(_: &mut http::Response<Vec<u8>>, _: &[Redaction]) -> Result<Applied, RedactError> { Err(RedactError) }
