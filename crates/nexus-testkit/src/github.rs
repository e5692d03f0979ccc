//! A GitHub-compatible test server on one ephemeral port, laid out like GitHub Enterprise:
//! the OAuth device flow under `<web_url>/login/...`, the REST API under `<web_url>/api/v3/...`
//! and git smart-HTTP hosting at `<web_url>/<owner>/<repo>.git`.
//!
//! Why: GitHub cannot be reached from tests, and Nexus signs users in, uploads SSH keys, forks,
//! clones, pushes and opens pull requests. This stand-in does all of that for real (repositories
//! are bare git repositories served by `git http-backend`), and every API request and response is
//! checked against GitHub's official OpenAPI description ([`crate::github_openapi`]), so the stand-in
//! and the clients tested against it cannot drift from the real API unnoticed: tests end with
//! [`FakeGithub::assert_conformant`].
//!
//! Behaviour follows GitHub's documentation where it is cheap: `Bad credentials` 401s, 404 (not
//! 403) for private repositories the caller cannot see, 404 from `POST /user/keys` when the token
//! lacks the `admin:public_key`/`write:public_key` scope (GitHub hides endpoints a token's scopes
//! do not cover; `X-Accepted-OAuth-Scopes` names the scopes that would), 422 `Validation Failed`
//! with GitHub's messages (`key is already in use`, `field: head, code: invalid`), forks that are
//! created asynchronously (202, then 404 until they exist), and the device flow's 200 answers
//! carrying `error` (`authorization_pending`, `slow_down`, `expired_token`, `access_denied`).
//!
//! Every token belongs to an OAuth app (the device flow's `client_id`, or
//! [`crate::process::TEST_CLIENT_ID`] for [`FakeGithub::add_token`]); `POST /applications/{client_id}/token`
//! answers 200 only for that app, given its secret ([`FakeGithub::add_oauth_app`]) by Basic auth.
//! Organization memberships ([`FakeGithub::add_org_member`]) are visible to tokens with `read:org`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use serde_json::{json, Value};

use crate::git_http::{self, GitAccess};
use crate::github_openapi;

/// The API version the stand-in answers with (`X-GitHub-Api-Version`).
pub const API_VERSION: &str = "2022-11-28";

/// Scopes of tokens made with [`FakeGithub::add_token`].
pub const DEFAULT_SCOPES: &[&str] = &["admin:public_key", "read:org", "repo"];

const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
const DOCS: &str = "https://docs.github.com/rest";
const DOC_USER: &str = "https://docs.github.com/rest/users/users#get-the-authenticated-user";
const DOC_KEYS_LIST: &str = "https://docs.github.com/rest/users/keys#list-public-ssh-keys-for-the-authenticated-user";
const DOC_KEYS_CREATE: &str =
    "https://docs.github.com/rest/users/keys#create-a-public-ssh-key-for-the-authenticated-user";
const DOC_REPO: &str = "https://docs.github.com/rest/repos/repos#get-a-repository";
const DOC_FORK: &str = "https://docs.github.com/rest/repos/forks#create-a-fork";
const DOC_PULLS_CREATE: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";
const DOC_PULLS_LIST: &str = "https://docs.github.com/rest/pulls/pulls#list-pull-requests";
const DOC_MEMBERSHIP: &str =
    "https://docs.github.com/rest/orgs/members#get-an-organization-membership-for-the-authenticated-user";
const DOC_APP_TOKEN: &str = "https://docs.github.com/rest/apps/oauth-applications#check-a-token";
const DOC_DEVICE_ERRORS: &str =
    "https://docs.github.com/developers/apps/authorizing-oauth-apps#error-codes-for-the-device-flow";
const SLOW_DOWN: &str = "Too many requests have been made in the same timeframe.";
const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The API routes the stand-in serves, with every status it can answer (besides those GitHub
/// answers on any endpoint). A unit test checks each against GitHub's description.
pub const API_ROUTES: &[(&str, &str, &[u16])] = &[
    ("GET", "/user", &[200, 401]),
    ("GET", "/user/keys", &[200, 401, 404]),
    ("POST", "/user/keys", &[201, 401, 404, 422]),
    ("GET", "/repos/{owner}/{repo}", &[200, 404]),
    ("POST", "/repos/{owner}/{repo}/forks", &[202, 401, 404, 422]),
    ("POST", "/repos/{owner}/{repo}/pulls", &[201, 401, 404, 422]),
    ("GET", "/repos/{owner}/{repo}/pulls", &[200, 404]),
    ("GET", "/user/memberships/orgs/{org}", &[200, 404]),
    ("POST", "/applications/{client_id}/token", &[200, 401, 404, 422]),
];

/// A GitHub account known to the stand-in.
#[derive(Debug, Clone)]
pub struct Account {
    /// Login.
    pub login: String,
    /// Numeric id.
    pub id: i64,
}

/// An SSH key on an account, as uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// GitHub's key id.
    pub id: i64,
    /// Title given at upload.
    pub title: String,
    /// `type base64` (GitHub drops the comment).
    pub key: String,
}

/// A pull request opened on the stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// Number within the base repository.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body text.
    pub body: Option<String>,
    /// Login that opened it.
    pub author: String,
    /// Owner of the head repository.
    pub head_owner: String,
    /// Head branch.
    pub head_ref: String,
    /// Head commit when opened.
    pub head_sha: String,
    /// Base branch.
    pub base_ref: String,
    /// `open` or `closed`.
    pub state: String,
}

/// One request the stand-in answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query as sent, e.g. `/api/v3/repos/acme/hello`.
    pub target: String,
    /// Status answered.
    pub status: u16,
    /// Login of the token used, if any and valid.
    pub login: Option<String>,
}

#[derive(Debug, Clone)]
struct TokenInfo {
    login: String,
    scopes: Vec<String>,
    /// The OAuth app it was issued to.
    client_id: String,
}

#[derive(Debug, Clone)]
struct Repo {
    owner: String,
    name: String,
    id: i64,
    private: bool,
    /// `(owner, name)` keys of the parent and the network's root, for forks.
    parent: Option<(String, String)>,
    source: Option<(String, String)>,
    collaborators: HashSet<String>,
    /// `GET /repos/...` answers 404 this many more times (a fork still being created).
    hidden_gets: u32,
    created_at: String,
}

#[derive(Debug, Clone)]
struct PullRec {
    base_key: (String, String),
    head_key: (String, String),
    id: i64,
    pull: PullRequest,
    created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GrantState {
    Pending,
    Approved(String),
    Denied,
    Redeemed,
}

#[derive(Debug, Clone)]
struct DeviceGrant {
    client_id: String,
    device_code: String,
    user_code: String,
    scope: String,
    interval: u64,
    expires_at: Instant,
    last_poll: Option<Instant>,
    state: GrantState,
}

#[derive(Debug)]
struct Failure {
    method: String,
    path_prefix: String,
    remaining: u32,
    status: u16,
}

struct St {
    accounts: BTreeMap<String, i64>,
    tokens: HashMap<String, TokenInfo>,
    repos: BTreeMap<(String, String), Repo>,
    keys: Vec<(String, PublicKey, String)>,
    pulls: Vec<PullRec>,
    grants: Vec<DeviceGrant>,
    device_interval: u64,
    device_expires_in: u64,
    slow_down_next: u32,
    fork_hidden_gets: u32,
    refuse_keys: bool,
    failures: Vec<Failure>,
    /// OAuth apps' client id → secret.
    apps: HashMap<String, String>,
    /// (org, login, state) with org and login lower case; state `active` or `pending`.
    members: Vec<(String, String, String)>,
    requests: Vec<RecordedRequest>,
    violations: Vec<String>,
    next_id: i64,
    rng: u64,
}

impl St {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: unpredictable enough for test tokens, no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn random_string(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| alphabet[(self.random() % alphabet.len() as u64) as usize] as char).collect()
    }

