//! HTTP statuses of the engine's errors, chosen by variant as Docker chooses them: 404 no such
//! object, 409 conflict or in use, 400 bad parameter (or a command that cannot be executed), 403
//! a pre-defined network, 304 already in that state, 500 a failure of the host. The matches are
//! exhaustive, so a new variant needs a decision here; the message never decides.

use super::ApiError;
use crate::engine::container::connect::ConnectError;
use crate::engine::container::ContainerError;
use crate::engine::image::ImageError;
use crate::engine::registry::RegistryError;
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

pub fn container_status(e: &ContainerError) -> u16 {
    match e {
        ContainerError::NotFound(_) | ContainerError::NoSuchImage(_) => 404,
        ContainerError::Conflict(_) => 409,
        ContainerError::BadRequest(_) | ContainerError::NotExecutable { .. } => 400,
        ContainerError::NotModified(_) => 304,
        ContainerError::StartFailed { .. }
        | ContainerError::Io { .. }
        | ContainerError::Other(_) => 500,
    }
}

pub fn image_status(e: &ImageError) -> u16 {
    match e {
        ImageError::NotFound(_) | ImageError::Registry(RegistryError::ManifestUnknown { .. }) => {
            404
        }
        ImageError::InvalidReference(_) => 400,
        ImageError::Conflict(_) => 409,
        ImageError::Registry(_)
        | ImageError::Content { .. }
        | ImageError::Unpack { .. }
        | ImageError::DiffIdMismatch { .. }
        | ImageError::InvalidImage { .. }
        | ImageError::NoSpace { .. }
        | ImageError::OciBuild { .. }
        | ImageError::Snapshot(_)
        | ImageError::Layer { .. }
        | ImageError::Io { .. }
        | ImageError::Other(_) => 500,
    }
}

impl From<ContainerError> for ApiError {
    fn from(e: ContainerError) -> Self {
        ApiError::new(container_status(&e), e.to_string())
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        ApiError::new(image_status(&e), e.to_string())
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

    #[test]
    fn a_command_that_cannot_run_is_the_clients_fault_and_a_failed_start_the_hosts() {
        let status = |e: ContainerError| ApiError::from(e).status;
        let not_executable = ContainerError::NotExecutable {
            name: "web".into(),
            reason: "exec: \"nope\": executable file not found in $PATH".into(),
        };
        assert_eq!(status(not_executable), StatusCode::BAD_REQUEST);
        let failed = ContainerError::StartFailed {
            name: "web".into(),
            reason: "exec: looks like a command error but is not one".into(),
        };
        assert_eq!(status(failed), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            status(ContainerError::NotModified("web".into())),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            status(ContainerError::NoSuchImage("x".into())),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn image_errors_get_dockers_status_by_kind() {
        let status = |e: ImageError| ApiError::from(e).status;
        assert_eq!(
            status(ImageError::NotFound("x".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(ImageError::Conflict("in use".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(ImageError::Other("no such image".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
