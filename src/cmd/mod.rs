//! One module per subcommand.

pub mod approvals;
pub mod bench;
pub mod build;
pub mod check;
pub mod eval;
pub mod inspect;
pub mod mcp;
pub mod new;
pub mod replay;
pub mod serve;
pub mod test;
