//! Opening URLs in the browser and finding programs (the editor's CLI), behind small traits so the
//! commands that use them can be tested with fakes.
//!
//! Opening is best effort: every caller prints the URL as well, and an [`Opener`] returns an error when
//! nothing could open it so the caller can say "open this URL yourself" instead of waiting.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Env var choosing how URLs are opened: `none` never opens anything (the caller just prints the URL);
/// any other value is a command run with the URL (as its last argument, or in place of `%s`).
const BROWSER_ENV: &str = "NEXUS_BROWSER";

/// Opens URLs for the user.
pub trait Opener: Send + Sync {
    /// Opens `url` in the user's browser (or the app registered for its scheme, e.g. `cursor://`).
    /// An error means nothing was opened and the caller should print the URL for the user to open.
    fn open_url(&self, url: &str) -> io::Result<()>;
}

/// Opens URLs with `$NEXUS_BROWSER`, else `open` (macOS) or `xdg-open` (Linux).
#[derive(Debug, Clone, Default)]
pub struct SystemOpener {
    /// The value of [`BROWSER_ENV`], if set and not empty.
    pub browser: Option<String>,
}

/// How long a launcher may take before we assume it is the browser itself, still running, and succeeded.
const LAUNCH_WAIT: Duration = Duration::from_secs(3);

impl SystemOpener {
    /// Reads [`BROWSER_ENV`].
    pub fn from_env() -> SystemOpener {
        SystemOpener { browser: std::env::var(BROWSER_ENV).ok().filter(|b| !b.trim().is_empty()) }
    }

    /// The command line that would open `url`, or an error saying why none can.
    fn command_for(&self, url: &str) -> io::Result<Vec<String>> {
        self.command_with(url, &|name| std::env::var(name).ok(), &|name| find_on_path(name))
    }

    /// [`SystemOpener::command_for`] with the environment and `PATH` look-up passed in.
    fn command_with(
        &self,
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
        find: &dyn Fn(&str) -> Option<PathBuf>,
    ) -> io::Result<Vec<String>> {
        if let Some(browser) = &self.browser {
            if browser.trim() == "none" {
                return Err(io::Error::other(format!("{BROWSER_ENV}=none: not opening URLs")));
            }
            let words: Vec<&str> = browser.split_whitespace().collect();
            let mut argv: Vec<String> = words.iter().map(|w| w.replace("%s", url)).collect();
            if !words.iter().any(|w| w.contains("%s")) {
                argv.push(url.to_string());
            }
            return Ok(argv);
        }
        if cfg!(target_os = "macos") {
            return Ok(vec!["open".to_string(), url.to_string()]);
        }
        let has = |name: &str| env(name).is_some_and(|v| !v.is_empty());
        // WSL: hand the URL to Windows, which is where the user's browser and editor are.
        if has("WSL_DISTRO_NAME") {
            if let Some(wslview) = find("wslview") {
                return Ok(vec![wslview.to_string_lossy().into_owned(), url.to_string()]);
            }
        }
        // Without a display, xdg-open falls back to a text browser that takes over the terminal.
        if !has("DISPLAY") && !has("WAYLAND_DISPLAY") {
            return Err(io::Error::other("no graphical display (DISPLAY and WAYLAND_DISPLAY are unset)"));
        }
        match find("xdg-open") {
            Some(path) => Ok(vec![path.to_string_lossy().into_owned(), url.to_string()]),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "xdg-open is not installed")),
        }
    }
}

