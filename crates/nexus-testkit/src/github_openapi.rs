//! Checks HTTP exchanges against GitHub's official OpenAPI description, so the GitHub stand-in and
//! the CLI's GitHub client cannot drift from the real API without a test failing.
//!
//! The description is the npm package `@octokit/openapi` (file `generated/api.github.com.json`),
//! installed by `scripts/github-openapi.sh` into `target/github-openapi/`; `NEXUS_GITHUB_OPENAPI`
//! points elsewhere. It is OpenAPI 3.0.3 (`nullable: true`, no type arrays) and ~13 MB, so it is
//! parsed once per process ([`spec`]).
//!
//! The schema checker covers the subset the description uses: `$ref` to `#/components/...`, `type`
//! (3.0 `nullable` and 3.1 type arrays), `properties`, `required`, `additionalProperties`, `items`,
//! `enum`, `allOf`/`anyOf`/`oneOf` (with `discriminator`), `minimum`/`maximum`,
//! `minLength`/`maxLength`, `minItems`/`maxItems`. `format` and `pattern` are ignored (no regex
//! engine for one request field). `oneOf` is checked like `anyOf`: GitHub's description has
//! overlapping branches (e.g. three `nullable` branches that all accept `null`), so "exactly one"
//! would reject answers GitHub itself sends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Env var naming the description file, overriding the default under `target/github-openapi/`.
pub const ENV_OPENAPI_PATH: &str = "NEXUS_GITHUB_OPENAPI";

/// Statuses GitHub answers on any endpoint whether or not the operation lists them (bad
/// credentials, missing access or rate limits, unknown resources, outages). Their bodies are
/// checked against `basic-error`.
pub const STATUSES_ANY_ENDPOINT: &[u16] = &[401, 403, 404, 429, 500, 502, 503, 504];

/// How deep `$ref`/combinator chains may nest before the checker assumes a cycle.
const MAX_DEPTH: usize = 96;

/// Where the description is read from: `NEXUS_GITHUB_OPENAPI`, else the file
/// `scripts/github-openapi.sh` installs under the workspace's `target/`.
pub fn spec_path() -> PathBuf {
    if let Some(p) = std::env::var_os(ENV_OPENAPI_PATH) {
        return PathBuf::from(p);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    workspace.join("target/github-openapi/node_modules/@octokit/openapi/generated/api.github.com.json")
}

static SPEC: OnceLock<(OpenApi, Duration)> = OnceLock::new();

/// The description, parsed on first use. Panics, telling how to install it, when the file is
/// missing: tests that check conformance must fail rather than silently skip.
pub fn spec() -> &'static OpenApi {
    &SPEC
        .get_or_init(|| {
            let path = spec_path();
            let start = Instant::now();
            let spec = OpenApi::load(&path).unwrap_or_else(|e| {
                panic!(
                    "GitHub's OpenAPI description is not available: {e}\n\
                     hint: run `scripts/github-openapi.sh` (it installs the pinned npm package \
                     @octokit/openapi into target/github-openapi/), or set {ENV_OPENAPI_PATH} to \
                     an api.github.com.json file"
                )
            });
            (spec, start.elapsed())
        })
        .0
}

/// How long the first [`spec`] call took to read and parse the description (after [`spec`]).
pub fn load_time() -> Option<Duration> {
    SPEC.get().map(|(_, d)| *d)
}

/// One path template of the description, split into segments for matching.
struct PathTemplate {
    template: String,
    /// `Some(literal)` or `None` for a `{param}` segment.
    segments: Vec<Option<String>>,
}

/// A parsed GitHub OpenAPI description.
pub struct OpenApi {
    doc: Value,
    paths: Vec<PathTemplate>,
    /// First segment → indexes into `paths`, to avoid scanning all ~800 templates per request.
    by_first: HashMap<String, Vec<usize>>,
}

