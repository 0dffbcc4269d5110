//! One module per subcommand.

pub mod approvals;
pub mod eval;
pub mod inspect;
pub mod replay;
pub mod serve;
pub mod test;
