//! The mpx cell language (placeholder: being written).
#![deny(missing_docs)]

pub mod comm;
