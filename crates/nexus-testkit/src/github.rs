//! A GitHub-compatible stand-in serving the API endpoints Nexus calls, on an ephemeral port.
//!
//! Responses use GitHub's field names and status codes (`GET /user` → 200 with `login`, `id`, ...;
//! 401 with `message` and `documentation_url` for a bad token).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// A GitHub account known to the stand-in.
#[derive(Debug, Clone)]
pub struct Account {
    /// Login.
    pub login: String,
    /// Numeric id.
    pub id: i64,
}

#[derive(Default)]
struct State_ {
    tokens: HashMap<String, Account>,
}

/// The running stand-in.
pub struct FakeGithub {
    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<State_>>,
    _task: tokio::task::JoinHandle<()>,
}

fn unauthorized() -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNAUTHORIZED,
        Json(
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
        ),
    )
}

async fn user(State(state): State<Arc<Mutex<State_>>>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("token ")));
    let Some(account) = token.and_then(|t| state.lock().unwrap().tokens.get(t).cloned()) else {
        return unauthorized();
    };
    (StatusCode::OK, Json(user_json(&account)))
}

/// The `simple-user`/`private-user` fields GitHub returns for an account.
pub fn user_json(a: &Account) -> Value {
    json!({
        "login": a.login, "id": a.id, "node_id": format!("U_{}", a.id),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{}", a.id), "gravatar_id": "",
        "url": format!("https://api.github.com/users/{}", a.login), "html_url": format!("https://github.com/{}", a.login),
        "followers_url": "", "following_url": "", "gists_url": "", "starred_url": "", "subscriptions_url": "",
        "organizations_url": "", "repos_url": "", "events_url": "", "received_events_url": "",
        "type": "User", "site_admin": false, "name": a.login, "company": null, "blog": "", "location": null,
        "email": null, "hireable": null, "bio": null, "public_repos": 0, "public_gists": 0, "followers": 0,
        "following": 0, "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z"
    })
}

impl FakeGithub {
    /// Starts the stand-in on 127.0.0.1.
    pub async fn start() -> FakeGithub {
        let state = Arc::new(Mutex::new(State_::default()));
        let app = Router::new().route("/user", get(user)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGithub { url, state, _task: task }
    }

    /// Makes `token` valid for the account.
    pub fn add_token(&self, token: &str, login: &str, id: i64) {
        self.state.lock().unwrap().tokens.insert(token.into(), Account { login: login.into(), id });
    }

    /// Revokes a token.
    pub fn revoke(&self, token: &str) {
        self.state.lock().unwrap().tokens.remove(token);
    }
}
