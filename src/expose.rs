//! expose (scaffold: to be written).
