//! staffing (scaffold: to be written).
