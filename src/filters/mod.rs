//! Stream transforms over the image reader and writer: compression, digests, splitting, summaries.
