//! ResourceQuota admission through the in-process client.
