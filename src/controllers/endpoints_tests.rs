//! The Endpoints controller.
