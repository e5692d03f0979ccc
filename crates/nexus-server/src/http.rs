//! The HTTP edge: parse, authenticate, call one `App` method, turn the result into JSON.
//!
//! Routes are declared with `utoipa` so the checked-in OpenAPI document is generated from the
//! same code that serves them (see `openapi.rs`). Errors become `{error: {code, message, hint}}`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use nexus_types::api::LogoutResponse;
use nexus_types::api::{
    AuditLog, ClientConfig, CreateJoinTokenRequest, CreateWorkspaceRequest, CreateWorkspaceResponse, Deleted,
    EnrolRequest, EnrolResponse, ErrorBody, ErrorDetail, Health, JoinTokenCreated, JoinTokenList, JoinTokenView,
    NodeList, NodeRevoked, RegisterRequest, RegisterResponse, StatusChange, UserInfo, WorkspaceList, WorkspaceView,
};
use nexus_types::diagnostics::error_chain;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::{App, Caller};
use crate::error::ServerError;
use crate::installer::{Download, Installer};

type AppState = State<Arc<App>>;

/// An error on its way out as JSON.
pub(crate) struct ApiError(ServerError);

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        ApiError(e)
    }
}

fn error_response(status: StatusCode, code: &str, message: String, hint: String) -> Response {
    (status, Json(ErrorBody { error: ErrorDetail { code: code.into(), message, hint } })).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use ServerError as E;
        let message = self.0.to_string();
        let retry_after = match &self.0 {
            ServerError::TooManyRequests { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        let (status, code, hint) = match self.0 {
            E::BadRequest { code, hint, .. } => (StatusCode::BAD_REQUEST, code, hint),
            E::Unauthorized { hint, .. } => (StatusCode::UNAUTHORIZED, "unauthorized", hint),
            E::Forbidden { hint, .. } => (StatusCode::FORBIDDEN, "forbidden", hint),
            E::WorkspaceNotFound(_) => (
                StatusCode::NOT_FOUND,
                "workspace_not_found",
                "list your workspaces with `nexus workspace list`".to_string(),
            ),
            E::Conflict { code, hint, .. } => (StatusCode::CONFLICT, code, hint),
            E::RepoNotFound { hint, .. } => (StatusCode::UNPROCESSABLE_ENTITY, "repo_not_found", hint),
            E::Unavailable { code, hint, .. } => (StatusCode::SERVICE_UNAVAILABLE, code, hint),
            E::TooManyRequests { hint, .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", hint),
            E::Timeout { hint, .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout", hint),
            ref e @ E::GithubUnreachable { .. } => {
                tracing::error!(error = %error_chain(e), "GitHub API unreachable");
                (
                    StatusCode::BAD_GATEWAY,
                    "github_unreachable",
                    "retry in a minute; if it persists the operator should check `--github-api-url` and the server's network".to_string(),
                )
            }
            ref e @ (E::Store(_) | E::Task(_) | E::Io { .. }) => {
                tracing::error!(error = %error_chain(e), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "retry; if it persists the operator should read the server log".to_string(),
                )
            }
        };
        let mut resp = error_response(status, code, message, hint);
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// A JSON body whose parse errors come back in the API's error format.
struct ApiJson<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                let hint = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => "send the header `Content-Type: application/json`",
                    _ => "fix the JSON body; the API reference is `openapi/nexus.json` (also served at /api/v1/openapi.json)",
                };
                Err(error_response(StatusCode::BAD_REQUEST, "invalid_body", rejection.body_text(), hint.into()))
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// The authenticated caller of a request.
struct Auth(Caller);

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        Ok(Auth(app.authenticate(bearer(&parts.headers), peer_ip(parts)).await?))
    }
}

/// The request's peer address, for the audit log; `None` where the server was not built with
/// connect info (handlers called directly).
fn peer_ip(parts: &Parts) -> Option<std::net::IpAddr> {
    parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// The peer address of a request that needs no token (registration).
struct PeerIp(Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(peer_ip(parts)))
    }
}

/// The host name the client used, without the port; what SSH commands are printed with.
fn request_host(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    // `[::1]:3001` keeps its brackets off; `host:3001` loses the port.
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("localhost").to_string();
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h).to_string()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Nexus coordination server",
        description = "Workspaces, users and nodes. Every endpoint except `/health`, `/api/v1/client-config`, `/install.sh` and \
                       `/download/{file}` needs `Authorization: Bearer <api_token>`; `register` also accepts the operator token. \
                       Errors are `{error: {code, message, hint}}`."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, ErrorDetail))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The router and the OpenAPI document it implements.
