//! Why a setup step (or a service) failed, read from the end of its log, and what to do about it.
//!
//! Pure: the supervisor hands in the log's last lines and the plan; tests feed real tools' messages
//! (npm, pnpm, yarn, pip, uv, curl, git, Vite, Next.js). The log is read from its end, because the
//! cause of a failure is what a tool prints last; warnings (npm's `EBADENGINE`) count only when no
//! error explains the failure.

use nexus_types::protocol::ProjectPlan;

/// What a failed step's log says went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The workspace does not trust a server's TLS certificate (a TLS-inspecting proxy whose CA the
    /// workspace lacks, typically).
    Tls {
        /// The server, when the log names it.
        host: Option<String>,
    },
    /// A server (registry, index, git host) could not be resolved or connected to.
    Unreachable {
        /// The server, when the log names it.
        host: Option<String>,
    },
    /// The project needs another Node than the workspace runs.
    Engine {
        /// The versions it asks for (`^20.19.0 || >=22.12.0`), from the log or the plan.
        needs: Option<String>,
        /// The version the workspace ran (`v18.20.4`), when the log says.
        has: Option<String>,
    },
    /// The lock file does not match the manifest, so a frozen install refuses to run.
    LockOutOfSync {
        /// `package-lock.json`, `pnpm-lock.yaml`, ...
        lock_file: &'static str,
        /// The command that brings it up to date (`npm install`).
        fix: &'static str,
    },
    /// Nothing recognised.
    Unknown,
}

/// Reads the cause from a log (its last lines are enough; older lines are ignored anyway).
pub(crate) fn classify(log: &str) -> Cause {
    let lines: Vec<&str> = log.lines().collect();
    let mut warned_engine = None;
    for i in (0..lines.len()).rev() {
        let line = lines[i];
        // The lines after this one: npm prints the versions of an engine mismatch below its first line.
        let window = lines[i..lines.len().min(i + 6)].join("\n");
        if let Some(cause) = lock_out_of_sync(line) {
            return cause;
        }
        if is_tls(line) {
            return Cause::Tls { host: host_in(line) };
        }
        if is_engine(line) {
            let cause = Cause::Engine { needs: needed_node(&window), has: running_node(&window) };
            if is_warning(line) {
                // npm's warning spans lines, the versions below its first; the scan goes upwards, so
                // the line that sees them comes last.
                if warned_engine.is_none() || matches!(cause, Cause::Engine { needs: Some(_), .. }) {
                    warned_engine = Some(cause);
                }
                continue;
            }
            return cause;
        }
        if is_unreachable(line) {
            let host = host_in(line);
            // A setup step that talks to a local database is not a network problem of the node.
            if host.as_deref().is_some_and(is_local) {
                continue;
            }
            return Cause::Unreachable { host };
        }
    }
    warned_engine.unwrap_or(Cause::Unknown)
}

impl Cause {
    /// The next step for people, or `None` when the cause is unknown. The plan supplies what the log
    /// may not say (the Node version the project asks for).
    pub(crate) fn hint(&self, plan: &ProjectPlan) -> Option<String> {
        let restart = "then stop and start the workspace";
        Some(match self {
            Cause::Tls { host } => format!(
                "the workspace does not trust the TLS certificate of {}: if this network inspects TLS, its CA \
                 certificate must be among the node's CA certificates (/usr/local/share/ca-certificates, or \
                 `nexus agent --ca-certificates FILE`), which every workspace gets when it starts; check those and \
                 the node's proxy settings, {restart}",
                host.as_deref().unwrap_or("a server the setup downloads from")
            ),
            Cause::Unreachable { host } => format!(
                "the workspace cannot reach {}: check the node's network and proxy settings (`HTTPS_PROXY`, \
                 `NO_PROXY` and the npm registry or PyPI index `nexus agent` passes on to workspaces), {restart}",
                host.as_deref().unwrap_or("a server the setup downloads from")
            ),
            Cause::Engine { needs, has } => {
                let needs = needs
                    .clone()
                    .or_else(|| plan.runtime.node.as_ref().and_then(|n| n.version.as_ref()).map(|v| v.spec.clone()));
                let has = has.as_deref().map(|h| format!(" (the workspace has {h})")).unwrap_or_default();
                let what = match needs {
                    Some(v) => format!("this project needs Node {v}{has}"),
                    None => format!("this project needs a newer Node{has}"),
                };
                format!(
                    "{what}: name the version in `.nvmrc` or `engines.node` in package.json, so the node installs \
                     it, {restart}"
                )
            }
            Cause::LockOutOfSync { lock_file, fix } => format!(
                "{lock_file} is out of sync with the project's manifest: run `{fix}` in the project, commit \
                 {lock_file} and push; then `git pull` in the workspace and stop and start it"
            ),
            Cause::Unknown => return None,
        })
    }
}