    fn account_id(&mut self, login: &str) -> i64 {
        if let Some(id) = self.accounts.get(login) {
            return *id;
        }
        let id = self.id();
        self.accounts.insert(login.to_string(), id);
        id
    }

    fn new_token(&mut self, login: &str, scopes: Vec<String>, client_id: &str) -> String {
        let token = format!(
            "gho_{}",
            self.random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 36)
        );
        self.tokens
            .insert(token.clone(), TokenInfo { login: login.to_string(), scopes, client_id: client_id.to_string() });
        token
    }

    /// The repository, unless it is a fork still being created.
    fn visible_repo(&self, owner: &str, name: &str) -> Option<&Repo> {
        self.repos.get(&key(owner, name)).filter(|r| r.hidden_gets == 0)
    }
}

fn key(owner: &str, name: &str) -> (String, String) {
    (owner.to_ascii_lowercase(), name.to_ascii_lowercase())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Owner,
    Collaborator,
    Other,
}

fn role(repo: &Repo, login: Option<&str>) -> Role {
    match login {
        Some(l) if l.eq_ignore_ascii_case(&repo.owner) => Role::Owner,
        Some(l) if repo.collaborators.contains(&l.to_ascii_lowercase()) => Role::Collaborator,
        _ => Role::Other,
    }
}

fn can_read(repo: &Repo, login: Option<&str>) -> bool {
    !repo.private || role(repo, login) != Role::Other
}

fn can_push(repo: &Repo, login: Option<&str>) -> bool {
    role(repo, login) != Role::Other
}

struct Shared {
    st: Mutex<St>,
    root: tempfile::TempDir,
    web_url: String,
    api_url: String,
    host: String,
}

impl Shared {
    fn bare_path(&self, owner: &str, name: &str) -> PathBuf {
        let (o, n) = key(owner, name);
        self.root.path().join(o).join(format!("{n}.git"))
    }
}

/// The running stand-in. Dropping it stops the server.
pub struct FakeGithub {
    /// Web and OAuth base, `http://IP:PORT` (no trailing slash).
    pub web_url: String,
    /// REST API base, `web_url + "/api/v3"`: what Nexus is configured with as the GitHub API.
    pub api_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// RFC 3339 UTC time for `secs` since the epoch.
fn iso_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn now_iso() -> String {
    iso_time(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64))
}

/// `a=1&b=x%20y` → pairs (form bodies and query strings).
fn parse_urlencoded(s: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                },
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn urlencode(pairs: &[(&str, String)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// The `simple-user` fields GitHub returns for an account, with URLs under `web`/`api`.
fn simple_user(login: &str, id: i64, web: &str, api: &str) -> Value {
    let u = format!("{api}/users/{login}");
    json!({
        "login": login, "id": id, "node_id": format!("U_kgDO{id:08}"),
        "avatar_url": format!("{web}/avatars/u/{id}"), "gravatar_id": "",
        "url": u, "html_url": format!("{web}/{login}"),
        "followers_url": format!("{u}/followers"), "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"), "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"), "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"), "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"), "type": "User", "user_view_type": "public",
        "site_admin": false
    })
}

fn private_user(a: &Account, web: &str, api: &str) -> Value {
    let mut v = simple_user(&a.login, a.id, web, api);
    let extra = json!({
        "user_view_type": "private", "name": a.login, "company": null, "blog": "", "location": null,
        "email": null, "notification_email": null, "hireable": null, "bio": null, "twitter_username": null,
        "public_repos": 0, "public_gists": 0, "followers": 0, "following": 0,
        "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z",
        "private_gists": 0, "total_private_repos": 0, "owned_private_repos": 0, "disk_usage": 0,
        "collaborators": 0, "two_factor_authentication": false,
        "plan": {"name": "free", "space": 976_562_499, "collaborators": 0, "private_repos": 10_000}
    });
    v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    v
}

/// The `private-user` object `GET /user` returns for an account (URLs as on github.com).
pub fn user_json(a: &Account) -> Value {
    private_user(a, "https://github.com", "https://api.github.com")
}

/// An API answer before serialization.
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply { status, body: Some(body), headers: vec![] }
    }

    fn error(status: u16, message: &str, doc: &str) -> Reply {
        Reply::json(status, json!({"message": message, "documentation_url": doc, "status": status.to_string()}))
    }

    fn validation(doc: &str, errors: Value) -> Reply {
        Reply::json(
            422,
            json!({"message": "Validation Failed", "errors": errors, "documentation_url": doc, "status": "422"}),
        )
    }

    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

enum Caller {
    Anonymous,
    User(TokenInfo),
    /// An OAuth app authenticated with its client id and secret (Basic auth).
    App(String),
    BadToken,
}

impl Caller {
    fn login(&self) -> Option<&str> {
        match self {
            Caller::User(t) => Some(&t.login),
            _ => None,
        }
    }
}

/// `Authorization: Basic base64(client_id:secret)`, decoded.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn org_json(org: &str, id: i64, web: &str, api: &str) -> Value {
    let u = format!("{api}/orgs/{org}");
    json!({
        "login": org, "id": id, "node_id": format!("O_kgDO{id:08}"), "url": u,
        "repos_url": format!("{u}/repos"), "events_url": format!("{u}/events"), "hooks_url": format!("{u}/hooks"),
        "issues_url": format!("{u}/issues"), "members_url": format!("{u}/members{{/member}}"),
        "public_members_url": format!("{u}/public_members{{/member}}"),
        "avatar_url": format!("{web}/avatars/o/{id}"), "description": null
    })
}

fn api_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")).then(|| token.trim().to_string())
}

fn repo_json(shared: &Shared, st: &St, repo: &Repo, viewer: Option<&str>, full: bool) -> Value {
    let (web, api) = (&shared.web_url, &shared.api_url);
    let full_name = format!("{}/{}", repo.owner, repo.name);
    let url = format!("{api}/repos/{full_name}");
    let owner_id = st.accounts.get(&repo.owner).copied().unwrap_or(0);
    let forks = st.repos.values().filter(|r| r.parent.as_ref() == Some(&key(&repo.owner, &repo.name))).count();
    let mut v = json!({
        "id": repo.id, "node_id": format!("R_kgDO{:08}", repo.id), "name": repo.name, "full_name": full_name,
        "private": repo.private, "owner": simple_user(&repo.owner, owner_id, web, api),
        "html_url": format!("{web}/{full_name}"), "description": null, "fork": repo.parent.is_some(), "url": url,
        "clone_url": format!("{web}/{full_name}.git"), "git_url": format!("git://{}/{full_name}.git", shared.host),
        "ssh_url": format!("git@{}:{full_name}.git", shared.host.split(':').next().unwrap_or("")),
        "svn_url": format!("{web}/{full_name}"), "mirror_url": null, "homepage": null, "language": null
    });
    // Split in two: one `json!` this size exceeds the macro recursion limit.
    let counts = json!({
        "forks": forks, "forks_count": forks, "stargazers_count": 0, "watchers_count": 0, "watchers": 0,
        "size": 1, "default_branch": "main", "open_issues_count": 0, "open_issues": 0, "is_template": false,
        "topics": [], "has_issues": true, "has_projects": true, "has_wiki": true, "has_pages": false,
        "has_downloads": true, "has_discussions": false, "archived": false, "disabled": false,
        "visibility": if repo.private { "private" } else { "public" }, "pushed_at": repo.created_at,
        "created_at": repo.created_at, "updated_at": repo.created_at, "allow_forking": true,
        "web_commit_signoff_required": false, "license": null
    });
    let obj = v.as_object_mut().unwrap();
    obj.extend(counts.as_object().unwrap().clone());
    for (field, suffix) in [
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        ("notifications_url", "/notifications{?since,all,participating}"),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
    ] {
        obj.insert(field.into(), Value::String(format!("{url}{suffix}")));
    }
    if let Some(login) = viewer {
        let r = role(repo, Some(login));
        let (admin, push) = (r == Role::Owner, r != Role::Other);
        obj.insert(
            "permissions".into(),
            json!({"admin": admin, "maintain": admin, "push": push, "triage": push, "pull": can_read(repo, Some(login))}),
        );
    }
    if full {
        obj.insert("network_count".into(), json!(forks));
        obj.insert("subscribers_count".into(), json!(0));
        for (field, k) in [("parent", &repo.parent), ("source", &repo.source)] {
            if let Some(r) = k.as_ref().and_then(|k| st.repos.get(k)) {
                obj.insert(field.into(), repo_json(shared, st, r, viewer, false));
            }
        }
    }
    v
}

