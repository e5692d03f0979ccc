//! Why a workspace container did not come up, read from its console log: the lines its init
//! (systemd) prints when it gives up, and a hint for the causes we know.
//!
//! Provider-neutral: every provider hands over the console as text; what init prints there is the
//! same whatever runs the container.

/// What the console log says went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cause {
    /// The console line naming the problem, cleaned of terminal colours.
    pub(crate) line: String,
    /// The next step, for causes we know.
    pub(crate) hint: Option<String>,
    /// Init gave up (froze or exited): the container cannot be working, even if it still runs.
    pub(crate) fatal: bool,
}

/// Known fatal boot problems: all needles (lower case) on one line, and what to do about it.
const KNOWN: &[(&[&str], &str)] = &[
    (
        &["inotify", "too many open files"],
        "the node's fs.inotify.max_user_instances is too low for another container: run `sudo nexus node init` on the node (it raises the limit), or `sudo sysctl -w fs.inotify.max_user_instances=1024`",
    ),
    (
        &["inotify", "no space left on device"],
        "the node's fs.inotify.max_user_watches is too low for another container: run `sudo nexus node init` on the node (it raises the limit), or `sudo sysctl -w fs.inotify.max_user_watches=1048576`",
    ),
    (&["no space left on device"], "the node's disk is full: free space on the node, then start the workspace again"),
];

/// How init says it gave up: systemd freezes or, in a container, exits.
const FATAL: &[&str] = &["freezing", "exiting pid 1", "[!!!!!!]"];

/// The cause of a failed boot in `console`, if it names one: a known problem anywhere in the log,
/// else the first failure in the lines just before init gave up. `None` for a log without either
/// (a clean shutdown, or nothing yet).
pub(crate) fn cause(console: &str) -> Option<Cause> {
    let lines: Vec<String> = console.lines().map(clean).filter(|l| !l.is_empty()).collect();
    let fatal = lines.iter().position(|l| {
        let lower = l.to_ascii_lowercase();
        FATAL.iter().any(|f| lower.contains(f))
    });
    for line in &lines {
        let lower = line.to_ascii_lowercase();
        if let Some((_, hint)) = KNOWN.iter().find(|(needles, _)| needles.iter().all(|n| lower.contains(n))) {
            return Some(Cause { line: line.clone(), hint: Some(hint.to_string()), fatal: fatal.is_some() });
        }
    }
    let fatal = fatal?;
    // systemd prints the reason first, then a summary (`[!!!!!!] Failed to ...`), then gives up.
    let window = &lines[fatal.saturating_sub(5)..=fatal];
    let line = window
        .iter()
        .find(|l| {
            let lower = l.to_ascii_lowercase();
            (lower.contains("fail") || lower.contains("error")) && !lower.starts_with("[!!!!!!]")
        })
        .unwrap_or(&lines[fatal])
        .clone();
    Some(Cause { line, hint: None, fatal: true })
}

/// A console line without ANSI escape sequences, carriage returns and surrounding blanks.
fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters... final byte in @..~
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What systemd 252 printed on a node whose inotify instances had run out (bug h).
    const INOTIFY: &str =
        "\u{1b}[0;1;31mFailed to create control group inotify object: Too many open files\u{1b}[0m\r\n\
        \u{1b}[0;1;31mFailed to allocate manager object: Too many open files\u{1b}[0m\r\n\
        [\u{1b}[0;1;31m!!!!!!\u{1b}[0m] Failed to allocate manager object.\r\n\
        Exiting PID 1...\r\n";

    #[test]
    fn a_known_cause_becomes_the_message_with_its_hint() {
        let found = cause(INOTIFY).unwrap();
        assert_eq!(found.line, "Failed to create control group inotify object: Too many open files");
        assert!(found.hint.unwrap().contains("fs.inotify.max_user_instances"));
        assert!(found.fatal);
        // The same problem in a log that goes on (a service failing later) is not a failed boot.
        let later = cause("[  OK  ] Started x.\nfoo.service: Failed to add watch: No space left on device\n");
        assert!(!later.unwrap().fatal);
    }

    #[test]
    fn an_unknown_fatal_end_names_the_first_failure_before_it() {
        let console = "systemd 252 running in system mode\n\
            [  OK  ] Reached target Local File Systems.\n\
            Failed to mount API filesystems: Operation not permitted\n\
            [!!!!!!] Failed to mount API filesystems.\n\
            Exiting PID 1...\n";
        let found = cause(console).unwrap();
        assert_eq!(found.line, "Failed to mount API filesystems: Operation not permitted");
        assert_eq!(found.hint, None);
        let frozen = cause_line("Welcome!\nFreezing execution.\n");
        assert_eq!(frozen.as_deref(), Some("Freezing execution."));
    }

    #[test]
    fn a_log_without_a_fatal_end_names_nothing() {
        assert_eq!(cause(""), None);
        assert_eq!(
            cause("[  OK  ] Started ssh.service.\nFailed to start foo.service.\nReached target Power-Off.\n"),
            None
        );
    }

    #[test]
    fn colours_are_cleaned() {
        assert_eq!(clean("\u{1b}[0;32m  OK  \u{1b}[0m] x\r"), "OK  ] x");
    }

    fn cause_line(console: &str) -> Option<String> {
        cause(console).map(|c| c.line)
    }
}
