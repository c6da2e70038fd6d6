//! Security tests: personal_data.