fn key_json(api: &str, k: &PublicKey, created_at: &str) -> Value {
    json!({"id": k.id, "key": k.key, "url": format!("{api}/user/keys/{}", k.id), "title": k.title,
           "created_at": created_at, "verified": true, "read_only": false, "last_used": null})
}

fn pull_json(shared: &Shared, st: &St, p: &PullRec, viewer: Option<&str>) -> Value {
    let (web, api) = (&shared.web_url, &shared.api_url);
    let base_repo = &st.repos[&p.base_key];
    let full_name = format!("{}/{}", base_repo.owner, base_repo.name);
    let n = p.pull.number;
    let url = format!("{api}/repos/{full_name}/pulls/{n}");
    let html = format!("{web}/{full_name}/pull/{n}");
    let issue = format!("{api}/repos/{full_name}/issues/{n}");
    let author_id = st.accounts.get(&p.pull.author).copied().unwrap_or(0);
    let author = simple_user(&p.pull.author, author_id, web, api);
    let head_repo = st.repos.get(&p.head_key);
    let side = |owner: &str, r: Option<&Repo>, ref_: &str, sha: &str| {
        let owner_id = st.accounts.get(owner).copied().unwrap_or(0);
        json!({
            "label": format!("{owner}:{ref_}"), "ref": ref_, "sha": sha,
            "user": simple_user(owner, owner_id, web, api),
            "repo": r.map(|r| repo_json(shared, st, r, viewer, false)),
        })
    };
    let base_sha = git_rev(&shared.bare_path(&base_repo.owner, &base_repo.name), &p.pull.base_ref).unwrap_or_default();
    let link = |href: String| json!({"href": href});
    let association = match role(base_repo, Some(&p.pull.author)) {
        Role::Owner => "OWNER",
        Role::Collaborator => "COLLABORATOR",
        Role::Other => "CONTRIBUTOR",
    };
    let links = json!({
        "self": link(url.clone()), "html": link(html.clone()), "issue": link(issue.clone()),
        "comments": link(format!("{issue}/comments")), "review_comments": link(format!("{url}/comments")),
        "review_comment": link(format!("{api}/repos/{full_name}/pulls/comments{{/number}}")),
        "commits": link(format!("{url}/commits")),
        "statuses": link(format!("{api}/repos/{full_name}/statuses/{}", p.pull.head_sha)),
    });
    let state = json!({
        "author_association": association, "auto_merge": null, "draft": false,
        "merged": false, "mergeable": null, "rebaseable": null, "mergeable_state": "unknown", "merged_by": null,
        "comments": 0, "review_comments": 0, "maintainer_can_modify": false, "commits": 1, "additions": 0,
        "deletions": 0, "changed_files": 0
    });
    let mut v = json!({
        "url": url, "id": p.id, "node_id": format!("PR_kwDO{:08}", p.id), "html_url": html,
        "diff_url": format!("{html}.diff"), "patch_url": format!("{html}.patch"), "issue_url": issue,
        "commits_url": format!("{url}/commits"), "review_comments_url": format!("{url}/comments"),
        "review_comment_url": format!("{api}/repos/{full_name}/pulls/comments{{/number}}"),
        "comments_url": format!("{issue}/comments"),
        "statuses_url": format!("{api}/repos/{full_name}/statuses/{}", p.pull.head_sha),
        "number": n, "state": p.pull.state, "locked": false, "title": p.pull.title, "user": author,
        "body": p.pull.body, "labels": [], "milestone": null, "active_lock_reason": null,
        "created_at": p.created_at, "updated_at": p.created_at, "closed_at": null, "merged_at": null,
        "merge_commit_sha": null, "assignee": null, "assignees": [], "requested_reviewers": [],
        "requested_teams": [],
        "head": side(&p.pull.head_owner, head_repo, &p.pull.head_ref, &p.pull.head_sha),
        "base": side(&base_repo.owner, Some(base_repo), &p.pull.base_ref, &base_sha),
        "_links": links,
    });
    v.as_object_mut().unwrap().extend(state.as_object().unwrap().clone());
    v
}

