//! Pause, unpause, top, stats, rename and update (`/containers/{id}/…`), for `berth pause`,
//! `top`, `stats` and the tests.

use hyper::Method;

use super::{encode, with_query, EngineClient, Result};
use crate::engine::container::stats::ContainerStats;
use crate::engine::container::top::TopResponse;
use crate::engine::container::update::{UpdateRequest, UpdateResponse};

fn container_path(id: &str, verb: &str) -> String {
    format!("/containers/{}/{verb}", encode(id, &[]))
}

impl EngineClient {
    pub async fn pause_container(&self, id: &str) -> Result<()> {
        self.call_no_answer(Method::POST, &container_path(id, "pause"))
            .await
            .map(drop)
    }

    pub async fn unpause_container(&self, id: &str) -> Result<()> {
        self.call_no_answer(Method::POST, &container_path(id, "unpause"))
            .await
            .map(drop)
    }

    /// The container's processes; `ps_args` empty: `ps -ef`'s columns.
    pub async fn top_container(&self, id: &str, ps_args: &str) -> Result<TopResponse> {
        let path = with_query(
            &container_path(id, "top"),
            &[(
                "ps_args",
                Some(ps_args.to_string()).filter(|a| !a.is_empty()),
            )],
        );
        self.call(Method::GET, &path, None).await
    }

    /// One sample (`stream=false`): with `one_shot`, at once and without `precpu_stats`; else
    /// after the engine's second sample, a second later, so the CPU figures have a delta.
    pub async fn container_stats(&self, id: &str, one_shot: bool) -> Result<ContainerStats> {
        let path = with_query(
            &container_path(id, "stats"),
            &[
                ("stream", Some("0".into())),
                ("one-shot", one_shot.then(|| "1".into())),
            ],
        );
        self.call(Method::GET, &path, None).await
    }

    pub async fn rename_container(&self, id: &str, name: &str) -> Result<()> {
        let path = with_query(
            &container_path(id, "rename"),
            &[("name", Some(name.into()))],
        );
        self.call_no_answer(Method::POST, &path).await.map(drop)
    }

    pub async fn update_container(
        &self,
        id: &str,
        update: &UpdateRequest,
    ) -> Result<UpdateResponse> {
        self.call(
            Method::POST,
            &container_path(id, "update"),
            Some(Self::to_json(update)?),
        )
        .await
    }
}