impl Opener for SystemOpener {
    fn open_url(&self, url: &str) -> io::Result<()> {
        let argv = self.command_for(url)?;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Launchers print toolkit noise; it would land in the middle of our output.
            .stderr(Stdio::null())
            .spawn()?;
        // `open` and `xdg-open` return at once with a meaningful status; a browser command given in
        // NEXUS_BROWSER may keep running, which means it opened.
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(io::Error::other(format!("`{}` exited with {status}", argv[0])))
                };
            }
            if start.elapsed() > LAUNCH_WAIT {
                // Reap it whenever it exits, so it does not linger as a zombie.
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Records URLs instead of opening them; optionally fails, like a machine without a browser.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct RecordingOpener {
    /// URLs asked for, in order (also when failing).
    urls: std::sync::Mutex<Vec<String>>,
    /// Answer every call with an error.
    fail: bool,
}

#[cfg(test)]
impl RecordingOpener {
    /// An opener that fails every call, like a headless machine.
    pub(crate) fn failing() -> RecordingOpener {
        RecordingOpener { urls: Default::default(), fail: true }
    }

    /// The URLs asked for so far.
    pub(crate) fn urls(&self) -> Vec<String> {
        nexus_types::diagnostics::lock(&self.urls).clone()
    }
}

#[cfg(test)]
impl Opener for RecordingOpener {
    fn open_url(&self, url: &str) -> io::Result<()> {
        nexus_types::diagnostics::lock(&self.urls).push(url.to_string());
        if self.fail {
            Err(io::Error::other("no browser (RecordingOpener::failing)"))
        } else {
            Ok(())
        }
    }
}

/// Finds programs, so editor detection can be tested without the editor installed.
pub trait Programs: Send + Sync {
    /// The full path of `name`, if installed.
    fn find(&self, name: &str) -> Option<PathBuf>;
}

/// Looks on `PATH`, then in the places macOS apps keep their command-line tools
/// (see [`app_bundle_candidates`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostPrograms;

impl Programs for HostPrograms {
    fn find(&self, name: &str) -> Option<PathBuf> {
        if let Some(path) = find_on_path(name) {
            return Some(path);
        }
        if !cfg!(target_os = "macos") {
            return None;
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        app_bundle_candidates(name, home.as_deref()).into_iter().find(|p| is_executable(p))
    }
}

/// A fixed table of installed programs.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub(crate) struct FakePrograms(Vec<(String, PathBuf)>);

#[cfg(test)]
impl FakePrograms {
    /// Marks `name` as installed at `path`.
    pub(crate) fn with(mut self, name: &str, path: impl Into<PathBuf>) -> FakePrograms {
        self.0.push((name.to_string(), path.into()));
        self
    }
}

#[cfg(test)]
impl Programs for FakePrograms {
    fn find(&self, name: &str) -> Option<PathBuf> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone())
    }
}

/// The executable `name` on `$PATH` (or `name` itself when it contains a `/` and is executable).
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    find_in_path_list(name, &std::env::var_os("PATH").unwrap_or_default())
}

/// [`find_on_path`] with the `PATH` value passed in.
fn find_in_path_list(name: &str, path_list: &std::ffi::OsStr) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    // An empty entry means the current directory in POSIX, a trap we do not follow.
    std::env::split_paths(path_list)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Where macOS installs keep an editor's CLI when the user never ran "Install 'cursor' command in PATH":
