//! `POST /commit` (`docker commit`), for `berth commit`.

use hyper::Method;

use super::{bool_param, with_query, EngineClient, Result};
use crate::engine::container::commit::CommitOptions;

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IdAnswer {
    id: String,
}

impl EngineClient {
    /// Commits `container` as a new image; returns its ID (`sha256:…`).
    pub async fn commit_container(&self, container: &str, opts: &CommitOptions) -> Result<String> {
        let mut query = vec![
            ("container", Some(container.to_string())),
            ("repo", opts.repo.clone()),
            ("tag", opts.tag.clone()),
            (
                "comment",
                Some(opts.comment.clone()).filter(|c| !c.is_empty()),
            ),
            (
                "author",
                Some(opts.author.clone()).filter(|a| !a.is_empty()),
            ),
            ("pause", bool_param(opts.pause)),
        ];
        query.extend(opts.changes.iter().map(|c| ("changes", Some(c.clone()))));
        let body = opts.config.as_ref().map(Self::to_json).transpose()?;
        let answer: IdAnswer = self
            .call(Method::POST, &with_query("/commit", &query), body)
            .await?;
        Ok(answer.id)
    }
}
