//! OCI distribution client: token auth, manifests and indexes, streamed verified blobs.