/// The operation an exchange matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationMatch {
    /// Path template, e.g. `/repos/{owner}/{repo}`.
    pub template: String,
    /// GitHub's `operationId`, e.g. `repos/get`.
    pub operation_id: String,
    /// Path parameters by name.
    pub params: Vec<(String, String)>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    match want {
        "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// Splits `/a/b?x=1` into the path without `/api/v3` and the query.
fn split_target(target: &str) -> (&str, &str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.strip_prefix("/api/v3").unwrap_or(path);
    (if path.is_empty() { "/" } else { path }, query)
}

fn media_type(content_type: Option<&str>) -> Option<String> {
    content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

fn is_json_media(m: &str) -> bool {
    m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
}

/// Decodes `%XX` and `+` in a query component.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl OpenApi {
    /// Reads and indexes a description file.
    pub fn load(path: &std::path::Path) -> Result<OpenApi, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
        OpenApi::from_value(doc)
    }

    /// Indexes an already parsed description (unit tests use small hand-written ones).
    pub fn from_value(doc: Value) -> Result<OpenApi, String> {
        let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
        if !version.starts_with("3.") {
            return Err(format!("expected an OpenAPI 3.x description, found openapi={version:?}"));
        }
        let Some(paths_obj) = doc.get("paths").and_then(Value::as_object) else {
            return Err("the description has no `paths`".into());
        };
        let mut paths = Vec::with_capacity(paths_obj.len());
        let mut by_first: HashMap<String, Vec<usize>> = HashMap::new();
        for template in paths_obj.keys() {
            let segments: Vec<Option<String>> = template
                .trim_start_matches('/')
                .split('/')
                .map(|s| if s.starts_with('{') && s.ends_with('}') { None } else { Some(s.to_string()) })
                .collect();
            let first = segments.first().cloned().flatten().unwrap_or_default();
            by_first.entry(first).or_default().push(paths.len());
            paths.push(PathTemplate { template: template.clone(), segments });
        }
        Ok(OpenApi { doc, paths, by_first })
    }

    /// The description's `info.version` (e.g. `1.1.4`) and `openapi` version.
    pub fn versions(&self) -> (String, String) {
        let s = |p: &str| self.doc.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        (s("/info/version"), s("/openapi"))
    }

    /// Resolves a `#/...` reference.
    fn resolve_ref(&self, r: &str) -> Option<&Value> {
        self.doc.pointer(r.strip_prefix('#')?)
    }

    /// Follows `$ref` until a non-reference object.
    fn deref<'a>(&'a self, mut v: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..MAX_DEPTH {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => v = self.resolve_ref(r).ok_or_else(|| format!("unresolvable $ref {r}"))?,
                None => return Ok(v),
            }
        }
        Err("$ref chain too deep".into())
    }

    /// The template matching a concrete path (`/api/v3` prefix and query allowed): literal
    /// segments win over parameters, as in GitHub's router (`/user/keys` is not `/users/{u}`).
    pub fn match_path(&self, path: &str) -> Option<(String, Vec<(String, String)>)> {
        let (path, _) = split_target(path);
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut candidates: Vec<usize> = self.by_first.get(segs[0]).cloned().unwrap_or_default();
        candidates.extend(self.by_first.get("").cloned().unwrap_or_default());
        let mut best: Option<(usize, usize)> = None; // (literal count, index)
        for i in candidates {
            let t = &self.paths[i];
            if t.segments.len() != segs.len() {
                continue;
            }
            let mut literals = 0;
            let ok = t.segments.iter().zip(&segs).all(|(want, got)| match want {
                Some(lit) => {
                    literals += 1;
                    lit == got
                }
                None => !got.is_empty(),
            });
            if ok && best.is_none_or(|(l, _)| literals > l) {
                best = Some((literals, i));
            }
        }
        let (_, i) = best?;
        let t = &self.paths[i];
        let params = t
            .template
            .trim_start_matches('/')
            .split('/')
            .zip(&segs)
            .filter(|(want, _)| want.starts_with('{'))
            .map(|(want, got)| (want.trim_matches(|c| c == '{' || c == '}').to_string(), percent_decode(got)))
            .collect();
        Some((t.template.clone(), params))
    }

    fn operation(&self, method: &str, template: &str) -> Option<&Value> {
        self.doc.get("paths")?.get(template)?.get(method.to_ascii_lowercase())
    }

    /// The operation for `method` and a concrete path, if the description has one.
    pub fn find_operation(&self, method: &str, path: &str) -> Option<OperationMatch> {
        let (template, params) = self.match_path(path)?;
        let op = self.operation(method, &template)?;
        let operation_id = op.get("operationId").and_then(Value::as_str).unwrap_or("").to_string();
        Some(OperationMatch { template, operation_id, params })
    }

    /// Whether the description documents `status` for the operation (exactly or via `default`).
    pub fn documents_status(&self, method: &str, template: &str, status: u16) -> bool {
        self.operation(method, template)
            .and_then(|op| op.get("responses"))
            .is_some_and(|r| r.get(status.to_string()).is_some() || r.get("default").is_some())
    }

    /// Problems with a request: unknown operation, undeclared or invalid query parameters, a
    /// missing or non-conforming JSON body. Empty when it conforms.
    pub fn check_request(&self, method: &str, target: &str, content_type: Option<&str>, body: &[u8]) -> Vec<String> {
        let (path, query) = split_target(target);
        let Some(m) = self.find_operation(method, path) else {
            return vec![format!("no operation {method} {path} in GitHub's OpenAPI description")];
        };
        let op = self.operation(method, &m.template).expect("just matched");
        let mut out = Vec::new();
        self.check_query(op, &m.template, query, &mut out);
        let request_body = match op.get("requestBody").map(|b| self.deref(b)) {
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => return vec![e],
            None => None,
        };
        let Some(request_body) = request_body else {
            if !body.is_empty() {
                out.push(format!("{method} {} takes no request body, got {} bytes", m.template, body.len()));
            }
            return out;
        };
        if body.is_empty() {
            if request_body.get("required").and_then(Value::as_bool) == Some(true) {
                out.push(format!("{method} {} requires a JSON request body", m.template));
            }
            return out;
        }
        let Some(schema) = request_body.pointer("/content/application~1json/schema") else {
            return out;
        };
        match media_type(content_type) {
            Some(mt) if is_json_media(&mt) => {}
            other => out.push(format!("request body content-type is {other:?}, expected application/json")),
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => out.extend(self.validate(schema, &v).into_iter().map(|e| format!("request body {e}"))),
            Err(e) => out.push(format!("request body is not JSON: {e}")),
        }
        out
    }

    fn check_query(&self, op: &Value, template: &str, query: &str, out: &mut Vec<String>) {
        if query.is_empty() {
            return;
        }
        let mut declared: HashMap<String, &Value> = HashMap::new();
        let path_item = self.doc.get("paths").and_then(|p| p.get(template));
        let lists = [path_item.and_then(|p| p.get("parameters")), op.get("parameters")];
        for p in lists.into_iter().flatten().filter_map(Value::as_array).flatten() {
            let Ok(p) = self.deref(p) else { continue };
            if p.get("in").and_then(Value::as_str) == Some("query") {
                if let Some(name) = p.get("name").and_then(Value::as_str) {
                    declared.insert(name.to_string(), p);
                }
            }
        }
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (percent_decode(k), percent_decode(v));
            let Some(p) = declared.get(&k) else {
                out.push(format!("query parameter `{k}` is not declared for {template}"));
                continue;
            };
            let Some(schema) = p.get("schema") else { continue };
            let Ok(schema) = self.deref(schema) else { continue };
            // Query values are strings on the wire: coerce to the declared scalar type.
            let value = match schema.get("type").and_then(Value::as_str) {
                Some("integer") => v.parse::<i64>().map(Value::from).unwrap_or(Value::String(v.clone())),
                Some("boolean") => v.parse::<bool>().map(Value::from).unwrap_or(Value::String(v.clone())),
                _ => Value::String(v.clone()),
            };
            out.extend(self.validate(schema, &value).into_iter().map(|e| format!("query parameter `{k}` {e}")));
        }
    }

    /// Problems with a response: undocumented status, wrong content type, a body not matching the
    /// status's schema. Statuses in [`STATUSES_ANY_ENDPOINT`] are accepted for every operation.
    pub fn check_response(
        &self,
        method: &str,
        target: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Vec<String> {
        let (path, _) = split_target(target);
        let Some(m) = self.find_operation(method, path) else {
            return vec![format!("no operation {method} {path} in GitHub's OpenAPI description")];
        };
        let op = self.operation(method, &m.template).expect("just matched");
        let responses = op.get("responses");
        let documented = responses.and_then(|r| r.get(status.to_string()).or_else(|| r.get("default")));
        let generic_error;
        let response = match documented {
            Some(r) => match self.deref(r) {
                Ok(r) => r,
                Err(e) => return vec![e],
            },
            None if STATUSES_ANY_ENDPOINT.contains(&status) => {
                generic_error = serde_json::json!({"content": {"application/json": {"schema":
                    {"$ref": "#/components/schemas/basic-error"}}}});
                &generic_error
            }
            None => {
                let listed: Vec<&String> =
                    responses.and_then(Value::as_object).map(|o| o.keys().collect()).unwrap_or_default();
                return vec![format!(
                    "{method} {} does not document status {status} (documented: {listed:?})",
                    m.template
                )];
            }
        };
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            if !body.is_empty() {
                return vec![format!(
                    "status {status} of {method} {} has no body in the description, got {} bytes",
                    m.template,
                    body.len()
                )];
            }
            return vec![];
        };
        let Some(schema) = content.get("application/json").and_then(|c| c.get("schema")) else {
            return vec![];
        };
        let mut out = Vec::new();
        match media_type(content_type) {
            Some(mt) if is_json_media(&mt) => {}
            other => out.push(format!("response content-type is {other:?}, expected application/json")),
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => out.extend(self.validate(schema, &v)),
            Err(e) => out.push(format!("response body is not JSON: {e}")),
        }
        out
    }

    /// Checks `value` against `schema`; each problem is `$.json.path: what is wrong`.
    pub fn validate(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.check(schema, value, "$", &mut out, 0);
        out
    }

    /// Checks against a named component schema (`#/components/schemas/<name>`).
    pub fn validate_component(&self, name: &str, value: &Value) -> Vec<String> {
        self.validate(&serde_json::json!({"$ref": format!("#/components/schemas/{name}")}), value)
    }

    fn check(&self, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>, depth: usize) {
        if depth > MAX_DEPTH {
            out.push(format!("{at}: schema nesting too deep (cycle?)"));
            return;
        }
        let Some(s) = schema.as_object() else { return };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match self.resolve_ref(r) {
                Some(target) => self.check(target, v, at, out, depth + 1),
                None => out.push(format!("{at}: unresolvable $ref {r}")),
            }
            return;
        }
        if v.is_null() && s.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, v, at, out, depth + 1);
            }
        }
        for key in ["anyOf", "oneOf"] {
            let Some(branches) = s.get(key).and_then(Value::as_array) else { continue };
            if let Some(mapped) = self.discriminated(s, v) {
                self.check(mapped, v, at, out, depth + 1);
                continue;
            }
            let mut best: Option<Vec<String>> = None;
            for b in branches {
                let mut errs = Vec::new();
                self.check(b, v, at, &mut errs, depth + 1);
                if errs.is_empty() {
                    best = None;
                    break;
                }
                if best.as_ref().is_none_or(|e| errs.len() < e.len()) {
                    best = Some(errs);
                }
            }
            if let Some(errs) = best {
                out.push(format!(
                    "{at}: matches none of the {} branches of {key}; closest: {}",
                    branches.len(),
                    errs.join("; ")
                ));
            }
        }
        let types: Vec<&str> = match s.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.is_empty() && !types.iter().any(|t| type_matches(t, v)) {
            let nullable_hint = if v.is_null() { " (the schema is not nullable)" } else { "" };
            out.push(format!(
                "{at}: expected {}, got {} {}{nullable_hint}",
                types.join(" or "),
                type_name(v),
                short(v)
            ));
            return;
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
            if !allowed.contains(v) {
                out.push(format!("{at}: {} is not one of {}", short(v), short(&Value::Array(allowed.clone()))));
            }
        }
        match v {
            Value::Object(obj) => self.check_object(s, obj, at, out, depth),
            Value::Array(items) => {
                if let Some(item_schema) = s.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{at}[{i}]"), out, depth + 1);
                    }
                }
                let n = items.len() as f64;
                if s.get("minItems").and_then(Value::as_f64).is_some_and(|m| n < m) {
                    out.push(format!("{at}: fewer items than minItems"));
                }
                if s.get("maxItems").and_then(Value::as_f64).is_some_and(|m| n > m) {
                    out.push(format!("{at}: more items than maxItems"));
                }
            }
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0);
                if s.get("minimum").and_then(Value::as_f64).is_some_and(|m| f < m) {
                    out.push(format!("{at}: {f} is below the minimum"));
                }
                if s.get("maximum").and_then(Value::as_f64).is_some_and(|m| f > m) {
                    out.push(format!("{at}: {f} is above the maximum"));
                }
            }
            Value::String(text) => {
                let n = text.chars().count() as f64;
                if s.get("minLength").and_then(Value::as_f64).is_some_and(|m| n < m) {
                    out.push(format!("{at}: shorter than minLength"));
                }
                if s.get("maxLength").and_then(Value::as_f64).is_some_and(|m| n > m) {
                    out.push(format!("{at}: longer than maxLength"));
                }
            }
            _ => {}
        }
    }

    /// The branch a `discriminator` selects for `v`, when it has the property and a mapping.
    fn discriminated<'a>(&'a self, s: &'a serde_json::Map<String, Value>, v: &Value) -> Option<&'a Value> {
        let d = s.get("discriminator")?;
        let prop = d.get("propertyName")?.as_str()?;
        let tag = v.get(prop)?.as_str()?;
        let target = d.get("mapping")?.get(tag)?.as_str()?;
        self.resolve_ref(target)
    }

    fn check_object(
        &self,
        s: &serde_json::Map<String, Value>,
        obj: &serde_json::Map<String, Value>,
        at: &str,
        out: &mut Vec<String>,
        depth: usize,
    ) {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(required) = s.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(name) {
                    out.push(format!("{at}: missing required property `{name}`"));
                }
            }
        }
        for (k, val) in obj {
            let child = format!("{at}.{k}");
            match props.and_then(|p| p.get(k)) {
                Some(sub) => self.check(sub, val, &child, out, depth + 1),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => out.push(format!("{at}: property `{k}` is not allowed here")),
                    Some(sub @ Value::Object(_)) => self.check(sub, val, &child, out, depth + 1),
                    _ => {}
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tiny description in the same shape as GitHub's, for checks that must not need the file.
    fn mini() -> OpenApi {
        OpenApi::from_value(json!({
            "openapi": "3.0.3",
            "info": {"version": "test"},
            "paths": {
                "/user": {"get": {"operationId": "users/get-authenticated", "responses": {
                    "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/user"}}}},
                    "304": {"description": "Not modified"}
                }}},
                "/users/{username}": {"get": {"operationId": "users/get-by-username", "responses": {}}},
                "/user/keys": {"post": {"operationId": "keys/create",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}}}}},
                    "responses": {"201": {"content": {"application/json": {"schema": {"type": "object"}}}}}}},
                "/search": {"get": {"operationId": "search", "parameters": [
                    {"name": "state", "in": "query", "schema": {"type": "string", "enum": ["open", "closed"]}},
                    {"name": "per_page", "in": "query", "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "ok"}}}}
            },
            "components": {"schemas": {
                "user": {"type": "object", "required": ["login", "id"], "properties": {
                    "login": {"type": "string"}, "id": {"type": "integer"},
                    "bio": {"type": "string", "nullable": true},
                    "kind": {"type": "string", "enum": ["User", "Bot"]},
                    "plan": {"type": "object", "additionalProperties": false, "properties": {"name": {"type": "string"}}},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "either": {"oneOf": [{"type": "string", "nullable": true}, {"type": "integer", "nullable": true}]}
                }},
                "basic-error": {"type": "object", "properties": {"message": {"type": "string"}}}
            }}
        }))
        .unwrap()
    }

    #[test]
    fn literal_segments_win_over_parameters() {
        let api = mini();
        assert_eq!(api.match_path("/api/v3/user").unwrap().0, "/user");
        let (t, params) = api.match_path("/users/al%20ice").unwrap();
        assert_eq!(t, "/users/{username}");
        assert_eq!(params, vec![("username".to_string(), "al ice".to_string())]);
        assert!(api.match_path("/nope").is_none());
    }

    #[test]
    fn conforming_exchange_passes() {
        let api = mini();
        let body = br#"{"login":"alice","id":1,"bio":null,"kind":"User","tags":["a"],"either":null}"#;
        assert_eq!(
            api.check_response("GET", "/api/v3/user", 200, Some("application/json; charset=utf-8"), body),
            Vec::<String>::new()
        );
        assert!(api.check_response("GET", "/user", 304, None, b"").is_empty());
        assert!(api
            .check_request("POST", "/user/keys", Some("application/json"), br#"{"key":"ssh-ed25519 AAAA"}"#)
            .is_empty());
        assert!(api.check_request("GET", "/search?state=open&per_page=30", None, b"").is_empty());
        // Bad credentials are possible on any endpoint.
        assert!(api
            .check_response("GET", "/user", 401, Some("application/json"), br#"{"message":"Bad credentials"}"#)
            .is_empty());
    }

    #[test]
    fn wrong_exchanges_are_reported() {
        let api = mini();
        let errs = api.check_response("GET", "/user", 200, Some("application/json"), br#"{"id":"1"}"#);
        assert!(errs.iter().any(|e| e.contains("missing required property `login`")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("$.id: expected integer, got string")), "{errs:?}");
        let errs = api.check_response(
            "GET",
            "/user",
            200,
            Some("text/plain"),
            br#"{"login":"a","id":1,"bio":3,"kind":"Robot","plan":{"x":1},"tags":[1],"either":true}"#,
        );
        for want in [
            "content-type",
            "$.bio: expected string",
            "$.kind: \"Robot\" is not one of",
            "`x` is not allowed",
            "$.tags[0]: expected string",
            "$.either: matches none",
        ] {
            assert!(errs.iter().any(|e| e.contains(want)), "missing {want:?} in {errs:?}");
        }
        assert_eq!(api.check_response("GET", "/user", 418, None, b"").len(), 1);
        assert!(api.check_response("DELETE", "/user", 200, None, b"")[0].contains("no operation DELETE /user"));
        assert!(api.check_request("POST", "/user/keys", None, b"")[0].contains("requires a JSON request body"));
        assert!(!api.check_request("POST", "/user/keys", Some("application/json"), br#"{"title":"t"}"#).is_empty());
        assert!(!api.check_request("GET", "/search?state=merged", None, b"").is_empty());
        assert!(!api.check_request("GET", "/search?colour=red", None, b"").is_empty());
        assert!(!api.check_request("GET", "/user", Some("application/json"), b"{}").is_empty());
    }

    /// Against the real description: a correct `GET /user` answer passes, a wrong one is caught.
    #[test]
    fn github_description_catches_a_wrong_user() {
        let api = spec();
        assert!(
            api.versions().1.starts_with("3.0"),
            "the checker assumes OpenAPI 3.0 (nullable): {:?}",
            api.versions()
        );
        let account = crate::github::Account { login: "alice".into(), id: 7 };
        let good = serde_json::to_vec(&crate::github::user_json(&account)).unwrap();
        let ct = Some("application/json; charset=utf-8");
        assert_eq!(api.check_response("GET", "/api/v3/user", 200, ct, &good), Vec::<String>::new());

        let mut bad = crate::github::user_json(&account);
        bad.as_object_mut().unwrap().remove("login");
        bad["id"] = json!("7");
        let errs = api.check_response("GET", "/api/v3/user", 200, ct, &serde_json::to_vec(&bad).unwrap());
        assert!(errs.iter().any(|e| e.contains("`login`")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("$.id: expected integer")), "{errs:?}");
    }

    #[test]
    fn loads_fast_enough() {
        spec();
        let took = load_time().unwrap();
        eprintln!("GitHub OpenAPI description loaded in {took:?}");
        assert!(took < Duration::from_secs(20), "loading took {took:?}");
    }
}
