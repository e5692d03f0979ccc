//! The Node detector: `package.json`'s package manager, its `dev` (else `start`) script, and the known
//! dev servers (see [`FRAMEWORKS`]) with the flags or environment that make them listen on every
//! interface at the planned port.

use nexus_types::protocol::PackageManagerKind;
use serde_json::Value;

use super::{Draft, Found, PORT_SLOT};
use crate::files::RepoFiles;
use crate::runtime;

/// Port of a Node service whose script and dependencies name no known framework.
const NODE_DEFAULT_PORT: u16 = 3000;

/// Detects a Node project from `package.json`; returns whether there is one.
pub(super) fn detect(files: &dyn RepoFiles, found: &mut Found) -> bool {
    let Some(text) = files.read("package.json") else { return false };
    let manifest: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let pm = runtime::detect_package_manager(files, &manifest);
    let pm_name = match pm.kind {
        PackageManagerKind::Npm => "npm",
        PackageManagerKind::Pnpm => "pnpm",
        PackageManagerKind::YarnClassic | PackageManagerKind::YarnBerry => "yarn",
        PackageManagerKind::Bun => "bun",
    };
    // Bun is not provided: installing with it would fail, and `resolve` refuses the project instead.
    if pm.kind != PackageManagerKind::Bun {
        found.setup.push(pm.install.clone());
    }
    let scripts = manifest.get("scripts").and_then(Value::as_object);
    let script = ["dev", "start"].into_iter().find_map(|name| {
        let body = scripts?.get(name)?.as_str()?;
        Some((name, body))
    });
    let Some((script, body)) = script else {
        found.labels.push(format!("node ({pm_name}, no dev or start script)"));
        return true;
    };
    let flag_port = port_from_flags(body);
    let (framework, ends_script) = match framework_in_script(body) {
        Some((framework, last)) => (Some(framework), last),
        None => (framework_from_deps(&manifest), false),
    };
    let port = flag_port.or(framework.map(|f| f.port)).unwrap_or(NODE_DEFAULT_PORT);
    let mut command = match pm.kind {
        PackageManagerKind::Npm => format!("npm run {script}"),
        PackageManagerKind::Bun => format!("bun run {script}"),
        _ => format!("{pm_name} {script}"),
    };
    let mut draft_env = vec![];
    if let Some(framework) = framework {
        // Flags reach the server only when the script ends with it: npm appends them to the last command.
        let args = if ends_script { bind_args(framework, body) } else { vec![] };
        if !args.is_empty() {
            // npm takes flags before `--` as its own; pnpm, yarn and bun pass them on.
            let separator = if pm.kind == PackageManagerKind::Npm { " --" } else { "" };
            command = format!("{command}{separator} {}", args.join(" "));
        }
        draft_env = framework.env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // `vite dev` in a SvelteKit project is SvelteKit to the person reading the plan.
        let name = match framework_from_deps(&manifest) {
            Some(meta) if framework.cli == "vite" && meta.port == framework.port => meta.name,
            _ => framework.name,
        };
        found.labels.push(format!("node ({pm_name}, script {script}, {name})"));
    } else {
        found.labels.push(format!("node ({pm_name}, script {script})"));
    }
    found.services.push(Draft { env: draft_env, ..Draft::web("web", command, port) });
    true
}

/// A dev server a `package.json` script can start, and how it is made reachable.
struct Framework {
    /// For `source`: `vite`, `next`, ...
    name: &'static str,
    /// The command a script starts it with.
    cli: &'static str,
    /// Its first argument when it serves for development; `""` stands for none (only flags).
    serves: &'static [&'static str],
    /// Dependencies that mean a project uses it (all of them), when the script does not say.
    packages: &'static [&'static str],
    /// Where it listens unless told otherwise.
    port: u16,
    /// Flags, appended to the script, that make it listen on every interface at the planned port:
    /// for servers that bind to loopback and read neither `PORT` nor `HOST`.
    args: &'static [(&'static str, &'static str)],
    /// Environment it reads for the same purpose (`PORT` is set for every service).
    env: &'static [(&'static str, &'static str)],
}

/// Vite and the tools that pass its flags on: it binds to `localhost` and reads no environment, and
/// `--strictPort` makes a taken port an error instead of a silent move to the next one, which the
/// health check would never find.
const VITE_ARGS: &[(&str, &str)] = &[("--host", "0.0.0.0"), ("--port", PORT_SLOT), ("--strictPort", "")];
const HOST_PORT_ARGS: &[(&str, &str)] = &[("--host", "0.0.0.0"), ("--port", PORT_SLOT)];

