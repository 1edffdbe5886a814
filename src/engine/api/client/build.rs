//! `POST /build` and `POST /build/prune`, as the Docker CLI calls the classic builder: the context
//! tar streamed as the request body, the options as query parameters, and the answer a stream of
//! jsonmessages that carry, besides Docker's fields, berth's `berth` progress event.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request};
use serde::{Deserialize, Serialize};

use super::{bool_param, full_body, json_lines, with_query, ClientError, EngineClient, Result};
use crate::engine::api::API_VERSION;
use crate::engine::wire::ErrorDetail;

/// The query of `POST /build` (Docker's classic builder parameters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildOptions {
    /// Every name the image is tagged with (`t`, repeated).
    pub tags: Vec<String>,
    /// Where the Dockerfile is in the context tar.
    pub dockerfile: String,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub labels: BTreeMap<String, String>,
    pub quiet: bool,
    pub network_mode: Option<String>,
    /// Bytes.
    pub shm_size: Option<u64>,
    /// `host:ip` entries.
    pub extra_hosts: Vec<String>,
    pub cache_from: Vec<String>,
    pub platform: Option<String>,
}

impl BuildOptions {
    /// The request path with its query, as the Docker CLI spells it.
    pub fn path(&self) -> String {
        let mut params: Vec<(&str, Option<String>)> =
            self.tags.iter().map(|t| ("t", Some(t.clone()))).collect();
        params.extend([
            ("dockerfile", Some(self.dockerfile.clone())),
            ("buildargs", json(&self.build_args)),
            ("target", self.target.clone()),
            ("nocache", self.no_cache.then(|| bool_param(true)).flatten()),
            ("pull", self.pull.then(|| bool_param(true)).flatten()),
            ("labels", json(&self.labels)),
            ("q", self.quiet.then(|| bool_param(true)).flatten()),
            ("networkmode", self.network_mode.clone()),
            ("shmsize", self.shm_size.map(|s| s.to_string())),
            (
                "extrahosts",
                Some(self.extra_hosts.join(",")).filter(|h| !h.is_empty()),
            ),
            ("cachefrom", json(&self.cache_from)),
            ("platform", self.platform.clone()),
        ]);
        with_query("/build", &params)
    }
}

/// A query value that is a JSON object or list.
fn json<T: Serialize>(value: &T) -> Option<String> {
    serde_json::to_string(value).ok()
}

/// One line of the build's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BuildMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(
        default,
        rename = "errorDetail",
        skip_serializing_if = "Option::is_none"
    )]
    pub error_detail: Option<ErrorDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub berth: Option<BuildEvent>,
}

/// berth's progress event: what happens to one vertex (a step) of the build.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BuildEvent {
    pub vertex: u64,
    /// Given with the vertex's first event (`[builder 2/4] RUN make`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `start`, `cached`, `log`, `done` or `error`.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
}

impl BuildMessage {
    /// The image id the build announces (`{"aux":{"ID":"sha256:…"}}`).
    pub fn image_id(&self) -> Option<&str> {
        self.aux.as_ref()?.get("ID")?.as_str()
    }

    /// The error the engine reports, from `errorDetail` or `error`.
    pub fn error_message(&self) -> Option<&str> {
        match (&self.error_detail, &self.error) {
            (Some(detail), _) if !detail.message.is_empty() => Some(&detail.message),
            (_, Some(error)) => Some(error),
            _ => None,
        }
    }
}

impl EngineClient {
    /// `POST /build` with `context` (chunks of a tar) as the body; `registry_config` is the
    /// `X-Registry-Config` header's value (base64url JSON: registry → credentials), if any.
    /// The answer streams as it comes; a build error is a message with `error` set, so the caller
    /// can show the progress before it.
    pub async fn build(
        &self,
        options: &BuildOptions,
        context: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
        registry_config: Option<String>,
    ) -> Result<BoxStream<'static, Result<BuildMessage>>> {
        let frames = tokio_stream_of(context).map(|chunk| chunk.map(Frame::data));
        let body = StreamBody::new(frames).boxed_unsync();
        let mut sender = self.connect().await?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("/v{API_VERSION}{}", options.path()))
            .header(hyper::header::HOST, "berth")
            .header(hyper::header::CONTENT_TYPE, "application/x-tar");
        if let Some(config) = registry_config {
            request = request.header("X-Registry-Config", config);
        }
        let request = request
            .body(body)
            .map_err(|e| ClientError::Other(format!("build request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|source| ClientError::Http {
                path: self.socket.clone(),
                source,
            })?;
        if response.status().is_client_error() || response.status().is_server_error() {
            return Err(self.api_error(response).await);
        }
        Ok(json_lines::<BuildMessage>(
            response.into_body(),
            self.socket.clone(),
        ))
    }

    /// `POST /build/prune` (`all=1` also drops what tagged images do not use): the answer as the
    /// engine gives it (`{"CachesDeleted":[…],"SpaceReclaimed":N}`).
    pub async fn prune_build_cache(&self, all: bool) -> Result<serde_json::Value> {
        let path = with_query("/build/prune", &[("all", all.then(|| "1".to_string()))]);
        let response = self
            .send(Method::POST, &path, full_body(Bytes::new()), None)
            .await?;
        let bytes = self.read_all(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            what: path,
            detail: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
        })
    }
}

/// A tokio receiver as a `Stream`.
fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> BoxStream<'static, T> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_the_classic_builder_query() {
        let options = BuildOptions {
            tags: vec!["app-web".into(), "reg/app:1".into()],
            dockerfile: "Dockerfile".into(),
            build_args: [("V".to_string(), "1 2".to_string())].into(),
            target: Some("final".into()),
            no_cache: true,
            extra_hosts: vec!["db:10.0.0.2".into()],
            ..BuildOptions::default()
        };
        let path = options.path();
        assert!(
            path.starts_with("/build?t=app-web&t=reg%2Fapp%3A1&dockerfile=Dockerfile"),
            "{path}"
        );
        assert!(
            path.contains("&buildargs=%7B%22V%22%3A%221%202%22%7D"),
            "{path}"
        );
        assert!(
            path.contains("&target=final&nocache=1&labels=%7B%7D"),
            "{path}"
        );
        assert!(path.contains("&extrahosts=db%3A10.0.0.2"), "{path}");
        assert!(!path.contains("pull="), "{path}");
    }

    #[test]
    fn messages_decode_with_berth_events_and_the_image_id() {
        let line = r#"{"stream":"Step 2/5 : RUN make\n","berth":{"vertex":4,"name":"[builder 2/4] RUN make","event":"start"}}"#;
        let m: BuildMessage = serde_json::from_str(line).unwrap();
        assert_eq!(m.berth.as_ref().unwrap().vertex, 4);
        assert_eq!(m.berth.unwrap().event, "start");
        let aux: BuildMessage = serde_json::from_str(r#"{"aux":{"ID":"sha256:ab"}}"#).unwrap();
        assert_eq!(aux.image_id(), Some("sha256:ab"));
        let err: BuildMessage =
            serde_json::from_str(r#"{"errorDetail":{"message":"Dockerfile:7: x"},"error":"y"}"#)
                .unwrap();
        assert_eq!(err.error_message(), Some("Dockerfile:7: x"));
    }
}