fn lock_out_of_sync(line: &str) -> Option<Cause> {
    let found = |lock_file, fix| Some(Cause::LockOutOfSync { lock_file, fix });
    if line.contains("can only install packages when your package.json and package-lock.json") {
        return found("package-lock.json", "npm install");
    }
    if line.contains("ERR_PNPM_OUTDATED_LOCKFILE") {
        return found("pnpm-lock.yaml", "pnpm install");
    }
    if line.contains("Your lockfile needs to be updated, but yarn was run with `--frozen-lockfile`")
        || line.contains("The lockfile would have been modified by this install, which is explicitly forbidden")
    {
        return found("yarn.lock", "yarn install");
    }
    if line.contains("uv.lock") && line.contains("needs to be updated") {
        return found("uv.lock", "uv lock");
    }
    if line.contains("poetry.lock was last generated") {
        return found("poetry.lock", "poetry lock");
    }
    None
}

fn is_tls(line: &str) -> bool {
    const PATTERNS: &[&str] = &[
        "self-signed certificate in certificate chain",
        "self signed certificate in certificate chain",
        "SELF_SIGNED_CERT_IN_CHAIN",
        "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
        "unable to get local issuer certificate",
        "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
        "CERTIFICATE_VERIFY_FAILED",
        "certificate verify failed",
        "SSL certificate problem",
    ];
    PATTERNS.iter().any(|p| line.contains(p))
}

fn is_unreachable(line: &str) -> bool {
    const PATTERNS: &[&str] = &[
        "ENOTFOUND",
        "EAI_AGAIN",
        "ECONNREFUSED",
        "ETIMEDOUT",
        "getaddrinfo",
        "Could not resolve host",
        "Failed to establish a new connection",
        "Temporary failure in name resolution",
        "Network is unreachable",
    ];
    PATTERNS.iter().any(|p| line.contains(p))
}

fn is_engine(line: &str) -> bool {
    const PATTERNS: &[&str] = &[
        "EBADENGINE",
        "Unsupported engine",
        "ERR_PNPM_UNSUPPORTED_ENGINE",
        "The engine \"node\" is incompatible",
        "requires Node.js version",
    ];
    PATTERNS.iter().any(|p| line.contains(p))
        // Next.js: `For Next.js, Node.js version "^18.18.0 || ..." is required.`
        || (line.contains("Node.js version") && line.contains("is required"))
        // A dependency importing what an old Node lacks (Vite on Node 18: `styleText` from `node:util`).
        || (line.contains("does not provide an export named") && line.contains("'node:"))
}

fn is_warning(line: &str) -> bool {
    let l = line.trim_start().to_ascii_lowercase();
    l.starts_with("npm warn") || l.starts_with("warning ") || l.starts_with("warn ")
}

/// The Node versions a project asks for, as the tool printed them.
fn needed_node(text: &str) -> Option<String> {
    let quoted = |after: &str, quote: char| {
        let rest = &text[text.find(after)? + after.len()..];
        let rest = rest.trim_start().strip_prefix(quote)?;
        Some(rest[..rest.find(quote)?].to_string())
    };
    quoted("required: { node:", '\'')
        .or_else(|| quoted("Required: {\"node\":", '"'))
        .or_else(|| quoted("Expected version", '"'))
        .or_else(|| {
            // pnpm: `Expected version: >=20`.
            let rest = &text[text.find("Expected version: ")? + "Expected version: ".len()..];
            Some(rest.lines().next()?.trim().to_string())
        })
        .or_else(|| quoted("Node.js version", '"'))
        .or_else(|| {
            // Vite: `Vite requires Node.js version 20.19+ or 22.12+.`
            let rest = &text[text.find("requires Node.js version ")? + "requires Node.js version ".len()..];
            let end = rest.find(". ").or_else(|| rest.find('\n')).unwrap_or(rest.len());
            Some(rest[..end].trim_end_matches('.').trim().to_string())
        })
        .filter(|v| !v.is_empty() && v.len() <= 80)
}

