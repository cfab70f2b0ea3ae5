//! ratecard: an embeddable rate-limit engine.
#![no_std]
#![deny(missing_docs)]

pub mod gcra;
pub mod quota;
pub mod route;
pub mod rule;
pub mod time;
pub mod window;

pub use quota::{Algorithm, Outcome, Quota};
pub use rule::{Api, InstanceKind, Method, Route, Rule, RuleTable, Scope};
pub use time::Nanos;
