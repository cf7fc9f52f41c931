//! mpx client.
