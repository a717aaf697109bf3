//! web (scaffold: to be written).
