//! Line framing and message-content framing.
