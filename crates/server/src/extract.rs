//! Extractor wrappers that turn axum's plain-text rejections into `ApiError` JSON bodies.

use crate::error::{ApiError, ApiResult};
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

/// JSON body; a malformed or oversized body becomes a 400/413 JSON error naming what is wrong.
/// Whether unknown fields are refused is up to the target type: the management API's bodies are
/// `#[serde(deny_unknown_fields)]`, the DDI device API's are lenient (real clients send extras).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::bad_request(
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::PayloadTooLarge("request body too large".into())
                }
                _ => ApiError::BadRequest(format!(
                    "cannot read the request body: {}",
                    rejection.body_text()
                )),
            }
        })?;
        decode_json(&bytes).map(ApiJson)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Decodes a JSON request body; errors name the offending field (`unknown field "x" in the request
/// body; expected one of: a, b`, `invalid request body at tags: ...`).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| body_error(&e.path().to_string(), e.inner()))?;
    deserializer.end().map_err(|e| body_error(".", &e))?;
    Ok(value)
}

fn body_error(path: &str, error: &serde_json::Error) -> ApiError {
    let mut message = error.to_string();
    // serde_json appends " at line L column C"; the field path says more.
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        // The path locates the object holding the unknown field (it may end with the field).
        let parent = if path == field {
            ""
        } else {
            path.strip_suffix(&format!(".{field}")).unwrap_or(path)
        };
        let name = if parent.is_empty() || parent == "." {
            field.to_string()
        } else {
            format!("{parent}.{field}")
        };
        let expected = if known.is_empty() {
            "no fields".to_string()
        } else {
            format!("one of: {}", known.join(", "))
        };
        return ApiError::BadRequest(format!(
            "unknown field {name:?} in the request body; expected {expected}"
        ));
    }
    match error.classify() {
        serde_json::error::Category::Data if path != "." && !path.is_empty() => {
            ApiError::BadRequest(format!("invalid request body at {path}: {message}"))
        }
        serde_json::error::Category::Data => {
            ApiError::BadRequest(format!("invalid request body: {message}"))
        }
        _ => ApiError::BadRequest(format!("request body is not valid JSON: {message}")),
    }
}

/// Path parameters; ids that do not parse name nothing that exists, so they are a 404.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::NotFound(rejection.body_text())
}

/// Query string parameters.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let text = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    ApiError::BadRequest(format!("invalid query string: {}", text.replace('`', "\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        schedule: String,
        duration: String,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        token: Option<String>,
        inner: Option<Inner>,
        tags: Option<Vec<String>>,
    }

    fn message(body: &str) -> String {
        match decode_json::<Outer>(body.as_bytes()) {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("{body}: expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_named_with_the_expected_ones() {
        assert_eq!(
            message(r#"{"securityToken": "x"}"#),
            r#"unknown field "securityToken" in the request body; expected one of: token, inner, tags"#
        );
        assert_eq!(
            message(r#"{"inner": {"schedule": "x", "timezone": "Z"}}"#),
            r#"unknown field "inner.timezone" in the request body; expected one of: schedule, duration"#
        );
    }

    #[test]
    fn type_errors_name_the_path_and_syntax_errors_say_so() {
        assert_eq!(
            message(r#"{"tags": [1]}"#),
            "invalid request body at tags[0]: invalid type: integer `1`, expected a string"
        );
        assert!(message("{").starts_with("request body is not valid JSON"));
        assert!(message(r#"{} x"#).starts_with("request body is not valid JSON"));
    }
}
