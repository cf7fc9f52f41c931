//! mpx controller.
