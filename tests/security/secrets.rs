//! Security tests: secrets.
