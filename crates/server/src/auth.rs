//! Tokens: generation, hashing at rest, and the two authentication schemes (DDI device tokens,
//! management bearer tokens with roles).

use crate::error::ApiError;
use crate::store::{Store, Target, Tenant};
use axum::http::{header, HeaderMap};
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new random token: 32 alphanumeric characters (about 190 bits), the same shape hawkBit generates.
pub fn generate_token() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Tokens are high-entropy random strings, so a plain SHA-256 is enough to make a stolen database
/// useless for authentication (no password-stretching needed).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn hashes_equal(stored: &str, candidate: &str) -> bool {
    stored.as_bytes().ct_eq(candidate.as_bytes()).into()
}

/// Management API roles; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Every `GET` except tenants and tokens.
    Viewer,
    /// Viewer, plus creating software, registering devices, assigning, canceling and rollouts.
    Operator,
    /// Operator, plus tenants, gateway tokens and API tokens.
    Admin,
}

impl Role {
    /// The role named `viewer`, `operator` or `admin` (exact, lower case); else `None`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role's name as stored and shown: `viewer`, `operator` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

fn authorization(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    Some((scheme, token.trim()))
}

/// Who is calling the management API.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name (`dashboard-session:<user>` for dashboard logins).
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// The one tenant the token may act on; `None` for a cross-tenant token, which only the
    /// command line creates.
    pub tenant_id: Option<i64>,
}

impl Caller {
    /// Whether the token may pick any tenant with `X-Keel-Tenant`.
    pub fn is_cross_tenant(&self) -> bool {
        self.tenant_id.is_none()
    }

    /// How status reasons and histories name the caller: `token "ci"` or `user "alice"`.
    pub fn display_name(&self) -> String {
        match self
            .name
            .strip_prefix(crate::store::DASHBOARD_SESSION_TOKEN_PREFIX)
        {
            Some(user) => format!("user {user:?}"),
            None => format!("token {:?}", self.name),
        }
    }
}

/// Authenticates a management API caller and checks it has at least `needed`.
pub async fn management_role(
    store: &Store,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Caller, ApiError> {
    let Some((scheme, token)) = authorization(headers) else {
        return Err(ApiError::Unauthorized(
            "missing Authorization: Bearer <token>".into(),
        ));
    };
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::Unauthorized(
            "expected Authorization: Bearer <token>".into(),
        ));
    }
    // 429 before any database work while this client is throttled (crate::throttle).
    let attempt = crate::throttle::Attempt::token()?;
    let identity = store
        .api_token_identity(&hash_token(token))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("unknown API token".into()))?;
    let role = Role::parse(&identity.role)
        .ok_or_else(|| ApiError::Unauthorized("unknown API token".into()))?;
    let caller = Caller {
        name: identity.name,
        role,
        tenant_id: identity.tenant_id,
    };
    attempt.succeeded();
    crate::audit::note_caller(&caller);
    // A token bound to one tenant never acts on another, on any route: an X-Keel-Tenant naming
    // another tenant (existing or not) is refused here, before any handler runs.
    if let (Some(own), Some(named)) = (caller.tenant_id, headers.get(crate::mgmt::TENANT_HEADER)) {
        let named = named
            .to_str()
            .map_err(|_| ApiError::bad_request("X-Keel-Tenant is not text"))?;
        let same = store
            .tenant_by_name(named)
            .await?
            .is_some_and(|tenant| tenant.id == own);
        if !same {
            return Err(ApiError::Forbidden(format!(
                "this token belongs to another tenant and may not act on tenant {named:?}"
            )));
        }
    }
    if role < needed {
        return Err(ApiError::Forbidden(format!(
            "role {} required, token has {}",
            needed.as_str(),
            role.as_str()
        )));
    }
    Ok(caller)
}

/// The device a DDI request acts as.
pub struct Device {
    /// The tenant named in the URL.
    pub tenant: Tenant,
    /// The device named in the URL (registered by this poll if it came with the gateway token).
    pub target: Target,
}

