//! The axum router serving Docker Engine API paths (with or without a `/v1.xx` prefix).
