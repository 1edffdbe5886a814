//! `POST /containers/{id}/sync` (berth's extension for the watch mode): a tar of changed files,
//! deletions as `.wh.NAME` entries, applied to a running container at `path`.

use hyper::Method;

use super::{encode, full_body, with_query, ClientError, EngineClient, Result};

/// What the engine applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SyncAnswer {
    pub entries: u64,
    pub bytes: u64,
}

impl EngineClient {
    pub async fn sync_container(&self, id: &str, path: &str, tar: Vec<u8>) -> Result<SyncAnswer> {
        let uri = with_query(
            &format!("/containers/{}/sync", encode(id, &[])),
            &[("path", Some(path.to_string()))],
        );
        let response = self
            .send(
                Method::POST,
                &uri,
                full_body(tar),
                Some("application/x-tar"),
            )
            .await?;
        let bytes = self.read_all(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            what: uri,
            detail: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
        })
    }
}
