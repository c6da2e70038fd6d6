//! Text forms of a report and a what-if: an aligned table for people, CSV
//! and JSON for tools.
