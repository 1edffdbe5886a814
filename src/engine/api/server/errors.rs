//! HTTP statuses of the network and volume errors, chosen by variant as Docker chooses them:
//! 404 no such object, 409 conflict or in use, 400 bad parameter, 403 a pre-defined network,
//! 500 a failure of the host. The matches are exhaustive, so a new variant needs a decision here.

use super::ApiError;
use crate::engine::container::connect::ConnectError;
use crate::network::NetworkError;
use crate::volume::VolumeError;

fn network_status(e: &NetworkError) -> u16 {
    match e {
        NetworkError::NotFound(_) => 404,
        NetworkError::Conflict(_) => 409,
        NetworkError::BadRequest(_) => 400,
        NetworkError::Forbidden(_) => 403,
        NetworkError::Kernel { .. }
        | NetworkError::Netns(_)
        | NetworkError::State { .. }
        | NetworkError::Other(_) => 500,
    }
}

fn volume_status(e: &VolumeError) -> u16 {
    match e {
        VolumeError::NotFound(_) => 404,
        VolumeError::Conflict(_) => 409,
        VolumeError::BadRequest(_) => 400,
        VolumeError::Io { .. } | VolumeError::Other(_) => 500,
    }
}

impl From<NetworkError> for ApiError {
    fn from(e: NetworkError) -> Self {
        ApiError::new(network_status(&e), e.to_string())
    }
}

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> Self {
        ApiError::new(volume_status(&e), e.to_string())
    }
}

impl From<ConnectError> for ApiError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Container(e) => e.into(),
            ConnectError::Network(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn network_errors_get_dockers_status_by_kind_not_by_text() {
        let status = |e: NetworkError| ApiError::from(e).status;
        assert_eq!(
            status(NetworkError::NotFound("n".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(NetworkError::Conflict("not found".into())),
            StatusCode::CONFLICT,
            "the words in the message do not matter"
        );
        assert_eq!(
            status(NetworkError::BadRequest("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(NetworkError::Forbidden("x".into())),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(NetworkError::Other("conflict".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn volume_and_connect_errors_keep_their_kind() {
        let in_use = ApiError::from(VolumeError::Conflict("volume is in use".into()));
        assert_eq!(in_use.status, StatusCode::CONFLICT);
        assert_eq!(in_use.message, "volume is in use");
        let missing = ApiError::from(ConnectError::Network(NetworkError::NotFound("n".into())));
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.message, "network n not found");
    }
}
