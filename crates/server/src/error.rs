//! One error type for every HTTP handler: each variant maps to a status code and a JSON body
//! `{"error": "<kind>", "message": "<what failed>"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The error of every HTTP handler; [`ApiError::status`] is its status code, and the body is
/// `{"error": "<kind>", "message": "<what failed>"}` (the message hidden for 5xx).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a malformed or refused request (bad JSON, unknown field or parameter, invalid value).
    #[error("{0}")]
    BadRequest(String),
    /// 401 with `WWW-Authenticate: TargetToken`: no credential, or a wrong one.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the credential is valid but may not do this (role too low, another tenant).
    #[error("{0}")]
    Forbidden(String),
    /// 404: the resource does not exist, or belongs to another tenant.
    #[error("{0}")]
    NotFound(String),
    /// 405: the action is not in a state that takes this request (DDI cancel feedback for an action
    /// not being canceled).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the resource already exists, or its state forbids the change (e.g. cancel when closed).
    #[error("{0}")]
    Conflict(String),
    /// 410: the DDI action is closed; the device should poll again.
    #[error("{0}")]
    Gone(String),
    /// 412: an artifact download's `If-Match` does not match the artifact's SHA-1.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: a request body or artifact upload is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 416 with `Content-Range: bytes */<size>`: a download range outside the artifact (its size).
    #[error("{0}")]
    RangeNotSatisfiable(u64),
    /// Throttled (crate::throttle): the message and the seconds for `Retry-After`.
    #[error("{0}")]
    TooManyRequests(String, u64),
    /// A database failure: 500, or 404 for `RowNotFound`.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// An I/O failure of the artifact store or temporary files: 500.
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    /// A broken invariant or unexpected failure: 500; the message is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
    /// A backing service (the object storage) is down: 503, the client should retry later.
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Database(sqlx::Error::RowNotFound) => StatusCode::NOT_FOUND,
            ApiError::Database(_) | ApiError::Io(_) | ApiError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone(_) => "gone",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RangeNotSatisfiable(_) => "range_not_satisfiable",
            ApiError::TooManyRequests(..) => "too_many_requests",
            ApiError::Database(sqlx::Error::RowNotFound) => "not_found",
            ApiError::Database(_) | ApiError::Io(_) | ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    /// 404 with the message `<what> not found`.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    /// 400 with this message.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!("{self}");
        }
        // Internal details (SQL text, paths) stay in the log, not in the response.
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            "artifact storage unavailable, retry later".to_string()
        } else if status.is_server_error() {
            "internal server error".to_string()
        } else {
            self.to_string()
        };
        let body = serde_json::json!({ "error": self.kind(), "message": message });
        let mut response = (status, axum::Json(body)).into_response();
        match &self {
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("TargetToken"),
                );
            }
            ApiError::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            }
            ApiError::TooManyRequests(_, secs) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            ApiError::RangeNotSatisfiable(size) => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// The result of a handler step: an error is answered as its [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;
