//! Helpers shared by the binaries: terminal checks, output buffering, exit codes.