pub(crate) fn router_and_api() -> (OpenApiRouter<Arc<App>>, utoipa::openapi::OpenApi) {
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(client_config))
        .routes(routes!(register))
        .routes(routes!(me))
        .routes(routes!(logout))
        .routes(routes!(create_workspace))
        .routes(routes!(list_workspaces))
        .routes(routes!(workspace_status))
        .routes(routes!(stop_workspace))
        .routes(routes!(start_workspace))
        .routes(routes!(delete_workspace))
        .routes(routes!(list_nodes))
        .routes(routes!(enrol_node))
        .routes(routes!(revoke_node))
        .routes(routes!(create_join_token, list_join_tokens))
        .routes(routes!(revoke_join_token))
        .routes(routes!(audit_log))
        .routes(routes!(agent_connect))
        .routes(routes!(agent_tunnel))
        .routes(routes!(install_script))
        .routes(routes!(download));
    let api = router.get_openapi().clone();
    (router, api)
}

/// The full HTTP service, serving downloads from `installer` (whose catalog `serve` builds at start).
pub(crate) fn router_with_installer(app: Arc<App>, installer: Arc<Installer>) -> Router {
    let (router, api) = router_and_api();
    let api_json = api.to_pretty_json().unwrap_or_default();
    let (router, _) = router.split_for_parts();
    router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || async move { ([(header::CONTENT_TYPE, "application/json")], api_json) }),
        )
        // Editors (VS Code's YAML extension, JetBrains) complete `.nexus/config.yaml` from this.
        .route(
            "/schemas/nexus-config.schema.json",
            axum::routing::get(|| async {
                ([(header::CONTENT_TYPE, "application/schema+json")], nexus_project::json_schema_text())
            }),
        )
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
                "see /api/v1/openapi.json for the endpoints this server has".into(),
            )
        })
        // After every route, so each request is counted under its route template (not its path:
        // workspace ids would make a series per workspace).
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), count_request))
        .layer(axum::Extension(installer))
        .with_state(app)
}

/// Counts and times each API request for `/metrics`.
async fn count_request(
    State(app): AppState,
    matched: Option<axum::extract::MatchedPath>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let route = matched.as_ref().map_or("unmatched", |m| m.as_str()).to_string();
    let method = req.method().as_str().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    app.record_request(&route, &method, resp.status().as_u16(), started.elapsed());
    resp
}

/// Readiness: the database answers and at least one node is responsive (503 with the reasons
/// otherwise). For load balancers and `systemd`'s start-up check; `/health` is liveness.
#[utoipa::path(get, path = "/ready", responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn ready(State(app): AppState) -> Response {
    match app.readiness().await {
        Ok(()) => Json(Health { status: "ready".into(), version: env!("CARGO_PKG_VERSION").into() }).into_response(),
        Err(problems) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            problems.join("; "),
            "start a node agent (`nexus agent`) or check the server's data dir; `nexus node list` shows the nodes"
                .into(),
        ),
    }
}

/// Prometheus metrics (OpenMetrics text): API requests and latency by route, create→running and
/// create→services-ready histograms, workspaces and nodes by status, SSH ports used. No user data.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "OpenMetrics text exposition", content_type = "application/openmetrics-text", body = String)))]
async fn metrics(State(app): AppState) -> Result<Response, ApiError> {
    let text = app.metrics_text().await?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

/// Liveness.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// Where to sign in to GitHub: what `nexus auth github` asks before the user has a token.
#[utoipa::path(get, path = "/api/v1/client-config", responses((status = 200, body = ClientConfig)))]
async fn client_config(State(app): AppState) -> Json<ClientConfig> {
    Json(app.client_config())
}

/// Registers a user (GitHub login + SSH public key) and returns a new API token.
#[utoipa::path(post, path = "/api/v1/users/register", request_body = RegisterRequest,
    responses((status = 201, body = RegisterResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "the operator's allow-list does not admit the user", body = ErrorBody),
        (status = 409, description = "`login_taken` by another GitHub id, or `key_change_needs_token`: the login is registered and the request carries no API token of that user", body = ErrorBody),
        (status = 502, body = ErrorBody),
        (status = 503, description = "`github_app_credentials`: GitHub refused the server's OAuth app credentials", body = ErrorBody)))]
async fn register(
    State(app): AppState,
    headers: HeaderMap,
    PeerIp(source): PeerIp,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    Ok((StatusCode::CREATED, Json(app.register(bearer(&headers), source, req).await?)))
}

