//! EHLO capabilities.