/// Authenticates a DDI request for `{tenant}/controller/v1/{controller_id}`.
///
/// `TargetToken` must match that very device's token; `GatewayToken` must match the tenant's
/// gateway token and may act for any device, registering unknown ones when `register` is set
/// (only the poll does). Every failure is the same 401 so callers cannot probe which part was wrong.
pub async fn device(
    store: &Store,
    headers: &HeaderMap,
    tenant_name: &str,
    controller_id: &str,
    register: bool,
) -> Result<Device, ApiError> {
    let denied = || ApiError::Unauthorized("authentication failed".into());
    let Some((scheme, token)) = authorization(headers) else {
        return device_by_certificate(store, tenant_name, controller_id, register).await;
    };
    if token.is_empty() {
        return Err(denied());
    }
    // 429 before any database work while this client/device is throttled (crate::throttle).
    let attempt = crate::throttle::Attempt::device(tenant_name, controller_id)?;
    let tenant = store.tenant_by_name(tenant_name).await?.ok_or_else(|| {
        // hawkBit tenant names are often written differently; say so in the log (not to the
        // client, which learns nothing about which part was wrong).
        tracing::info!("DDI request for unknown tenant {tenant_name:?} refused");
        denied()
    })?;
    crate::audit::note_tenant(tenant.id);
    let presented = hash_token(token);
    if scheme.eq_ignore_ascii_case("TargetToken") {
        let target = store
            .target(tenant.id, controller_id)
            .await?
            .ok_or_else(denied)?;
        match &target.token_hash {
            Some(stored) if hashes_equal(stored, &presented) => {
                attempt.succeeded();
                Ok(Device { tenant, target })
            }
            _ => Err(denied()),
        }
    } else if scheme.eq_ignore_ascii_case("GatewayToken") {
        match &tenant.gateway_token_hash {
            Some(stored) if hashes_equal(stored, &presented) => attempt.succeeded(),
            _ => return Err(denied()),
        }
        let target = match store.target(tenant.id, controller_id).await? {
            Some(target) => target,
            None if register && valid_controller_id(controller_id) => {
                store.register_target(tenant.id, controller_id).await?
            }
            None => return Err(ApiError::not_found("controller")),
        };
        Ok(Device { tenant, target })
    } else {
        Err(denied())
    }
}

/// A DDI request without an `Authorization` header, on a TLS connection whose client
/// certificate (verified against `--tls-client-ca` during the handshake) names this device:
/// CN = controller id and O = tenant. Registers an unknown device on its poll, as the gateway
/// token does: the CA vouches for it.
async fn device_by_certificate(
    store: &Store,
    tenant_name: &str,
    controller_id: &str,
    register: bool,
) -> Result<Device, ApiError> {
    let denied = || ApiError::Unauthorized("authentication failed".into());
    let identity = crate::tls::client_identity().ok_or_else(denied)?;
    if identity.common_name != controller_id
        || identity.organization.as_deref() != Some(tenant_name)
    {
        tracing::info!(
            "client certificate CN={:?} O={:?} does not name controller {controller_id:?} of tenant {tenant_name:?}",
            identity.common_name,
            identity.organization
        );
        return Err(denied());
    }
    let tenant = store
        .tenant_by_name(tenant_name)
        .await?
        .ok_or_else(denied)?;
    crate::audit::note_tenant(tenant.id);
    let target = match store.target(tenant.id, controller_id).await? {
        Some(target) => target,
        None if register && valid_controller_id(controller_id) => {
            store.register_target(tenant.id, controller_id).await?
        }
        None => return Err(ApiError::not_found("controller")),
    };
    Ok(Device { tenant, target })
}

/// hawkBit allows controller ids up to 256 characters; keel also refuses control characters and '/'.
pub fn valid_controller_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && !id.chars().any(|c| c.is_control() || c == '/')
}
