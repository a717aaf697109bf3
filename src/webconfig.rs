//! webconfig (scaffold: to be written).