/// inside the app bundle, in `/Applications` or `~/Applications`. Empty for programs we do not know.
fn app_bundle_candidates(program: &str, home: Option<&Path>) -> Vec<PathBuf> {
    let app = match program {
        "cursor" => "Cursor.app",
        "code" => "Visual Studio Code.app",
        "code-insiders" => "Visual Studio Code - Insiders.app",
        _ => return Vec::new(),
    };
    let inside = format!("{app}/Contents/Resources/app/bin/{program}");
    let mut out = vec![Path::new("/Applications").join(&inside)];
    if let Some(home) = home {
        out.push(home.join("Applications").join(&inside));
    }
    out
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn opener(browser: Option<&str>) -> SystemOpener {
        SystemOpener { browser: browser.map(str::to_string) }
    }

    fn command(o: &SystemOpener, env: &[(&str, &str)], installed: &[&str]) -> io::Result<Vec<String>> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let installed: Vec<String> = installed.iter().map(|s| s.to_string()).collect();
        o.command_with(
            "https://github.com/login/device",
            &|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            &|name| installed.iter().any(|i| i == name).then(|| PathBuf::from(format!("/usr/bin/{name}"))),
        )
    }

    #[test]
    fn nexus_browser_chooses_the_command_or_turns_opening_off() {
        let err = command(&opener(Some("none")), &[("DISPLAY", ":0")], &["xdg-open"]).unwrap_err();
        assert!(err.to_string().contains("NEXUS_BROWSER=none"));
        assert_eq!(
            command(&opener(Some("firefox --new-window")), &[], &[]).unwrap(),
            ["firefox", "--new-window", "https://github.com/login/device"]
        );
        assert_eq!(
            command(&opener(Some("sh -c echo>>/tmp/x;%s")), &[], &[]).unwrap(),
            ["sh", "-c", "echo>>/tmp/x;https://github.com/login/device"]
        );
    }

    #[test]
    #[cfg(not(target_os = "macos"))]
    fn linux_uses_xdg_open_only_with_a_display() {
        let o = opener(None);
        assert_eq!(command(&o, &[("DISPLAY", ":0")], &["xdg-open"]).unwrap()[0], "/usr/bin/xdg-open");
        assert_eq!(command(&o, &[("WAYLAND_DISPLAY", "wayland-0")], &["xdg-open"]).unwrap()[0], "/usr/bin/xdg-open");
        assert!(command(&o, &[], &["xdg-open"]).unwrap_err().to_string().contains("no graphical display"));
        assert_eq!(command(&o, &[("DISPLAY", ":0")], &[]).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(command(&o, &[("WSL_DISTRO_NAME", "Ubuntu")], &["wslview"]).unwrap()[0], "/usr/bin/wslview");
    }

    #[test]
    fn the_system_opener_runs_the_command_and_reports_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("opened");
        let script = dir.path().join("browser");
        std::fs::write(&script, format!("#!/bin/sh\necho \"$1\" > {}\n", out.display())).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        opener(Some(script.to_str().unwrap())).open_url("http://x/y?a=1&b=2").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "http://x/y?a=1&b=2\n");
        assert!(opener(Some("false")).open_url("http://x").is_err());
        assert!(opener(Some("/nonexistent/browser")).open_url("http://x").is_err());
        assert!(opener(Some("none")).open_url("http://x").is_err());
    }

    #[test]
    fn the_recording_opener_records_and_can_fail() {
        let ok = RecordingOpener::default();
        ok.open_url("a").unwrap();
        ok.open_url("b").unwrap();
        assert_eq!(ok.urls(), ["a", "b"]);
        let failing = RecordingOpener::failing();
        assert!(failing.open_url("c").is_err());
        assert_eq!(failing.urls(), ["c"]);
    }

    #[test]
    fn programs_are_found_on_path_if_executable() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("cursor"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("cursor"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(bin.join("notes"), "").unwrap();
        std::fs::create_dir(bin.join("code")).unwrap();
        let path_list = std::env::join_paths([dir.path().join("missing"), bin.clone()]).unwrap();
        assert_eq!(find_in_path_list("cursor", &path_list), Some(bin.join("cursor")));
        assert_eq!(find_in_path_list("notes", &path_list), None, "not executable");
        assert_eq!(find_in_path_list("code", &path_list), None, "a directory");
        assert_eq!(find_in_path_list("", &path_list), None);
        let full = bin.join("cursor");
        assert_eq!(find_in_path_list(full.to_str().unwrap(), std::ffi::OsStr::new("")), Some(full));
        assert!(find_on_path("sh").is_some());
    }

    #[test]
    fn editor_clis_have_known_app_bundle_locations() {
        assert_eq!(
            app_bundle_candidates("cursor", Some(Path::new("/Users/a"))),
            [
                PathBuf::from("/Applications/Cursor.app/Contents/Resources/app/bin/cursor"),
                PathBuf::from("/Users/a/Applications/Cursor.app/Contents/Resources/app/bin/cursor"),
            ]
        );
        assert_eq!(
            app_bundle_candidates("code", None),
            [PathBuf::from("/Applications/Visual Studio Code.app/Contents/Resources/app/bin/code")]
        );
        assert!(app_bundle_candidates("vim", None).is_empty());
        let fake = FakePrograms::default().with("code", "/opt/code");
        assert_eq!(fake.find("code"), Some(PathBuf::from("/opt/code")));
        assert_eq!(fake.find("cursor"), None);
    }
}
