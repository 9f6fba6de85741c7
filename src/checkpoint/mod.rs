//! Freezing a process tree, reading its state from /proc and ptrace, and writing its image.
