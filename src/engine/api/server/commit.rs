//! `POST /commit` (`docker commit`): `container`, `repo`, `tag`, `comment`, `author`, `pause`
//! (default true) and `changes` (repeatable, one Dockerfile line each) in the query, config
//! overrides in an optional JSON body; answers `201 {"Id": "sha256:…"}`.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;

use super::{json_response, ApiError, ApiResult};
use crate::engine::container::commit::CommitOptions;
use crate::engine::wire::ContainerCreateRequest;
use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    Router::new().route("/commit", post(commit))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct IdResponse {
    id: String,
}

/// The options from the query's pairs (kept as a list: `changes` repeats).
fn options(pairs: &[(String, String)]) -> ApiResult<(String, CommitOptions)> {
    let get = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let container = get("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("the container to commit is missing (container=)"))?;
    let pause = match get("pause").map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("" | "1" | "true" | "yes") => true,
        Some("0" | "false" | "no") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid pause value {other:?}: expected true or false"
            )))
        }
    };
    let opts = CommitOptions {
        repo: get("repo"),
        tag: get("tag"),
        comment: get("comment").unwrap_or_default(),
        author: get("author").unwrap_or_default(),
        pause,
        changes: pairs
            .iter()
            .filter(|(k, _)| k == "changes")
            .map(|(_, v)| v.clone())
            .collect(),
        config: None,
    };
    Ok((container, opts))
}

async fn commit(
    State(engine): State<SharedEngine>,
    Query(pairs): Query<Vec<(String, String)>>,
    body: Bytes,
) -> ApiResult<Response> {
    let (container, mut opts) = options(&pairs)?;
    // Docker clients send no body, `null`, or a container config.
    if !body.iter().all(u8::is_ascii_whitespace) {
        opts.config = serde_json::from_slice::<Option<ContainerCreateRequest>>(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    }
    let image = engine.commit_container(&container, opts).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &IdResponse { id: image.id },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded_pairs(q)
    }

    fn serde_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
        let uri: axum::http::Uri = format!("/commit?{q}").parse().unwrap();
        Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    #[test]
    fn the_query_gives_every_change_and_pause_defaults_on() {
        let (c, o) = options(&pairs(
            "container=web&repo=app&changes=CMD+%5B%22sh%22%5D&changes=ENV+A%3D1&comment=hi",
        ))
        .unwrap();
        assert_eq!(c, "web");
        assert_eq!(o.changes, [r#"CMD ["sh"]"#, "ENV A=1"]);
        assert!(o.pause);
        assert_eq!(o.comment, "hi");
        let (_, o) = options(&pairs("container=web&pause=0")).unwrap();
        assert!(!o.pause);
        let e = options(&pairs("repo=x")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(options(&pairs("container=web&pause=maybe")).is_err());
    }
}
