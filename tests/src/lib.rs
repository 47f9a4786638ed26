//! Helpers for the end-to-end tests: hermetic environments, real git repositories, and the
//! paths of goalpost's built binaries.
