//! server (scaffold: to be written).
