//! The EndpointSlice controller against a real API on a temp store.
