//! `HEAD`/`GET`/`PUT /containers/{id}/archive` for `berth cp`: the stat header, the tar of a
//! container path as a stream, and a tar streamed into a container.

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;

use super::{bool_param, encode, full_body, with_query, ClientError, EngineClient, Result};
use crate::engine::container::archive_stat::{PathStat, PATH_STAT_HEADER};

fn archive_path(id: &str, path: &str, extra: &[(&str, Option<String>)]) -> String {
    let mut params = vec![("path", Some(path.to_string()))];
    params.extend_from_slice(extra);
    with_query(&format!("/containers/{}/archive", encode(id, &[])), &params)
}

fn stat_of(response: &hyper::Response<hyper::body::Incoming>) -> Result<PathStat> {
    response
        .headers()
        .get(PATH_STAT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(PathStat::from_header)
        .ok_or_else(|| ClientError::Decode {
            what: "archive".into(),
            detail: format!("no valid {PATH_STAT_HEADER} header in the answer"),
        })
}

impl EngineClient {
    /// `HEAD`: the stat of `path` in the container, `None` when it does not exist.
    pub async fn stat_container_path(&self, id: &str, path: &str) -> Result<Option<PathStat>> {
        let request = self
            .send(
                Method::HEAD,
                &archive_path(id, path, &[]),
                full_body(Bytes::new()),
                None,
            )
            .await;
        match request {
            Ok(response) => stat_of(&response).map(Some),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET`: the stat of `path` and its tar, as it arrives.
    pub async fn get_archive(
        &self,
        id: &str,
        path: &str,
    ) -> Result<(PathStat, BoxStream<'static, Result<Bytes>>)> {
        let response = self
            .send(
                Method::GET,
                &archive_path(id, path, &[]),
                full_body(Bytes::new()),
                None,
            )
            .await?;
        let stat = stat_of(&response)?;
        let socket = self.socket.clone();
        let body = response.into_body().into_data_stream().map(move |chunk| {
            chunk.map_err(|source| ClientError::Http {
                path: socket.clone(),
                source,
            })
        });
        Ok((stat, body.boxed()))
    }

    /// `PUT`: extract the tar from `tar` (chunks as they are produced) into directory `dir`.
    pub async fn put_archive_stream(
        &self,
        id: &str,
        dir: &str,
        tar: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<()> {
        let path = archive_path(
            id,
            dir,
            &[
                ("noOverwriteDirNonDir", bool_param(no_overwrite_dir_non_dir)),
                ("copyUIDGID", bool_param(copy_uid_gid)),
            ],
        );
        let mut tar = tar;
        let frames = futures_util::stream::poll_fn(move |cx| tar.poll_recv(cx))
            .map(|chunk| chunk.map(Frame::data));
        let body = StreamBody::new(frames).boxed_unsync();
        let response = self
            .send(Method::PUT, &path, body, Some("application/x-tar"))
            .await?;
        self.read_all(response).await.map(drop)
    }
}
