//! One module per subcommand.

pub mod eval;
pub mod inspect;
pub mod replay;
pub mod test;
