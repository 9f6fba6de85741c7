//! Unit tests of the image format: round trips and every error path.
