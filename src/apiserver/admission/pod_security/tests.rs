//! PodSecurity checks and messages.