/// The commit `refs/heads/<branch>` points at in a bare repository.
fn git_rev(bare: &Path, branch: &str) -> Option<String> {
    if branch.is_empty() || branch.contains("..") || branch.starts_with('-') {
        return None;
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}^{{commit}}")])
        .current_dir(bare)
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn git_rev_async(bare: PathBuf, branch: String) -> Option<String> {
    tokio::task::spawn_blocking(move || git_rev(&bare, &branch)).await.ok().flatten()
}

fn requires_auth(doc: &str) -> Reply {
    Reply::error(401, "Requires authentication", doc)
}

fn key_scopes_ok(t: &TokenInfo, write: bool) -> bool {
    let ok: &[&str] = if write {
        &["admin:public_key", "write:public_key"]
    } else {
        &["admin:public_key", "write:public_key", "read:public_key"]
    };
    t.scopes.iter().any(|s| ok.contains(&s.as_str()))
}

async fn route(shared: &Shared, method: &str, path: &str, query: &str, body: &[u8], caller: &Caller) -> Reply {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let login = caller.login();
    let json_body = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    match (method, segs.as_slice()) {
        ("GET", ["user"]) => {
            let Caller::User(t) = caller else { return requires_auth(DOC_USER) };
            let id = shared.st.lock().unwrap().account_id(&t.login);
            Reply::json(200, private_user(&Account { login: t.login.clone(), id }, &shared.web_url, &shared.api_url))
        }
        ("GET", ["user", "keys"]) => {
            let Caller::User(t) = caller else { return requires_auth(DOC_KEYS_LIST) };
            if !key_scopes_ok(t, false) {
                return Reply::error(404, "Not Found", DOC_KEYS_LIST)
                    .with_header("x-accepted-oauth-scopes", "admin:public_key, read:public_key, write:public_key");
            }
            let st = shared.st.lock().unwrap();
            let keys: Vec<Value> = st
                .keys
                .iter()
                .filter(|(owner, _, _)| owner == &t.login)
                .map(|(_, k, at)| key_json(&shared.api_url, k, at))
                .collect();
            Reply::json(200, Value::Array(keys))
        }
        ("POST", ["user", "keys"]) => {
            let Caller::User(t) = caller else { return requires_auth(DOC_KEYS_CREATE) };
            let mut st = shared.st.lock().unwrap();
            if st.refuse_keys || !key_scopes_ok(t, true) {
                return Reply::error(404, "Not Found", DOC_KEYS_CREATE)
                    .with_header("x-accepted-oauth-scopes", "admin:public_key, write:public_key");
            }
            let req = json_body();
            let raw = req.get("key").and_then(Value::as_str).unwrap_or("").trim();
            let parts: Vec<&str> = raw.split_whitespace().collect();
            let known_type = parts.first().is_some_and(|t| {
                t.starts_with("ssh-rsa") || *t == "ssh-ed25519" || *t == "ssh-dss" || t.starts_with("ecdsa-sha2-nistp")
            });
            if parts.len() < 2 || !known_type {
                return Reply::validation(
                    DOC_KEYS_CREATE,
                    json!([{"resource": "PublicKey", "code": "custom", "field": "key",
                            "message": "key is invalid. You must supply a key in OpenSSH public key format"}]),
                );
            }
            let normalized = format!("{} {}", parts[0], parts[1]);
            if st.keys.iter().any(|(_, k, _)| k.key == normalized) {
                return Reply::validation(
                    DOC_KEYS_CREATE,
                    json!([{"resource": "PublicKey", "code": "custom", "field": "key",
                            "message": "key is already in use"}]),
                );
            }
            let title = req.get("title").and_then(Value::as_str).unwrap_or("").to_string();
            let k = PublicKey { id: st.id(), title, key: normalized };
            let at = now_iso();
            st.keys.push((t.login.clone(), k.clone(), at.clone()));
            Reply::json(201, key_json(&shared.api_url, &k, &at))
        }
        ("GET", ["user", "memberships", "orgs", org]) => {
            let Caller::User(t) = caller else { return requires_auth(DOC_MEMBERSHIP) };
            // Like `/user/keys`: GitHub hides what the token's scopes do not cover.
            if !t.scopes.iter().any(|s| ["read:org", "write:org", "admin:org"].contains(&s.as_str())) {
                return Reply::error(404, "Not Found", DOC_MEMBERSHIP)
                    .with_header("x-accepted-oauth-scopes", "admin:org, read:org, repo, user, write:org");
            }
            let mut st = shared.st.lock().unwrap();
            let found = st
                .members
                .iter()
                .find(|(o, l, _)| o.eq_ignore_ascii_case(org) && l.eq_ignore_ascii_case(&t.login))
                .cloned();
            let Some((org, _, state)) = found else { return Reply::error(404, "Not Found", DOC_MEMBERSHIP) };
            let (org_id, user_id) = (st.account_id(&org), st.account_id(&t.login));
            let (web, api) = (&shared.web_url, &shared.api_url);
            Reply::json(
                200,
                json!({
                    "url": format!("{api}/orgs/{org}/memberships/{}", t.login), "state": state, "role": "member",
                    "organization_url": format!("{api}/orgs/{org}"), "organization": org_json(&org, org_id, web, api),
                    "user": simple_user(&t.login, user_id, web, api)
                }),
            )
        }
        ("POST", ["applications", client_id, "token"]) => {
            let Caller::App(app) = caller else { return requires_auth(DOC_APP_TOKEN) };
            if app != client_id {
                return Reply::error(404, "Not Found", DOC_APP_TOKEN);
            }
            let Some(token) = json_body().get("access_token").and_then(Value::as_str).map(str::to_string) else {
                return Reply::validation(
                    DOC_APP_TOKEN,
                    json!([{"resource": "OauthAccess", "code": "missing_field", "field": "access_token"}]),
                );
            };
            let mut st = shared.st.lock().unwrap();
            let Some(info) = st.tokens.get(&token).filter(|t| &t.client_id == client_id).cloned() else {
                return Reply::error(404, "Not Found", DOC_APP_TOKEN);
            };
            let (id, user_id) = (st.id(), st.account_id(&info.login));
            let (web, api) = (&shared.web_url, &shared.api_url);
            let last_eight = token[token.len().saturating_sub(8)..].to_string();
            Reply::json(
                200,
                json!({
                    "id": id, "url": format!("{api}/authorizations/{id}"), "scopes": info.scopes, "token": token,
                    "token_last_eight": last_eight, "hashed_token": null,
                    "app": {"client_id": client_id, "name": "Nexus (test)", "url": web},
                    "note": null, "note_url": null, "updated_at": now_iso(), "created_at": now_iso(),
                    "fingerprint": null, "user": simple_user(&info.login, user_id, web, api),
                    "installation": null, "expires_at": null
                }),
            )
        }
        ("GET", ["repos", owner, name]) => {
            let mut st = shared.st.lock().unwrap();
            let visible = st.repos.get(&key(owner, name)).is_some_and(|r| can_read(r, login));
            if !visible {
                return Reply::error(404, "Not Found", DOC_REPO);
            }
            let repo = st.repos.get_mut(&key(owner, name)).unwrap();
            if repo.hidden_gets > 0 {
                repo.hidden_gets -= 1;
                return Reply::error(404, "Not Found", DOC_REPO);
            }
            let repo = repo.clone();
            Reply::json(200, repo_json(shared, &st, &repo, login, true))
        }
        ("POST", ["repos", owner, name, "forks"]) => {
            let Caller::User(t) = caller else { return requires_auth(DOC_FORK) };
            fork(shared, owner, name, &t.login, &json_body()).await
        }
        ("POST", ["repos", owner, name, "pulls"]) => {
            let Caller::User(t) = caller else { return requires_auth(DOC_PULLS_CREATE) };
            create_pull(shared, owner, name, &t.login, &json_body()).await
        }
        ("GET", ["repos", owner, name, "pulls"]) => {
            let st = shared.st.lock().unwrap();
            let Some(repo) = st.visible_repo(owner, name).filter(|r| can_read(r, login)) else {
                return Reply::error(404, "Not Found", DOC_PULLS_LIST);
            };
            let base_key = key(&repo.owner, &repo.name);
            let q = parse_urlencoded(query);
            let state = q.get("state").map_or("open", String::as_str);
            let list: Vec<Value> = st
                .pulls
                .iter()
                .rev()
                .filter(|p| p.base_key == base_key)
                .filter(|p| state == "all" || p.pull.state == state)
                .filter(|p| {
                    q.get("head").is_none_or(|h| {
                        let (o, b) = h.split_once(':').unwrap_or((h.as_str(), ""));
                        p.pull.head_owner.eq_ignore_ascii_case(o) && (b.is_empty() || p.pull.head_ref == b)
                    })
                })
                .filter(|p| q.get("base").is_none_or(|b| &p.pull.base_ref == b))
                .map(|p| pull_json(shared, &st, p, login))
                .collect();
            Reply::json(200, Value::Array(list))
        }
        _ => Reply::error(404, "Not Found", DOCS),
    }
}

async fn fork(shared: &Shared, owner: &str, name: &str, login: &str, req: &Value) -> Reply {
    let (src_key, dest_name) = {
        let mut st = shared.st.lock().unwrap();
        let Some(src) = st.visible_repo(owner, name).filter(|r| can_read(r, Some(login))).cloned() else {
            return Reply::error(404, "Not Found", DOC_FORK);
        };
        if src.owner.eq_ignore_ascii_case(login) {
            // GitHub cannot fork a repository into the account that owns it (stand-in's wording).
            return Reply::validation(
                DOC_FORK,
                json!([{"resource": "Repository", "code": "custom", "message": "repository is owned by the caller"}]),
            );
        }
        let src_key = key(&src.owner, &src.name);
        let network = src.source.clone().unwrap_or_else(|| src_key.clone());
        // An existing fork in the same network is returned as is, like GitHub does.
        let existing = st
            .repos
            .values()
            .find(|r| r.owner.eq_ignore_ascii_case(login) && r.source.as_ref() == Some(&network))
            .cloned();
        if let Some(r) = existing {
            let v = repo_json(shared, &st, &r, Some(login), true);
            return Reply::json(202, v);
        }
        let wanted = req.get("name").and_then(Value::as_str).unwrap_or(&src.name).to_string();
        let mut dest = wanted.clone();
        let mut n = 0;
        while st.repos.contains_key(&key(login, &dest)) {
            n += 1;
            dest = format!("{wanted}-{n}");
        }
        st.account_id(login);
        (src_key, dest)
    };
    let src_path = shared.bare_path(&src_key.0, &src_key.1);
    let dest_path = shared.bare_path(login, &dest_name);
    let cloned = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(dest_path.parent().unwrap()).ok();
        let out =
            std::process::Command::new("git").args(["clone", "--bare", "-q"]).arg(&src_path).arg(&dest_path).output();
        match out {
            Ok(o) if o.status.success() => {
                git_http::enable_receive_pack(&dest_path);
                Ok(())
            }
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = cloned {
        return Reply::error(500, &format!("fork failed: {e}"), DOC_FORK);
    }
    let mut st = shared.st.lock().unwrap();
    let src = st.repos[&src_key].clone();
    let repo = Repo {
        owner: login.to_string(),
        name: dest_name.clone(),
        id: st.id(),
        private: src.private,
        parent: Some(src_key.clone()),
        source: Some(src.source.clone().unwrap_or(src_key)),
        collaborators: HashSet::new(),
        hidden_gets: st.fork_hidden_gets,
        created_at: now_iso(),
    };
    st.repos.insert(key(login, &dest_name), repo.clone());
    Reply::json(202, repo_json(shared, &st, &repo, Some(login), true))
}

async fn create_pull(shared: &Shared, owner: &str, name: &str, login: &str, req: &Value) -> Reply {
    let s = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_string);
    let (title, head, base, body) =
        (s("title"), s("head").unwrap_or_default(), s("base").unwrap_or_default(), s("body"));
    let (base_key, head_owner, head_ref, head, base_path) = {
        let st = shared.st.lock().unwrap();
        let Some(base_repo) = st.visible_repo(owner, name).filter(|r| can_read(r, Some(login))) else {
            return Reply::error(404, "Not Found", DOC_PULLS_CREATE);
        };
        let base_key = key(&base_repo.owner, &base_repo.name);
        let network = base_repo.source.clone().unwrap_or_else(|| base_key.clone());
        let (head_owner, head_ref) = match head.split_once(':') {
            Some((o, b)) => (o.to_string(), b.to_string()),
            None => (base_repo.owner.clone(), head.clone()),
        };
        // The head repository is the head owner's repository in the same fork network.
        let head_repo = st.repos.values().filter(|r| r.hidden_gets == 0).find(|r| {
            r.owner.eq_ignore_ascii_case(&head_owner)
                && (key(&r.owner, &r.name) == network || r.source.as_ref() == Some(&network))
        });
        let head = head_repo.map(|r| (key(&r.owner, &r.name), shared.bare_path(&r.owner, &r.name)));
        let head_owner = head_repo.map_or(head_owner, |r| r.owner.clone());
        (base_key.clone(), head_owner, head_ref, head, shared.bare_path(&base_key.0, &base_key.1))
    };
    if title.as_deref().is_none_or(str::is_empty) && req.get("issue").is_none() {
        return Reply::validation(
            DOC_PULLS_CREATE,
            json!([{"resource": "PullRequest", "field": "title", "code": "missing_field"}]),
        );
    }
    let (head_key, head_sha) = match head {
        Some((k, p)) => (k, git_rev_async(p, head_ref.clone()).await),
        None => (key("", ""), None),
    };
    let Some(head_sha) = head_sha else {
        return Reply::validation(
            DOC_PULLS_CREATE,
            json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]),
        );
    };
    if git_rev_async(base_path, base.clone()).await.is_none() {
        return Reply::validation(
            DOC_PULLS_CREATE,
            json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]),
        );
    }
    let mut st = shared.st.lock().unwrap();
    let duplicate = st.pulls.iter().any(|p| {
        p.base_key == base_key
            && p.pull.state == "open"
            && p.pull.base_ref == base
            && p.pull.head_ref == head_ref
            && p.pull.head_owner.eq_ignore_ascii_case(&head_owner)
    });
    if duplicate {
        return Reply::validation(
            DOC_PULLS_CREATE,
            json!([{"resource": "PullRequest", "code": "custom",
                    "message": format!("A pull request already exists for {head_owner}:{head_ref}.")}]),
        );
    }
    let number = st.pulls.iter().filter(|p| p.base_key == base_key).count() as u64 + 1;
    let rec = PullRec {
        base_key,
        head_key,
        id: st.id(),
        created_at: now_iso(),
        pull: PullRequest {
            number,
            title: title.unwrap_or_default(),
            body,
            author: login.to_string(),
            head_owner,
            head_ref,
            head_sha,
            base_ref: base,
            state: "open".into(),
        },
    };
    st.pulls.push(rec.clone());
    let v = pull_json(shared, &st, &rec, Some(login));
    let location = v["url"].as_str().unwrap_or_default().to_string();
    Reply::json(201, v).with_header("location", location)
}

