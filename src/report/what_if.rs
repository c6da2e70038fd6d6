//! What another wait would have done.
