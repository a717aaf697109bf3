//! queue (scaffold: to be written).