fn take_failure(st: &mut St, method: &str, path: &str) -> Option<u16> {
    let f = st
        .failures
        .iter_mut()
        .find(|f| f.remaining > 0 && f.method.eq_ignore_ascii_case(method) && path.starts_with(&f.path_prefix))?;
    f.remaining -= 1;
    Some(f.status)
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/api/v3" || path.starts_with("/api/v3/") {
        return api(&shared, req).await;
    }
    let injected = take_failure(&mut shared.st.lock().unwrap(), req.method().as_str(), &path);
    if let Some(status) = injected {
        let resp = git_http::text(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), "Server Error\n");
        let (method, target) = (req.method().to_string(), req.uri().to_string());
        return record(&shared, &method, &target, None, resp);
    }
    if path.starts_with("/login/") {
        oauth(&shared, req).await
    } else if let Some(target) = git_http::parse_target(&path, &query) {
        git(&shared, target, req).await
    } else {
        git_http::text(StatusCode::NOT_FOUND, "Not Found\n")
    }
}

async fn api(shared: &Shared, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let method = parts.method.as_str().to_string();
    let target = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_string(), |pq| pq.as_str().to_string());
    let path = parts.uri.path().strip_prefix("/api/v3").unwrap_or("/").to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let spec = github_openapi::spec();
    let mut problems: Vec<String> = spec
        .check_request(&method, &target, content_type, &bytes)
        .into_iter()
        .map(|p| format!("request: {p}"))
        .collect();

    let caller = match api_token(&parts.headers) {
        None => match basic_auth(&parts.headers) {
            None => Caller::Anonymous,
            Some((id, secret)) if shared.st.lock().unwrap().apps.get(&id) == Some(&secret) => Caller::App(id),
            Some(_) => Caller::BadToken,
        },
        Some(t) => match shared.st.lock().unwrap().tokens.get(&t) {
            Some(info) => Caller::User(info.clone()),
            None => Caller::BadToken,
        },
    };
    let injected = take_failure(&mut shared.st.lock().unwrap(), &method, parts.uri.path());
    let reply = match (injected, &caller) {
        (Some(status), _) => Reply::error(status, "Server Error", DOCS),
        (None, Caller::BadToken) => Reply::error(401, "Bad credentials", DOCS),
        (None, _) => route(shared, &method, &path, &query, &bytes, &caller).await,
    };
    let body = reply.body.as_ref().map(|v| serde_json::to_vec(v).unwrap()).unwrap_or_default();
    problems.extend(
        spec.check_response(&method, &target, reply.status, Some(JSON_CONTENT_TYPE), &body)
            .into_iter()
            .map(|p| format!("response: {p}")),
    );

    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    let version = parts.headers.get("x-github-api-version").and_then(|v| v.to_str().ok()).unwrap_or(API_VERSION);
    let mut headers: Vec<(&str, String)> = vec![
        ("content-type", JSON_CONTENT_TYPE.into()),
        ("x-github-api-version-selected", version.to_string()),
        ("x-github-media-type", "github.v3; format=json".into()),
        ("x-ratelimit-limit", "5000".into()),
        ("x-ratelimit-remaining", "4999".into()),
        ("x-ratelimit-used", "1".into()),
        ("x-ratelimit-resource", "core".into()),
    ];
    if let Caller::User(t) = &caller {
        headers.push(("x-oauth-scopes", t.scopes.join(", ")));
    }
    headers.extend(reply.headers.iter().map(|(k, v)| (*k, v.clone())));
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::try_from(v) {
            h.insert(header::HeaderName::from_static(k), v);
        }
    }
    let mut st = shared.st.lock().unwrap();
    st.violations.extend(problems.into_iter().map(|p| format!("{method} {target} → {}: {p}", reply.status)));
    st.requests.push(RecordedRequest {
        method,
        target,
        status: reply.status,
        login: caller.login().map(str::to_string),
    });
    resp
}

