//! Security tests: dead_letters.
