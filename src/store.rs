//! store (scaffold: to be written).