/// Revokes the calling API token (`nexus auth logout`); it never authenticates again.
#[utoipa::path(post, path = "/api/v1/auth/logout", security(("bearer" = [])),
    responses((status = 200, body = LogoutResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn logout(
    State(app): AppState,
    headers: HeaderMap,
    Auth(caller): Auth,
) -> Result<Json<LogoutResponse>, ApiError> {
    Ok(Json(app.logout(&caller, bearer(&headers)).await?))
}

/// The user the token belongs to.
#[utoipa::path(get, path = "/api/v1/users/me", security(("bearer" = [])),
    responses((status = 200, body = UserInfo), (status = 401, body = ErrorBody)))]
async fn me(State(app): AppState, Auth(caller): Auth) -> Result<Json<UserInfo>, ApiError> {
    Ok(Json(app.me(&caller)?))
}

/// Creates a workspace (idempotent per user and name).
#[utoipa::path(post, path = "/api/v1/workspaces/create", request_body = CreateWorkspaceRequest, security(("bearer" = [])),
    responses((status = 201, description = "created", body = CreateWorkspaceResponse), (status = 200, description = "already existed", body = CreateWorkspaceResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, description = "too many creates; `Retry-After` says when", body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_workspace(
    State(app): AppState,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<CreateWorkspaceRequest>,
) -> Result<(StatusCode, Json<CreateWorkspaceResponse>), ApiError> {
    let resp = app.create(&caller, req).await?;
    let status = if resp.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(resp)))
}

/// The caller's workspaces.
#[utoipa::path(get, path = "/api/v1/workspaces", security(("bearer" = [])),
    responses((status = 200, body = WorkspaceList), (status = 401, body = ErrorBody)))]
async fn list_workspaces(
    State(app): AppState,
    Auth(caller): Auth,
    headers: HeaderMap,
) -> Result<Json<WorkspaceList>, ApiError> {
    Ok(Json(app.list(&caller, &request_host(&headers)).await?))
}

/// Status, SSH access, services and repo of one workspace.
#[utoipa::path(get, path = "/api/v1/workspaces/{id}/status", security(("bearer" = [])), params(("id" = String, Path, description = "workspace id (`ws-...`)")),
    responses((status = 200, body = WorkspaceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn workspace_status(
    State(app): AppState,
    Auth(caller): Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceView>, ApiError> {
    Ok(Json(app.view(&caller, &id, &request_host(&headers)).await?))
}

/// Stops a workspace; waits for the node. Idempotent.
#[utoipa::path(post, path = "/api/v1/workspaces/{id}/stop", security(("bearer" = [])), params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = StatusChange), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn stop_workspace(
    State(app): AppState,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<StatusChange>, ApiError> {
    Ok(Json(app.stop(&caller, &id).await?))
}

/// Starts a stopped workspace (or retries a failed one); waits until it runs or fails. Idempotent.
#[utoipa::path(post, path = "/api/v1/workspaces/{id}/start", security(("bearer" = [])), params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = StatusChange), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn start_workspace(
    State(app): AppState,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<StatusChange>, ApiError> {
    Ok(Json(app.start(&caller, &id).await?))
}

/// Deletes a workspace: container, disk and SSH port.
#[utoipa::path(delete, path = "/api/v1/workspaces/{id}", security(("bearer" = [])), params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = Deleted), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_workspace(
    State(app): AppState,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    Ok(Json(app.delete(&caller, &id).await?))
}

/// Driver nodes and their liveness (operator token only).
#[utoipa::path(get, path = "/api/v1/nodes", security(("bearer" = [])),
    responses((status = 200, body = NodeList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_nodes(State(app): AppState, Auth(caller): Auth) -> Result<Json<NodeList>, ApiError> {
    Ok(Json(app.nodes(&caller).await?))
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
struct AuditQuery {
    /// Newest entries to return (1-1000, default 100).
    limit: Option<u32>,
    /// Only this action (`workspace.delete`) or group (`workspace`).
    action: Option<String>,
}

/// The audit log, newest entries oldest first (operator token only).
#[utoipa::path(get, path = "/api/v1/audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditLog), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn audit_log(
    State(app): AppState,
    Auth(caller): Auth,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    Ok(Json(app.audit_log(&caller, q.limit, q.action).await?))
}

/// The one-line installer, with this server (as the client reached it) as its default `--server`.
#[utoipa::path(get, path = "/install.sh",
    responses((status = 200, description = "bash script: `curl -fsSL https://<server>:3001/install.sh | bash -s -- --repo <owner/repo>`; `--help` lists its flags (plain http only to this machine, or with `--insecure`)",
        content_type = "text/x-shellscript", body = String)))]
async fn install_script(headers: HeaderMap) -> Response {
    let text = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
    let url =
        crate::installer::served_from(text(header::HOST), text(header::HeaderName::from_static("x-forwarded-proto")));
    let script = crate::installer::render_script(url.as_deref(), env!("CARGO_PKG_VERSION"));
    // The script depends on the Host it was asked for, so shared caches must not reuse it.
    ([(header::CONTENT_TYPE, "text/x-shellscript"), (header::CACHE_CONTROL, "no-store")], script).into_response()
}

/// The nexus CLI for a platform, or its checksum; what `/install.sh` downloads. No token needed.
#[utoipa::path(get, path = "/download/{file}",
    params(("file" = String, Path, description = "`nexus-<os>-<arch>` (the binary) or `nexus-<os>-<arch>.sha256` (its checksum, \
        `sha256sum` format); os is `linux` or `darwin`, arch is `amd64` or `arm64`")),
    responses((status = 200, description = "the binary, or `<hex>  nexus-<os>-<arch>` and a newline",
            content(("application/octet-stream"), ("text/plain"))),
        (status = 404, description = "this server has no binary for that platform", body = ErrorBody)))]
