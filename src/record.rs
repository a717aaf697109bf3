//! record (scaffold: to be written).
