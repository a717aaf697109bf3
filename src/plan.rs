//! plan (scaffold: to be written).