fn oauth_reply(headers: &HeaderMap, pairs: Vec<(&str, Value)>) -> Response<Body> {
    let wants_json =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/json"));
    let (body, ct) = if wants_json {
        let obj: serde_json::Map<String, Value> = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        (serde_json::to_vec(&obj).unwrap(), JSON_CONTENT_TYPE)
    } else {
        // GitHub answers form-encoded unless asked for JSON.
        let flat: Vec<(&str, String)> =
            pairs.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
        (urlencode(&flat).into_bytes(), "application/x-www-form-urlencoded; charset=utf-8")
    };
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

fn device_error(headers: &HeaderMap, error: &str, description: &str, interval: Option<u64>) -> Response<Body> {
    let mut pairs = vec![
        ("error", json!(error)),
        ("error_description", json!(description)),
        ("error_uri", json!(DOC_DEVICE_ERRORS)),
    ];
    if let Some(i) = interval {
        pairs.push(("interval", json!(i)));
    }
    oauth_reply(headers, pairs)
}

async fn oauth(shared: &Shared, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let is_json =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.contains("json"));
    let mut params: HashMap<String, String> = if is_json {
        serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect()
    } else {
        parse_urlencoded(&String::from_utf8_lossy(&bytes))
    };
    params.extend(parse_urlencoded(parts.uri.query().unwrap_or("")));
    let param = |k: &str| params.get(k).cloned().unwrap_or_default();
    let headers = &parts.headers;
    let path = parts.uri.path();
    let mut st = shared.st.lock().unwrap();
    let resp = match (parts.method.as_str(), path) {
        ("GET", "/login/device") => {
            let mut r = Response::new(Body::from(
                "<!doctype html><title>Device activation</title><p>Enter the code shown by your device.</p>",
            ));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r
        }
        ("POST", "/login/device/code") => {
            if param("client_id").is_empty() {
                let mut r = git_http::text(StatusCode::NOT_FOUND, "Not Found\n");
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                r
            } else {
                let device_code = st.random_string(b"0123456789abcdef", 40);
                let user_code =
                    format!("{}-{}", st.random_string(b"BCDFGHJKLMNPQRSTVWXZ", 4), st.random_string(b"0123456789", 4));
                let grant = DeviceGrant {
                    client_id: param("client_id"),
                    device_code: device_code.clone(),
                    user_code: user_code.clone(),
                    scope: param("scope"),
                    interval: st.device_interval,
                    expires_at: Instant::now() + Duration::from_secs(st.device_expires_in),
                    last_poll: None,
                    state: GrantState::Pending,
                };
                let (interval, expires_in) = (grant.interval, st.device_expires_in);
                st.grants.push(grant);
                oauth_reply(
                    headers,
                    vec![
                        ("device_code", json!(device_code)),
                        ("user_code", json!(user_code)),
                        ("verification_uri", json!(format!("{}/login/device", shared.web_url))),
                        ("expires_in", json!(expires_in)),
                        ("interval", json!(interval)),
                    ],
                )
            }
        }
        ("POST", "/login/oauth/access_token") => {
            let force_slow = st.slow_down_next > 0;
            if force_slow {
                st.slow_down_next -= 1;
            }
            let now = Instant::now();
            let device_code = param("device_code");
            let client_id = param("client_id");
            match st.grants.iter_mut().find(|g| g.device_code == device_code && !device_code.is_empty()) {
                _ if param("grant_type") != DEVICE_GRANT_TYPE => device_error(
                    headers,
                    "unsupported_grant_type",
                    "The grant type must be urn:ietf:params:oauth:grant-type:device_code.",
                    None,
                ),
                None => device_error(headers, "incorrect_device_code", "The device_code provided is not valid.", None),
                Some(g) if g.client_id != client_id => device_error(
                    headers,
                    "incorrect_client_credentials",
                    "The client_id and/or client_secret passed are incorrect.",
                    None,
                ),
                Some(g) if g.state == GrantState::Redeemed => {
                    device_error(headers, "incorrect_device_code", "The device_code provided is not valid.", None)
                }
                Some(g) if now >= g.expires_at => {
                    device_error(headers, "expired_token", "The device_code has expired.", None)
                }
                Some(g) if g.state == GrantState::Denied => {
                    device_error(headers, "access_denied", "The authorization request was denied.", None)
                }
                // A forced slow_down (test control) reports a longer interval without enforcing it,
                // so tests need not wait the extra 5 s.
                Some(g) if force_slow => {
                    g.last_poll = Some(now);
                    device_error(headers, "slow_down", SLOW_DOWN, Some(g.interval + 5))
                }
                Some(g) if g.last_poll.is_some_and(|t| now.duration_since(t) < Duration::from_secs(g.interval)) => {
                    g.interval += 5;
                    g.last_poll = Some(now);
                    device_error(headers, "slow_down", SLOW_DOWN, Some(g.interval))
                }
                Some(g) => {
                    g.last_poll = Some(now);
                    match g.state.clone() {
                        GrantState::Approved(token) => {
                            g.state = GrantState::Redeemed;
                            let scope =
                                g.scope.split([' ', ',']).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(",");
                            oauth_reply(
                                headers,
                                vec![
                                    ("access_token", json!(token)),
                                    ("token_type", json!("bearer")),
                                    ("scope", json!(scope)),
                                ],
                            )
                        }
                        _ => device_error(
                            headers,
                            "authorization_pending",
                            "The authorization request is still pending.",
                            None,
                        ),
                    }
                }
            }
        }
        _ => git_http::text(StatusCode::NOT_FOUND, "Not Found\n"),
    };
    st.requests.push(RecordedRequest {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        status: resp.status().as_u16(),
        login: None,
    });
    resp
}

async fn git(shared: &Shared, target: git_http::GitTarget, req: Request<Body>) -> Response<Body> {
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let token = git_http::basic_auth_token(req.headers());
    let known = token.as_ref().and_then(|t| shared.st.lock().unwrap().tokens.get(t).map(|i| i.login.clone()));
    if token.is_some() && known.is_none() {
        return record(shared, &method, &uri, None, git_http::challenge());
    }
    let login = known;
    let decision = {
        let st = shared.st.lock().unwrap();
        st.visible_repo(&target.owner, &target.repo)
            .map(|r| (can_read(r, login.as_deref()), can_push(r, login.as_deref())))
    };
    let full = format!("{}/{}", target.owner, target.repo);
    let refusal = match (decision, &login) {
        // Without credentials GitHub asks for them rather than reveal whether a repository exists.
        (None, None) | (Some((false, _)), None) => Some(git_http::challenge()),
        (None, Some(_)) | (Some((false, _)), Some(_)) => {
            Some(git_http::text(StatusCode::NOT_FOUND, "Repository not found.\n"))
        }
        (Some((true, false)), None) if target.access == GitAccess::Write => Some(git_http::challenge()),
        (Some((true, false)), Some(l)) if target.access == GitAccess::Write => {
            Some(git_http::text(StatusCode::FORBIDDEN, &format!("Permission to {full}.git denied to {l}.\n")))
        }
        _ => None,
    };
    if let Some(resp) = refusal {
        return record(shared, &method, &uri, login, resp);
    }
    // Serve from the canonical (lower-case) directory whatever the URL's spelling.
    let (o, n) = key(&target.owner, &target.repo);
    let rest = req.uri().path().splitn(4, '/').nth(3).unwrap_or("").to_string();
    let path_info = format!("/{o}/{n}.git/{rest}");
    let resp = git_http::serve(shared.root.path(), &path_info, login.as_deref(), req).await;
    record(shared, &method, &uri, login, resp)
}