/// Known dev servers. Order matters when only dependencies say which one: meta-frameworks come before
/// the bundler they build on (Nuxt, Astro, SvelteKit and React Router all depend on Vite).
const FRAMEWORKS: &[Framework] = &[
    // `next dev` listens on every interface and reads PORT.
    Framework { name: "next", cli: "next", serves: &["dev"], packages: &["next"], port: 3000, args: &[], env: &[] },
    Framework {
        name: "nuxt",
        cli: "nuxt",
        serves: &["dev", ""],
        packages: &["nuxt"],
        port: 3000,
        args: HOST_PORT_ARGS,
        env: &[("HOST", "0.0.0.0")],
    },
    Framework {
        name: "nuxt",
        cli: "nuxi",
        serves: &["dev"],
        packages: &["nuxt"],
        port: 3000,
        args: HOST_PORT_ARGS,
        env: &[("HOST", "0.0.0.0")],
    },
    Framework {
        name: "astro",
        cli: "astro",
        serves: &["dev", "start"],
        packages: &["astro"],
        port: 4321,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    Framework {
        name: "angular",
        cli: "ng",
        serves: &["serve", "s"],
        packages: &["@angular/cli"],
        port: 4200,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    Framework {
        name: "gatsby",
        cli: "gatsby",
        serves: &["develop"],
        packages: &["gatsby"],
        port: 8000,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    Framework {
        name: "react-router",
        cli: "react-router",
        serves: &["dev"],
        packages: &["@react-router/dev"],
        port: 5173,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    // Remix 2 on Vite, then classic Remix, whose app server reads PORT.
    Framework {
        name: "remix",
        cli: "remix",
        serves: &["vite:dev"],
        packages: &["@remix-run/dev", "vite"],
        port: 5173,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    Framework {
        name: "remix",
        cli: "remix",
        serves: &["dev"],
        packages: &["@remix-run/dev"],
        port: 3000,
        args: &[],
        env: &[],
    },
    // SvelteKit's script is `vite dev`; `svelte-kit dev` is its pre-1.0 command.
    Framework {
        name: "sveltekit",
        cli: "svelte-kit",
        serves: &["dev"],
        packages: &["@sveltejs/kit"],
        port: 5173,
        args: HOST_PORT_ARGS,
        env: &[],
    },
    Framework {
        name: "vite",
        cli: "vite",
        serves: &["", "dev", "serve"],
        packages: &["vite"],
        port: 5173,
        args: VITE_ARGS,
        env: &[],
    },
    // Create React App reads HOST and PORT; BROWSER=none stops it trying to open one.
    Framework {
        name: "create-react-app",
        cli: "react-scripts",
        serves: &["start"],
        packages: &["react-scripts"],
        port: 3000,
        args: &[],
        env: &[("HOST", "0.0.0.0"), ("BROWSER", "none")],
    },
    Framework { name: "express", cli: "", serves: &[], packages: &["express"], port: 3000, args: &[], env: &[] },
];

/// Splits a script into its commands (at `&&`, `||`, `;`, `|` and `&`).
fn commands(script: &str) -> Vec<&str> {
    script.split(['&', '|', ';']).map(str::trim).filter(|c| !c.is_empty()).collect()
}

/// Splits a script into words, treating `&&`, `;` and `|` as separators too.
fn words(script: &str) -> Vec<&str> {
    script.split(|c: char| c.is_whitespace() || ";|&()".contains(c)).filter(|w| !w.is_empty()).collect()
}

/// The dev server a script starts, and whether it is the script's last command.
fn framework_in_script(script: &str) -> Option<(&'static Framework, bool)> {
    let commands = commands(script);
    commands.iter().enumerate().find_map(|(i, command)| {
        // `NODE_ENV=development cross-env X=1 npx vite ...`: the program is the first other word.
        let mut words =
            words(command).into_iter().skip_while(|w| w.contains('=') || ["cross-env", "npx", "exec"].contains(w));
        let program = words.next()?;
        let program = program.rsplit('/').next().unwrap_or(program);
        let first = words.next().filter(|w| !w.starts_with('-')).unwrap_or("");
        let framework = FRAMEWORKS.iter().find(|f| f.cli == program && f.serves.contains(&first))?;
        Some((framework, i + 1 == commands.len()))
    })
}

fn framework_from_deps(manifest: &Value) -> Option<&'static Framework> {
    let has = |dep: &str| {
        ["dependencies", "devDependencies"]
            .iter()
            .any(|section| manifest.get(section).and_then(|d| d.get(dep)).is_some())
    };
    FRAMEWORKS.iter().find(|f| f.packages.iter().all(|p| has(p)))
}

/// The framework's binding flags the script's last command does not give itself. The port flag carries
/// the planned port, so a port found elsewhere in the script (`PORT=4000 vite`) is the one it gets.
fn bind_args(framework: &Framework, script: &str) -> Vec<String> {
    let last = commands(script).pop().unwrap_or_default();
    let given = words(last);
    let has = |names: &[&str]| given.iter().any(|w| names.iter().any(|n| *w == *n || w.starts_with(&format!("{n}="))));
    framework
        .args
        .iter()
        .filter(|(flag, _)| match *flag {
            "--host" => !has(&["--host", "-H", "--hostname"]),
            "--port" => !has(&["--port", "-p"]),
            flag => !has(&[flag]),
        })
        .map(|(flag, value)| if value.is_empty() { flag.to_string() } else { format!("{flag} {value}") })
        .collect()
}

/// A port given in a script: `--port 4000`, `--port=4000`, `-p 4000`, `-p=4000` or `PORT=4000 ...`.
fn port_from_flags(script: &str) -> Option<u16> {
    let words = words(script);
    let parse = |s: &str| s.trim_matches(|c| c == '"' || c == '\'').parse::<u16>().ok().filter(|p| *p > 0);
    words.iter().enumerate().find_map(|(i, word)| {
        if let Some(value) = ["--port=", "-p=", "PORT="].iter().find_map(|prefix| word.strip_prefix(prefix)) {
            return parse(value);
        }
        if *word == "--port" || *word == "-p" {
            return words.get(i + 1).and_then(|next| parse(next));
        }
        None
    })
}
