//! auth (scaffold: to be written).
