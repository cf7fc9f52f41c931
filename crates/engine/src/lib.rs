//! mpx engine.