fn record(shared: &Shared, method: &str, target: &str, login: Option<String>, resp: Response<Body>) -> Response<Body> {
    shared.st.lock().unwrap().requests.push(RecordedRequest {
        method: method.to_string(),
        target: target.to_string(),
        status: resp.status().as_u16(),
        login,
    });
    resp
}

impl FakeGithub {
    /// Starts the stand-in on 127.0.0.1. Panics (telling how to install it) when GitHub's OpenAPI
    /// description is missing.
    pub async fn start() -> FakeGithub {
        FakeGithub::start_on("127.0.0.1").await
    }

    /// Starts the stand-in on `ip` (e.g. the LXD bridge address, so containers can clone and push
    /// over HTTP); URLs it hands out use that address.
    pub async fn start_on(ip: &str) -> FakeGithub {
        github_openapi::spec();
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let host = addr.to_string();
        let web_url = format!("http://{host}");
        let api_url = format!("{web_url}/api/v3");
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
        let st = St {
            accounts: BTreeMap::new(),
            tokens: HashMap::new(),
            repos: BTreeMap::new(),
            keys: Vec::new(),
            pulls: Vec::new(),
            grants: Vec::new(),
            device_interval: 0,
            device_expires_in: 900,
            slow_down_next: 0,
            fork_hidden_gets: 1,
            refuse_keys: false,
            failures: Vec::new(),
            apps: HashMap::new(),
            members: Vec::new(),
            requests: Vec::new(),
            violations: Vec::new(),
            next_id: 1000,
            rng: seed ^ u64::from(addr.port()),
        };
        let shared = Arc::new(Shared {
            st: Mutex::new(st),
            root: tempfile::tempdir().unwrap(),
            web_url: web_url.clone(),
            api_url: api_url.clone(),
            host,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGithub { web_url, api_url, shared, task }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, St> {
        self.shared.st.lock().unwrap()
    }

    /// Adds (or renumbers) an account.
    pub fn add_account(&self, login: &str, id: i64) {
        self.st().accounts.insert(login.to_string(), id);
    }

    /// Makes `token` valid for the account (created if needed) with [`DEFAULT_SCOPES`].
    pub fn add_token(&self, token: &str, login: &str, id: i64) {
        self.add_token_with_scopes(token, login, id, DEFAULT_SCOPES);
    }

    /// Makes `token` valid for the account with the given OAuth scopes.
    pub fn add_token_with_scopes(&self, token: &str, login: &str, id: i64, scopes: &[&str]) {
        let mut st = self.st();
        st.accounts.insert(login.to_string(), id);
        let scopes = scopes.iter().map(|s| s.to_string()).collect();
        let client_id = crate::process::TEST_CLIENT_ID.to_string();
        st.tokens.insert(token.to_string(), TokenInfo { login: login.to_string(), scopes, client_id });
    }

    /// Makes `token` valid for the account, issued to the OAuth app `client_id` (not the test client).
    pub fn add_token_of_app(&self, token: &str, login: &str, id: i64, client_id: &str) {
        let mut st = self.st();
        st.accounts.insert(login.to_string(), id);
        let scopes = DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect();
        st.tokens
            .insert(token.to_string(), TokenInfo { login: login.to_string(), scopes, client_id: client_id.into() });
    }

    /// Registers an OAuth app's client secret, for `POST /applications/{client_id}/token`.
    pub fn add_oauth_app(&self, client_id: &str, secret: &str) {
        self.st().apps.insert(client_id.to_string(), secret.to_string());
    }

    /// Makes `login` a member of `org`: `active`, or `pending` (invited, not yet accepted).
    pub fn add_org_member(&self, org: &str, login: &str, state: &str) {
        self.st().account_id(org);
        self.st().members.push((org.to_ascii_lowercase(), login.to_ascii_lowercase(), state.to_string()));
    }

    /// Revokes a token: the API answers 401 `Bad credentials` and git asks for credentials.
    pub fn revoke(&self, token: &str) {
        self.st().tokens.remove(token);
    }

    /// Seconds between device-flow polls that the server demands (and hands out); default 0.
    pub fn set_device_interval(&self, secs: u64) {
        self.st().device_interval = secs;
    }

    /// Lifetime of new device codes; default 900 s like GitHub.
    pub fn set_device_expiry(&self, secs: u64) {
        self.st().device_expires_in = secs;
    }

    /// The next `n` token polls answer `slow_down` whatever their timing, reporting an interval
    /// 5 s longer without enforcing it (polling faster than the real interval also gets
    /// `slow_down`, and that one is enforced).
    pub fn slow_down_next(&self, n: u32) {
        self.st().slow_down_next = n;
    }

    /// User codes of device grants still waiting for the user.
    pub fn pending_user_codes(&self) -> Vec<String> {
        let now = Instant::now();
        self.st()
            .grants
            .iter()
            .filter(|g| g.state == GrantState::Pending && g.expires_at > now)
            .map(|g| g.user_code.clone())
            .collect()
    }

    fn grant(&self, user_code: &str, f: impl FnOnce(&mut St, usize)) {
        let mut st = self.st();
        let i = st
            .grants
            .iter()
            .position(|g| g.user_code == user_code)
            .unwrap_or_else(|| panic!("no device grant with user code {user_code}"));
        f(&mut st, i);
    }

    /// Plays the user entering `user_code` and authorizing as `login`; returns the token the next
    /// poll will receive (with the scopes the device asked for).
    pub fn approve_device(&self, user_code: &str, login: &str) -> String {
        let mut token = String::new();
        self.grant(user_code, |st, i| {
            st.account_id(login);
            let scopes = st.grants[i].scope.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_string).collect();
            let client_id = st.grants[i].client_id.clone();
            token = st.new_token(login, scopes, &client_id);
            st.grants[i].state = GrantState::Approved(token.clone());
        });
        token
    }

    /// Plays the user approving every device code as `login`, as soon as it appears, until the
    /// returned task is aborted.
    pub fn auto_approve(self: &std::sync::Arc<Self>, login: &str) -> tokio::task::JoinHandle<()> {
        let (github, login) = (self.clone(), login.to_string());
        tokio::spawn(async move {
            loop {
                for code in github.pending_user_codes() {
                    github.approve_device(&code, &login);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    }

    /// Plays the user cancelling the authorization: the next poll gets `access_denied`.
    pub fn deny_device(&self, user_code: &str) {
        self.grant(user_code, |st, i| st.grants[i].state = GrantState::Denied);
    }

    /// Expires a device code now: the next poll gets `expired_token`.
    pub fn expire_device(&self, user_code: &str) {
        self.grant(user_code, |st, i| st.grants[i].expires_at = Instant::now());
    }

    /// Creates `owner/name` (owner account created if needed) as a bare repository with one
    /// commit holding `files` on `main`; returns the commit.
    pub fn create_repo(&self, owner: &str, name: &str, private: bool, files: &[(&str, &str)]) -> String {
        let bare = self.shared.bare_path(owner, name);
        assert!(!bare.exists(), "{owner}/{name} exists already");
        git_http::init_bare(&bare);
        let work = tempfile::tempdir().unwrap();
        git_http::run_git(work.path(), &["init", "-q", "-b", "main"]);
        for (path, content) in files {
            let p = work.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git_http::run_git(work.path(), &["add", "-A"]);
        git_http::run_git(work.path(), &["commit", "-q", "--allow-empty", "-m", "initial"]);
        git_http::run_git(work.path(), &["push", "-q", &bare.display().to_string(), "main"]);
        let sha = git_http::run_git(work.path(), &["rev-parse", "HEAD"]);
        let mut st = self.st();
        st.account_id(owner);
        let repo = Repo {
            owner: owner.to_string(),
            name: name.to_string(),
            id: st.id(),
            private,
            parent: None,
            source: None,
            collaborators: HashSet::new(),
            hidden_gets: 0,
            created_at: now_iso(),
        };
        st.repos.insert(key(owner, name), repo);
        sha
    }

    /// Adds branch `branch` (off `main`) with `files` changed to `owner/name`; returns its commit.
    pub fn add_branch(&self, owner: &str, name: &str, branch: &str, files: &[(&str, &str)]) -> String {
        let bare = self.bare_repo_path(owner, name);
        let work = tempfile::tempdir().unwrap();
        git_http::run_git(work.path(), &["clone", "-q", &bare.display().to_string(), "."]);
        git_http::run_git(work.path(), &["checkout", "-q", "-b", branch]);
        for (path, content) in files {
            let p = work.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git_http::run_git(work.path(), &["add", "-A"]);
        git_http::run_git(work.path(), &["commit", "-q", "--allow-empty", "-m", &format!("work on {branch}")]);
        git_http::run_git(work.path(), &["push", "-q", "origin", branch]);
        git_http::run_git(work.path(), &["rev-parse", "HEAD"])
    }

    /// Gives `login` push rights on `owner/repo`.
    pub fn add_collaborator(&self, owner: &str, repo: &str, login: &str) {
        let mut st = self.st();
        st.account_id(login);
        let r = st.repos.get_mut(&key(owner, repo)).unwrap_or_else(|| panic!("no repository {owner}/{repo}"));
        r.collaborators.insert(login.to_ascii_lowercase());
    }

    /// While on, `POST /user/keys` answers 404 `Not Found` with `X-Accepted-OAuth-Scopes`, as
    /// GitHub does for a token without the `admin:public_key`/`write:public_key` scope.
    pub fn refuse_key_uploads(&self, refuse: bool) {
        self.st().refuse_keys = refuse;
    }

    /// Forks answer `GET /repos/...` with 404 this many times before they appear (default 1).
    pub fn set_fork_delay(&self, gets: u32) {
        self.st().fork_hidden_gets = gets;
    }

    /// The next `count` requests with `method` whose path starts with `path_prefix` (e.g.
    /// `/api/v3/user`) fail with `status` (e.g. 502), like GitHub's transient outages.
    pub fn fail_next(&self, method: &str, path_prefix: &str, count: u32, status: u16) {
        self.st().failures.push(Failure {
            method: method.to_string(),
            path_prefix: path_prefix.to_string(),
            remaining: count,
            status,
        });
    }

    /// Keys uploaded to `login`'s account.
    pub fn keys(&self, login: &str) -> Vec<PublicKey> {
        self.st().keys.iter().filter(|(o, _, _)| o.eq_ignore_ascii_case(login)).map(|(_, k, _)| k.clone()).collect()
    }

    /// Pull requests whose base is `owner/repo`, oldest first.
    pub fn pulls(&self, owner: &str, repo: &str) -> Vec<PullRequest> {
        let k = key(owner, repo);
        self.st().pulls.iter().filter(|p| p.base_key == k).map(|p| p.pull.clone()).collect()
    }

    /// Every request answered so far (API, OAuth and git).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.st().requests.clone()
    }

    /// Where `owner/repo`'s bare repository lives (inspect it with `git --git-dir`).
    pub fn bare_repo_path(&self, owner: &str, repo: &str) -> PathBuf {
        self.shared.bare_path(owner, repo)
    }

    /// `http://IP:PORT/owner/repo.git`.
    pub fn clone_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}.git", self.web_url)
    }

    /// Differences from GitHub's OpenAPI description seen so far, one line each.
    pub fn violations(&self) -> Vec<String> {
        self.st().violations.clone()
    }

    /// Panics listing every request or response that did not match GitHub's OpenAPI description.
    pub fn assert_conformant(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "{} exchange(s) with the GitHub stand-in do not match GitHub's OpenAPI description:\n  {}",
            v.len(),
            v.join("\n  ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_time_matches_known_dates() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso_time(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn urlencoding_round_trips() {
        let s = urlencode(&[("scope", "repo admin:public_key".into()), ("x", "a&b=c".into())]);
        let back = parse_urlencoded(&s);
        assert_eq!(back["scope"], "repo admin:public_key");
        assert_eq!(back["x"], "a&b=c");
    }

    #[tokio::test]
    async fn polling_faster_than_the_interval_gets_slow_down() {
        let gh = FakeGithub::start().await;
        gh.set_device_interval(1);
        let http = reqwest::Client::new();
        // Without `Accept: application/json` GitHub answers form-encoded.
        let form = http
            .post(format!("{}/login/device/code", gh.web_url))
            .body("client_id=c&scope=repo")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let device_code = parse_urlencoded(&form)["device_code"].clone();
        assert!(form.contains("interval=1"), "{form}");
        let poll = || async {
            let body = urlencode(&[
                ("client_id", "c".to_string()),
                ("device_code", device_code.clone()),
                ("grant_type", DEVICE_GRANT_TYPE.to_string()),
            ]);
            let resp = http
                .post(format!("{}/login/oauth/access_token", gh.web_url))
                .header("accept", "application/json")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        };
        assert_eq!(poll().await["error"], "authorization_pending");
        let v = poll().await;
        assert_eq!((v["error"].as_str(), v["interval"].as_u64()), (Some("slow_down"), Some(6)));
        assert_eq!(poll().await["interval"], 11);
        gh.assert_conformant();
    }

    /// The checks are wired in: a request GitHub would not accept is recorded and fails the test.
    #[tokio::test]
    async fn nonconforming_requests_are_recorded() {
        let gh = FakeGithub::start().await;
        gh.add_token("t", "alice", 1);
        let http = reqwest::Client::new();
        let keys = format!("{}/user/keys", gh.api_url);
        http.post(&keys).bearer_auth("t").json(&json!({"title": 5})).send().await.unwrap();
        http.get(format!("{}/no/such/endpoint", gh.api_url)).bearer_auth("t").send().await.unwrap();
        let v = gh.violations();
        assert!(v.iter().any(|l| l.contains("missing required property `key`")), "{v:?}");
        assert!(v.iter().any(|l| l.contains("$.title: expected string")), "{v:?}");
        assert!(v.iter().any(|l| l.contains("no operation GET /no/such/endpoint")), "{v:?}");
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gh.assert_conformant()));
        assert!(caught.is_err());
    }

    /// Every route and status the stand-in can answer is in GitHub's description.
    #[test]
    fn routes_and_statuses_are_documented() {
        let spec = github_openapi::spec();
        for (method, template, statuses) in API_ROUTES {
            let concrete = template
                .replace("{owner}", "o")
                .replace("{repo}", "r")
                .replace("{org}", "acme")
                .replace("{client_id}", "Iv1.x");
            let m = spec.find_operation(method, &concrete).unwrap_or_else(|| panic!("{method} {template} missing"));
            assert_eq!(&m.template, template);
            for s in *statuses {
                assert!(
                    spec.documents_status(method, template, *s) || github_openapi::STATUSES_ANY_ENDPOINT.contains(s),
                    "{method} {template} does not document {s}"
                );
            }
        }
    }
}
