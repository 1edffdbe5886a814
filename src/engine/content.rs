//! Content-addressed blob store: `content/ingest/` then an atomic rename into `content/blobs/sha256/`
//! after size and digest checks, so a crash leaves garbage, never a wrong blob.
