//! histogram (scaffold: to be written).