async fn download(
    axum::Extension(installer): axum::Extension<Arc<Installer>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let catalog = installer.catalog().await?;
    let hint = |platforms: &str| {
        format!(
            "this server has: {platforms}. The operator can add other platforms' builds with `nexus server --binaries-dir DIR` \
             (files named `nexus-<os>-<arch>`)"
        )
    };
    let Some(wanted) = Download::parse(&file) else {
        return Ok(error_response(
            StatusCode::NOT_FOUND,
            "binary_not_found",
            format!(
                "no download named {file:?}: downloads are `nexus-<os>-<arch>` and `nexus-<os>-<arch>.sha256` \
                 for os linux or darwin and arch amd64 or arm64"
            ),
            hint(&catalog.platforms()),
        ));
    };
    let platform = match wanted {
        Download::Binary(p) | Download::Checksum(p) => p,
    };
    let Some(binary) = catalog.get(platform) else {
        return Ok(error_response(
            StatusCode::NOT_FOUND,
            "binary_not_found",
            format!("this server has no nexus CLI for {platform}"),
            hint(&catalog.platforms()),
        ));
    };
    if let Download::Checksum(_) = wanted {
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], binary.checksum_line()).into_response());
    }
    let io = |source| ServerError::Io { path: binary.source.clone(), source };
    let file = tokio::fs::File::open(&binary.path).await.map_err(io)?;
    let len = file.metadata().await.map_err(io)?.len();
    if len != binary.len {
        tracing::error!(file = %binary.source, was = binary.len, now = len, "a served binary changed on disk");
        return Ok(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "binary_changed",
            format!("{} changed on disk after the server computed its checksum", binary.platform.file_name()),
            "the operator should restart the server so it checksums the new file".into(),
        ));
    }
    // Streamed in chunks: binaries are tens of MB and several installs may run at once.
    let reader = tokio::io::AsyncReadExt::take(file, len);
    let stream = futures_util::stream::try_unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let n = tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((axum::body::Bytes::from(buf), reader)))
    });
    let disposition = format!("attachment; filename=\"{}\"", binary.platform.file_name());
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// Enrols a node (a join token as bearer): binds the name to a new credential, shown once.
#[utoipa::path(post, path = "/api/v1/nodes/enrol", request_body = EnrolRequest, security(("bearer" = [])),
    responses((status = 201, body = EnrolResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn enrol_node(
    State(app): AppState,
    headers: HeaderMap,
    PeerIp(source): PeerIp,
    ApiJson(req): ApiJson<EnrolRequest>,
) -> Result<(StatusCode, Json<EnrolResponse>), ApiError> {
    Ok((StatusCode::CREATED, Json(app.enrol(bearer(&headers), source, req).await?)))
}

/// Revokes a node's credential and closes its connection (operator token only).
#[utoipa::path(post, path = "/api/v1/nodes/{name}/revoke", security(("bearer" = [])), params(("name" = String, Path, description = "node name")),
    responses((status = 200, body = NodeRevoked), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn revoke_node(
    State(app): AppState,
    Auth(caller): Auth,
    Path(name): Path<String>,
) -> Result<Json<NodeRevoked>, ApiError> {
    Ok(Json(app.revoke_node(&caller, &name).await?))
}

/// Makes a join token, optionally single-use; shown once (operator token only).
#[utoipa::path(post, path = "/api/v1/join-tokens", request_body = CreateJoinTokenRequest, security(("bearer" = [])),
    responses((status = 201, body = JoinTokenCreated), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_join_token(
    State(app): AppState,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<CreateJoinTokenRequest>,
) -> Result<(StatusCode, Json<JoinTokenCreated>), ApiError> {
    Ok((StatusCode::CREATED, Json(app.create_join_token(&caller, req).await?)))
}

/// Join tokens, without the tokens (operator token only).
#[utoipa::path(get, path = "/api/v1/join-tokens", security(("bearer" = [])),
    responses((status = 200, body = JoinTokenList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_join_tokens(State(app): AppState, Auth(caller): Auth) -> Result<Json<JoinTokenList>, ApiError> {
    Ok(Json(app.join_tokens(&caller).await?))
}

/// Revokes a join token; `default` is `<data-dir>/join-token` (operator token only).
#[utoipa::path(post, path = "/api/v1/join-tokens/{id}/revoke", security(("bearer" = [])), params(("id" = String, Path, description = "`default` or `jt-...`")),
    responses((status = 200, body = JoinTokenView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn revoke_join_token(
    State(app): AppState,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<JoinTokenView>, ApiError> {
    Ok(Json(app.revoke_join_token(&caller, &id).await?))
}

fn credential_error() -> Response {
    error_response(
        StatusCode::UNAUTHORIZED,
        "node_unauthorized",
        "the node credential is missing, unknown or revoked (a join token only enrols)".into(),
        "an agent enrols itself with a join token and keeps its credential in `--state-dir`; if the operator \
         revoked this node, remove its credential file and have the operator hand out a join token again"
            .into(),
    )
}

/// The node a request's credential belongs to, or the response refusing it.
async fn node_of(app: &App, headers: &HeaderMap) -> Result<String, Response> {
    match app.node_for_credential(bearer(headers)).await {
        Ok(Some(node)) => Ok(node),
        Ok(None) => Err(credential_error()),
        Err(e) => Err(ApiError(e).into_response()),
    }
}

/// Node agents' control WebSocket (the node's credential as bearer). Protocol: `nexus_types::protocol`.
#[utoipa::path(get, path = "/api/v1/agent/connect", security(("bearer" = [])),
    responses((status = 101, description = "WebSocket upgrade"), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn agent_connect(State(app): AppState, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    let node = match node_of(&app, &headers).await {
        Ok(node) => node,
        Err(refusal) => return refusal,
    };
    if app.node_is_connected(&node) {
        tracing::warn!(%node, "a second connection for a connected node was refused");
        return error_response(
            StatusCode::CONFLICT,
            "node_connected",
            format!("node {node} is already connected"),
            "only one agent per node: stop the other `nexus agent` with this node's credential (it retries \
             on its own once the live connection is gone)"
                .into(),
        );
    }
    upgrade.on_upgrade(move |socket| crate::agent_session::run(app, socket, node))
}

/// A tunnel WebSocket an agent dials back to carry one forwarded TCP connection.
#[utoipa::path(get, path = "/api/v1/agent/tunnel/{tunnel_id}", security(("bearer" = [])), params(("tunnel_id" = String, Path, description = "id from the OpenTunnel message")),
    responses((status = 101, description = "WebSocket upgrade"), (status = 401, body = ErrorBody)))]
async fn agent_tunnel(
    State(app): AppState,
    headers: HeaderMap,
    Path(tunnel_id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let node = match node_of(&app, &headers).await {
        Ok(node) => node,
        Err(refusal) => return refusal,
    };
    if !app.tunnel_expected(&tunnel_id, &node) {
        tracing::warn!(%node, %tunnel_id, "a tunnel this node was not asked for was refused");
        return error_response(
            StatusCode::NOT_FOUND,
            "tunnel_not_found",
            "no tunnel with this id waits for this node".into(),
            "tunnels are answered only by the node they were asked of, within 10 s".into(),
        );
    }
    upgrade.on_upgrade(move |socket| async move {
        if !app.tunnel_arrived(&tunnel_id, &node, socket) {
            tracing::debug!(%tunnel_id, "tunnel nobody waits for");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "staging.example.com:3001".parse().unwrap());
        assert_eq!(request_host(&h), "staging.example.com");
        h.insert(header::HOST, "[::1]:3001".parse().unwrap());
        assert_eq!(request_host(&h), "::1");
        h.insert(header::HOST, "example.com".parse().unwrap());
        assert_eq!(request_host(&h), "example.com");
    }
}
