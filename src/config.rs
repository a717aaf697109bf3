//! config (scaffold: to be written).
