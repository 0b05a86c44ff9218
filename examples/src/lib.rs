//! Shared example helpers.
