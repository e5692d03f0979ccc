//! Opening a workspace's folder in Cursor or VS Code over Remote-SSH: the editor's CLI with
//! `--folder-uri` first, then its URL scheme, and always the `ssh` command as the last resort.

use std::path::Path;

use crate::config::Editor;
use crate::opener::{Opener, Programs};
use crate::system::System;

/// Which editor to open, from `--editor` or the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditorChoice {
    /// Open this editor.
    Open(Editor),
    /// Don't open anything; print how to connect.
    None,
}

impl EditorChoice {
    /// Parses `cursor`, `code`/`vscode` or `none`.
    pub fn parse(s: &str) -> Result<EditorChoice, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cursor" => Ok(EditorChoice::Open(Editor::Cursor)),
            "code" | "vscode" => Ok(EditorChoice::Open(Editor::Code)),
            "none" => Ok(EditorChoice::None),
            other => Err(format!("unknown editor {other:?}: use `cursor`, `code` or `none`")),
        }
    }
}

/// `vscode-remote://ssh-remote+<alias><path>`, the folder URI both editors' CLIs take.
pub fn folder_uri(alias: &str, path: &str) -> String {
    format!("vscode-remote://ssh-remote+{alias}{path}")
}

/// `<scheme>://vscode-remote/ssh-remote+<alias><path>?windowId=_blank`, for when the CLI is missing.
pub fn editor_url(editor: Editor, alias: &str, path: &str) -> String {
    format!("{}://vscode-remote/ssh-remote+{alias}{path}?windowId=_blank", editor.url_scheme())
}

/// How the editor was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// Its CLI ran: the program and arguments.
    Cli(Vec<String>),
    /// Its URL was handed to the system.
    Url(String),
    /// Nothing could open it (or `--editor none`): the user should run the ssh command.
    Nothing {
        /// Why, for the message.
        why: String,
    },
}

/// Opens `path` on `alias` in `choice`.
pub fn open(
    choice: EditorChoice,
    alias: &str,
    path: &str,
    sys: &dyn System,
    programs: &dyn Programs,
    opener: &dyn Opener,
) -> Opened {
    let EditorChoice::Open(editor) = choice else {
        return Opened::Nothing { why: "no editor was asked for (`--editor none`)".into() };
    };
    let mut why = format!("`{}` is not installed", editor.program());
    if let Some(program) = programs.find(editor.program()) {
        let arg = format!("--folder-uri={}", folder_uri(alias, path));
        let program = program.display().to_string();
        match sys.run(&[&program, &arg], None) {
            Ok(out) if out.ok() => return Opened::Cli(vec![program, arg]),
            Ok(out) => why = format!("`{program}` exited with {}", out.code),
            Err(e) => why = format!("`{program}` could not run: {e}"),
        }
    }
    let url = editor_url(editor, alias, path);
    match opener.open_url(&url) {
        Ok(()) => Opened::Url(url),
        Err(e) => Opened::Nothing { why: format!("{why}, and its URL could not be opened ({e})") },
    }
}

/// The folder a workspace's repo is checked out in.
pub fn repo_path(repo_path_in_workspace: Option<&str>, repo_name: &str) -> String {
    match repo_path_in_workspace {
        Some(p) if Path::new(p).is_absolute() => p.to_string(),
        _ => format!("/home/dev/{repo_name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opener::{FakePrograms, RecordingOpener};
    use crate::system::FakeSystem;

    #[test]
    fn cli_first_with_the_exact_folder_uri() {
        let sys = FakeSystem::default().on("/usr/bin/cursor", 0, "");
        let programs = FakePrograms::default().with("cursor", "/usr/bin/cursor");
        let opener = RecordingOpener::default();
        let got = open(EditorChoice::Open(Editor::Cursor), "nexus-site", "/home/dev/site", &sys, &programs, &opener);
        assert_eq!(
            got,
            Opened::Cli(vec![
                "/usr/bin/cursor".into(),
                "--folder-uri=vscode-remote://ssh-remote+nexus-site/home/dev/site".into()
            ])
        );
        assert!(opener.urls().is_empty());
    }

    #[test]
    fn url_scheme_when_the_cli_is_missing_or_fails() {
        let sys = FakeSystem::default().on("/usr/bin/code", 1, "");
        let opener = RecordingOpener::default();
        let programs = FakePrograms::default().with("code", "/usr/bin/code");
        let got = open(EditorChoice::Open(Editor::Code), "nexus-site", "/home/dev/site", &sys, &programs, &opener);
        assert_eq!(
            got,
            Opened::Url("vscode://vscode-remote/ssh-remote+nexus-site/home/dev/site?windowId=_blank".into())
        );
        let got = open(
            EditorChoice::Open(Editor::Cursor),
            "nexus-site",
            "/home/dev/site",
            &sys,
            &FakePrograms::default(),
            &opener,
        );
        assert_eq!(
            got,
            Opened::Url("cursor://vscode-remote/ssh-remote+nexus-site/home/dev/site?windowId=_blank".into())
        );
    }

    #[test]
    fn nothing_opens_means_the_ssh_command() {
        let sys = FakeSystem::default();
        let opener = RecordingOpener::failing();
        let got = open(EditorChoice::Open(Editor::Cursor), "nexus-site", "/x", &sys, &FakePrograms::default(), &opener);
        assert!(matches!(got, Opened::Nothing { ref why } if why.contains("`cursor` is not installed")), "{got:?}");
        let got = open(EditorChoice::None, "nexus-site", "/x", &sys, &FakePrograms::default(), &opener);
        assert!(matches!(got, Opened::Nothing { .. }));
        assert_eq!(EditorChoice::parse("VSCode"), Ok(EditorChoice::Open(Editor::Code)));
        assert!(EditorChoice::parse("emacs").unwrap_err().contains("`cursor`, `code` or `none`"));
    }
}