/// The Node version the workspace ran, when the tool says.
fn running_node(text: &str) -> Option<String> {
    fn after(text: &str, marker: &str) -> Option<String> {
        let rest = &text[text.find(marker)? + marker.len()..];
        let word: String = rest
            .trim_start_matches([' ', '\'', '"', ':'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let word = word.trim_end_matches('.').to_string();
        word.chars().any(|c| c.is_ascii_digit()).then_some(word)
    }
    after(text, "current: { node:")
        // npm's `Actual:   {"npm":"10.8.2","node":"v18.20.4"}`.
        .or_else(|| after(&text[text.find("Actual:")?..], "\"node\":"))
        .or_else(|| after(text, "Got"))
        .or_else(|| after(text, "You are using Node.js"))
        // Node's own last line after an uncaught error: `Node.js v18.20.4`.
        .or_else(|| after(text, "Node.js v").map(|v| format!("v{v}")))
}

/// The host a line names: the first URL's, urllib3's `host='...'`, or the name after `ENOTFOUND` and
/// friends.
fn host_in(line: &str) -> Option<String> {
    let from_url = line.match_indices("://").find_map(|(i, _)| {
        let rest = &line[i + 3..];
        let end = rest.find(['/', '\'', '"', ' ', ')', ',', '>']).unwrap_or(rest.len());
        let host = rest[..end].rsplit('@').next().unwrap_or("");
        (!host.is_empty() && host != "curl.se").then(|| host.to_string())
    });
    let after = |marker: &str| {
        let rest = &line[line.find(marker)? + marker.len()..];
        let word: String = rest
            .trim_start_matches([' ', '\'', '"', ':'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
            .collect();
        let word = word.trim_end_matches(['.', ':']).to_string();
        (!word.is_empty()).then_some(word)
    };
    let host = from_url
        .or_else(|| after("host='"))
        .or_else(|| after("ENOTFOUND"))
        .or_else(|| after("EAI_AGAIN"))
        .or_else(|| after("Could not resolve host"))
        .or_else(|| after("ECONNREFUSED"))
        .or_else(|| after("ETIMEDOUT"))?;
    Some(host.strip_suffix(":443").unwrap_or(&host).to_string())
}

fn is_local(host: &str) -> bool {
    let name =
        host.rsplit_once(':').map_or(host, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    matches!(name, "localhost" | "127.0.0.1" | "::1" | "[::1]" | "0.0.0.0") || name.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_types::protocol::{NodeRuntime, PackageManager, PackageManagerKind, VersionRequest};

    fn hint(log: &str) -> String {
        classify(log).hint(&ProjectPlan::default()).unwrap_or_default()
    }

    #[test]
    fn tls_failures_of_every_tool_name_the_host() {
        let cases = [
            (
                "npm error code SELF_SIGNED_CERT_IN_CHAIN\nnpm error errno SELF_SIGNED_CERT_IN_CHAIN\nnpm error request to https://registry.npmjs.org/react failed, reason: self-signed certificate in certificate chain\nnpm error A complete log of this run can be found in: /home/dev/.npm/_logs/x.log\n",
                Some("registry.npmjs.org"),
            ),
            (
                "npm error code UNABLE_TO_GET_ISSUER_CERT_LOCALLY\nnpm error request to https://registry.npmjs.org/vite failed, reason: unable to get local issuer certificate\n",
                Some("registry.npmjs.org"),
            ),
            (
                "WARNING: Retrying (Retry(total=0)) after connection broken by 'SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in certificate chain (_ssl.c:1006)'))': /simple/django/\nERROR: Could not find a version that satisfies the requirement django\nCould not fetch URL https://pypi.org/simple/django/: There was a problem confirming the ssl certificate: HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded with url: /simple/django/ (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in certificate chain (_ssl.c:1006)'))) - skipping\n",
                Some("pypi.org"),
            ),
            (
                "curl: (60) SSL certificate problem: self-signed certificate in certificate chain\nMore details here: https://curl.se/docs/sslcerts.html\n",
                None,
            ),
            (
                "fatal: unable to access 'https://github.com/acme/app.git/': SSL certificate problem: unable to get local issuer certificate\n",
                Some("github.com"),
            ),
        ];
        for (log, host) in cases {
            assert_eq!(classify(log), Cause::Tls { host: host.map(str::to_string) }, "{log}");
        }
        let h = hint(cases[0].0);
        assert!(h.starts_with("the workspace does not trust the TLS certificate of registry.npmjs.org"), "{h}");
        assert!(h.contains("nexus agent --ca-certificates"), "{h}");
    }

    #[test]
    fn unreachable_registries_are_the_nodes_network() {
        let cases = [
            ("npm error code ENOTFOUND\nnpm error syscall getaddrinfo\nnpm error errno ENOTFOUND\nnpm error network request to https://registry.npmjs.org/react failed, reason: getaddrinfo ENOTFOUND registry.npmjs.org\n", Some("registry.npmjs.org")),
            ("npm error code EAI_AGAIN\nnpm error errno EAI_AGAIN\nnpm error request to https://registry.npmjs.org/vite failed, reason: getaddrinfo EAI_AGAIN registry.npmjs.org\n", Some("registry.npmjs.org")),
            ("npm error code ECONNREFUSED\nnpm error errno ECONNREFUSED\nnpm error FetchError: request to http://10.0.0.1:4873/vite failed, reason: connect ECONNREFUSED 10.0.0.1:4873\n", Some("10.0.0.1:4873")),
            ("curl: (6) Could not resolve host: deb.nodesource.com\n", Some("deb.nodesource.com")),
            ("WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/flask/\n", None),
        ];
        for (log, host) in cases {
            assert_eq!(classify(log), Cause::Unreachable { host: host.map(str::to_string) }, "{log}");
        }
        let h = hint(cases[0].0);
        assert!(
            h.starts_with("the workspace cannot reach registry.npmjs.org: check the node's network and proxy"),
            "{h}"
        );
    }

    #[test]
    fn a_local_service_refusing_is_not_the_nodes_network() {
        let log = "Error: connect ECONNREFUSED 127.0.0.1:5432\n    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)\n";
        assert_eq!(classify(log), Cause::Unknown);
    }

    #[test]
    fn engine_mismatches_name_the_node_the_project_needs() {
        let vite = "file:///home/dev/app/node_modules/vite/dist/node/cli.js:3\nimport { styleText } from 'node:util';\n         ^^^^^^^^^\nSyntaxError: The requested module 'node:util' does not provide an export named 'styleText'\n    at ModuleJob._instantiate (node:internal/modules/esm/module_job:123:21)\n\nNode.js v18.20.4\n";
        assert_eq!(classify(vite), Cause::Engine { needs: None, has: Some("v18.20.4".into()) });
        let cases = [
            ("npm error code EBADENGINE\nnpm error engine Unsupported engine\nnpm error engine Not compatible with your version of node/npm: vite@7.0.0\nnpm error notsup Required: {\"node\":\"^20.19.0 || >=22.12.0\"}\nnpm error notsup Actual:   {\"npm\":\"10.8.2\",\"node\":\"v18.20.4\"}\n", "^20.19.0 || >=22.12.0", Some("v18.20.4")),
            ("error vite@7.0.0: The engine \"node\" is incompatible with this module. Expected version \"^20.19.0 || >=22.12.0\". Got \"18.20.4\"\nerror Found incompatible module.\n", "^20.19.0 || >=22.12.0", Some("18.20.4")),
            (" ERR_PNPM_UNSUPPORTED_ENGINE  Unsupported environment (bad pnpm and/or Node.js version)\n\nYour Node version is incompatible with \"/home/dev/app\".\n\nExpected version: >=22.12\nGot: v18.20.4\n", ">=22.12", Some("v18.20.4")),
            ("You are using Node.js 18.17.0. For Next.js, Node.js version \"^18.18.0 || ^19.8.0 || >= 20.0.0\" is required.\n", "^18.18.0 || ^19.8.0 || >= 20.0.0", Some("18.17.0")),
            ("You are using Node.js 18.20.4. Vite requires Node.js version 20.19+ or 22.12+. Please upgrade your Node.js version.\n", "20.19+ or 22.12+", Some("18.20.4")),
        ];
        for (log, needs, has) in cases {
            assert_eq!(
                classify(log),
                Cause::Engine { needs: Some(needs.to_string()), has: has.map(str::to_string) },
                "{log}"
            );
        }
        assert_eq!(
            hint(cases[1].0),
            "this project needs Node ^20.19.0 || >=22.12.0 (the workspace has 18.20.4): name the version in \
             `.nvmrc` or `engines.node` in package.json, so the node installs it, then stop and start the workspace"
        );
        // Without a version in the log, the plan's request is named.
        let plan = ProjectPlan {
            runtime: nexus_types::protocol::RuntimePlan {
                node: Some(NodeRuntime {
                    version: Some(VersionRequest {
                        spec: ">=22".into(),
                        file: "package.json".into(),
                        key: Some("engines.node".into()),
                        line: 3,
                        column: 13,
                    }),
                    package_manager: PackageManager {
                        kind: PackageManagerKind::Npm,
                        version: None,
                        hash: None,
                        source: "default".into(),
                        lock_file: None,
                        install: "npm install".into(),
                    },
                }),
                python: None,
            },
            ..Default::default()
        };
        let h = classify(vite).hint(&plan).unwrap();
        assert!(h.starts_with("this project needs Node >=22 (the workspace has v18.20.4):"), "{h}");
        assert!(
            hint(vite).starts_with("this project needs a newer Node (the workspace has v18.20.4):"),
            "{}",
            hint(vite)
        );
    }

    #[test]
    fn an_engine_warning_yields_to_the_error_that_failed_the_step() {
        let log = "npm warn EBADENGINE Unsupported engine {\nnpm warn EBADENGINE   package: 'vite@7.0.0',\nnpm warn EBADENGINE   required: { node: '^20.19.0 || >=22.12.0' },\nnpm warn EBADENGINE   current: { node: 'v18.20.4', npm: '10.7.0' }\nnpm warn EBADENGINE }\nnpm error code ECONNRESET\nnpm error request to https://registry.npmjs.org/x failed, reason: self-signed certificate in certificate chain\n";
        assert_eq!(classify(log), Cause::Tls { host: Some("registry.npmjs.org".into()) });
        // With nothing else to go on, the warning is the best explanation there is.
        let only_warning = "npm warn EBADENGINE Unsupported engine {\nnpm warn EBADENGINE   package: 'vite@7.0.0',\nnpm warn EBADENGINE   required: { node: '^20.19.0 || >=22.12.0' },\nnpm warn EBADENGINE   current: { node: 'v18.20.4', npm: '10.7.0' }\nnpm warn EBADENGINE }\nnpm error code 1\n";
        assert_eq!(
            classify(only_warning),
            Cause::Engine { needs: Some("^20.19.0 || >=22.12.0".into()), has: Some("v18.20.4".into()) }
        );
    }

    #[test]
    fn out_of_sync_lock_files_say_how_to_update_them() {
        let cases = [
            ("npm error code EUSAGE\nnpm error\nnpm error `npm ci` can only install packages when your package.json and package-lock.json or npm-shrinkwrap.json are in sync. Please update your lock file with `npm install` before continuing.\n", "package-lock.json", "npm install"),
            (" ERR_PNPM_OUTDATED_LOCKFILE  Cannot install with \"frozen-lockfile\" because pnpm-lock.yaml is not up to date with <ROOT>/package.json\n", "pnpm-lock.yaml", "pnpm install"),
            ("error Your lockfile needs to be updated, but yarn was run with `--frozen-lockfile`.\n", "yarn.lock", "yarn install"),
            ("➤ YN0028: │ The lockfile would have been modified by this install, which is explicitly forbidden.\n", "yarn.lock", "yarn install"),
            ("error: The lockfile at `uv.lock` needs to be updated, but `--locked` was provided. To update the lockfile, run `uv lock`.\n", "uv.lock", "uv lock"),
        ];
        for (log, lock_file, fix) in cases {
            assert_eq!(classify(log), Cause::LockOutOfSync { lock_file, fix }, "{log}");
        }
        let h = hint(cases[0].0);
        assert!(
            h.starts_with("package-lock.json is out of sync with the project's manifest: run `npm install`"),
            "{h}"
        );
    }

    #[test]
    fn anything_else_is_unknown() {
        assert_eq!(classify(""), Cause::Unknown);
        assert_eq!(classify("$ make assets\nmake: *** No rule to make target 'assets'.  Stop.\n"), Cause::Unknown);
        assert_eq!(Cause::Unknown.hint(&ProjectPlan::default()), None);
    }
}
