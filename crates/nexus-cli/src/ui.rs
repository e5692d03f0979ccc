//! Terminal output for people: sections, `✓` lines, spinners with elapsed time, warnings, errors with
//! hints, and yes/no questions.
//!
//! Where things go:
//! - Progress and messages go to **stderr**; results (the "Workspace Ready" block, `--json` output) go to
//!   **stdout**, so `nexus ... > out` captures only what a script wants.
//! - In `--json` mode progress is silent (sections, `ok`, `info`, steps); warnings and errors still go to
//!   stderr, where they cannot corrupt the JSON.
//!
//! How things look:
//! - **Colour** when stderr is a terminal, `NO_COLOR` is unset or empty, and `TERM` is not `dumb`.
//! - **Symbols** (emoji in section titles, `✓`, `✗`, the braille spinner, `…`) when stderr is a terminal,
//!   `TERM` is not `dumb`, and the locale is UTF-8 (`LC_ALL`, `LC_CTYPE` or `LANG` says so; on macOS an
//!   unset locale counts as UTF-8, as Terminal.app is). Otherwise plain ASCII: titles lose their emoji,
//!   `✓` becomes `ok:`, `✗` becomes `failed:`, so logs and old terminals stay readable.
//! - **Spinners** are redrawn in place from a background thread only when stderr is a terminal. Without
//!   one, a step prints its message once, each changed message once, and one result line with the time.
//!
//! Everything is written through [`Ui`]'s writers and read from its [`Clock`], so tests use
//! [`Ui::capture`] and get byte-exact, deterministic output.

use std::io::{BufRead, IsTerminal as _, Write};
use std::sync::{Arc, Mutex};

use nexus_types::diagnostics::lock;
use std::time::{Duration, Instant};

/// What a command returns: printed as pretty JSON with `--json`, else as text for people by
/// [`Report::text`]. [`Ui::report`] is the one place that chooses.
pub trait Report: serde::Serialize {
    /// Writes the text form through `ui`: results with [`Ui::result`], messages with [`Ui::info`].
    fn text(&self, ui: &Ui);
}

/// A monotonic clock, injectable so elapsed times in tests are fixed.
trait Clock: Send + Sync {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// The real clock.
#[derive(Debug)]
struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock that moves only when told to.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct ManualClock(Mutex<Duration>);

#[cfg(any(test, feature = "testing"))]
impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *lock(&self.0) += by;
    }
}

#[cfg(any(test, feature = "testing"))]
impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *lock(&self.0)
    }
}

/// What the terminal supports and what the user asked for; see the module docs for how it is detected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// `--json`: progress is silent.
    pub json: bool,
    /// ANSI colour on stderr.
    pub color: bool,
    /// ANSI colour on stdout (results).
    pub color_stdout: bool,
    /// stderr is a terminal: spinners redraw in place.
    pub tty: bool,
    /// Emoji and Unicode symbols.
    pub unicode: bool,
    /// stdin is a terminal: questions can be asked.
    pub interactive: bool,
}

impl Settings {
    /// Detects the settings from the environment and the standard streams.
    pub fn detect(json: bool) -> Settings {
        Settings::from_env(
            json,
            &|name| std::env::var(name).ok(),
            std::io::stderr().is_terminal(),
            std::io::stdout().is_terminal(),
            std::io::stdin().is_terminal(),
        )
    }

    /// [`Settings::detect`] with the environment and terminal checks passed in.
    pub fn from_env(
        json: bool,
        env: &dyn Fn(&str) -> Option<String>,
        stderr_tty: bool,
        stdout_tty: bool,
        stdin_tty: bool,
    ) -> Settings {
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        let dumb = set("TERM").is_some_and(|t| t == "dumb");
        let no_color = set("NO_COLOR").is_some();
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"].iter().find_map(|name| set(name));
        let utf8 = match locale {
            Some(l) => {
                let l = l.to_ascii_lowercase();
                l.contains("utf-8") || l.contains("utf8")
            }
            None => cfg!(target_os = "macos"),
        };
        Settings {
            json,
            color: stderr_tty && !dumb && !no_color,
            color_stdout: stdout_tty && !dumb && !no_color,
            tty: stderr_tty && !dumb,
            unicode: stderr_tty && !dumb && utf8,
            interactive: stdin_tty,
        }
    }
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";
/// Back to column 0 and erase the line: how a spinner is redrawn and removed.
const CLEAR_LINE: &str = "\r\x1b[2K";

const UNICODE_FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const ASCII_FRAMES: [&str; 4] = ["|", "/", "-", "\\"];
/// Time between spinner frames.
const TICK: Duration = Duration::from_millis(80);
/// Steps shorter than this do not show their time: "(0.0s)" is noise.
const SHOW_ELAPSED_FROM: Duration = Duration::from_millis(100);
/// Without a terminal, how often [`Step::set_progress`] prints a line: often enough that a log shows
/// a long wait is alive, seldom enough that it stays readable.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Terminal output; cheap to clone (clones share the writers and any spinner).
#[derive(Clone)]
pub struct Ui {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    clock: Arc<dyn Clock>,
    /// Spawn the thread that animates spinners (off in captures: tests call `tick`).
    ticker: bool,
    /// Echo answers typed into `confirm`, as a terminal would (captures only).
    echo_input: bool,
    input: Mutex<Box<dyn BufRead + Send>>,
    state: Mutex<State>,
}

struct State {
    err: Box<dyn Write + Send>,
    out: Box<dyn Write + Send>,
    /// A section title has been printed: lines below it are indented.
    in_section: bool,
    /// Anything was printed to stderr (so the next section gets a blank line before it).
    wrote_any: bool,
    /// Running steps, oldest first; the newest is the one drawn.
    steps: Vec<Running>,
    next_id: u64,
    /// A spinner line is on screen and must be erased before other output.
    spinner_drawn: bool,
    frame: usize,
    ticker_running: bool,
    /// A question is on screen: the spinner must not draw over it.
    prompting: bool,
}

struct Running {
    id: u64,
    message: String,
    started: Duration,
    /// When its message was last printed on a line of its own (no terminal only).
    printed: Duration,
}

impl Ui {
    /// Output to the real stdout and stderr, styled for what they are connected to.
    pub fn new(json: bool) -> Ui {
        Ui::build(
            Settings::detect(json),
            Box::new(std::io::stdout()),
            Box::new(std::io::stderr()),
            Box::new(std::io::BufReader::new(std::io::stdin())),
            Arc::new(SystemClock::default()),
            true,
            false,
        )
    }

    /// Output into memory with the given settings and a [`ManualClock`]; `input` is what the user
    /// "types" for [`Ui::confirm`].
    #[cfg(any(test, feature = "testing"))]
    pub fn capture(settings: Settings, input: &str) -> (Ui, Captured) {
        let captured = Captured {
            stdout: SharedBuf::default(),
            stderr: SharedBuf::default(),
            clock: Arc::new(ManualClock::default()),
        };
        let ui = Ui::build(
            settings,
            Box::new(captured.stdout.clone()),
            Box::new(captured.stderr.clone()),
            Box::new(std::io::Cursor::new(input.as_bytes().to_vec())),
            captured.clock.clone(),
            false,
            true,
        );
        (ui, captured)
    }

    fn build(
        settings: Settings,
        out: Box<dyn Write + Send>,
        err: Box<dyn Write + Send>,
        input: Box<dyn BufRead + Send>,
        clock: Arc<dyn Clock>,
        ticker: bool,
        echo_input: bool,
    ) -> Ui {
        let state = State {
            err,
            out,
            in_section: false,
            wrote_any: false,
            steps: Vec::new(),
            next_id: 0,
            spinner_drawn: false,
            frame: 0,
            ticker_running: false,
            prompting: false,
        };
        Ui {
            inner: Arc::new(Inner {
                settings,
                clock,
                ticker,
                echo_input,
                input: Mutex::new(input),
                state: Mutex::new(state),
            }),
        }
    }

    /// Whether `--json` was asked for.
    pub fn json(&self) -> bool {
        self.inner.settings.json
    }

    /// A section title, e.g. `🔐 GitHub Authentication`. Without Unicode the leading emoji is dropped.
    pub fn section(&self, title: &str) {
        if self.json() {
            return;
        }
        let title = self.symbols(title);
        let s = self.inner.settings;
        self.inner.with_state(|st| {
            let blank = if st.wrote_any { "\n" } else { "" };
            st.in_section = false;
            st.line_err(&self.inner, &format!("{blank}{}", paint(s.color, BOLD, &title)));
            st.in_section = true;
        });
    }

    /// A finished thing: `✓ msg` (green), or `ok: msg` in plain output.
    pub fn ok(&self, msg: &str) {
        if !self.json() {
            let mark = self.mark(true);
            self.item(&format!("{mark} {msg}"));
        }
    }

    /// A plain message under the current section.
    pub fn info(&self, msg: &str) {
        if !self.json() {
            self.item(msg);
        }
    }

    /// `warning: msg` (yellow), also in `--json` mode.
    pub fn warn(&self, msg: &str) {
        let label = paint(self.inner.settings.color, &format!("{BOLD}{YELLOW}"), "warning:");
        self.inner.with_state(|st| st.line_err(&self.inner, &format!("{label} {msg}")));
    }

    /// `error: message` and, unless `hint` is empty, `hint: hint`; also in `--json` mode.
    pub fn error(&self, message: &str, hint: &str) {
        let color = self.inner.settings.color;
        let mut text = format!("{} {message}", paint(color, &format!("{BOLD}{RED}"), "error:"));
        if !hint.trim().is_empty() {
            text.push_str(&format!("\n{} {}", paint(color, &format!("{BOLD}{YELLOW}"), "hint:"), hint.trim()));
        }
        self.inner.with_state(|st| st.line_err(&self.inner, &text));
    }

    /// Starts a step shown as a spinner with elapsed time (`⠋ Creating workspace… 12s`) until
    /// [`Step::ok`] or [`Step::fail`]. Silent in `--json` mode.
    pub fn step(&self, msg: &str) -> Step {
        let started = self.inner.clock.now();
        let mut step = Step { inner: self.inner.clone(), id: None, started };
        if self.json() {
            return step;
        }
        let s = self.inner.settings;
        let spawn_ticker = self.inner.with_state(|st| {
            let id = st.next_id;
            st.next_id += 1;
            st.steps.push(Running { id, message: msg.to_string(), started, printed: started });
            step.id = Some(id);
            if s.tty {
                st.draw_spinner(&self.inner);
                let spawn = self.inner.ticker && !st.ticker_running;
                st.ticker_running |= spawn;
                spawn
            } else {
                let text = format!("{}{}", msg, ellipsis(s.unicode, msg));
                st.line_err(&self.inner, &format!("{}{text}", st.indent()));
                false
            }
        });
        if spawn_ticker {
            let inner = self.inner.clone();
            std::thread::spawn(move || ticker(inner));
        }
        step
    }

    /// Asks a yes/no question on the terminal. Returns `default` without asking when stdin is not a
    /// terminal (or in `--json` mode), saying so unless in `--json` mode.
    pub fn confirm(&self, question: &str, default: bool) -> bool {
        let s = self.inner.settings;
        let choices = if default { "[Y/n]" } else { "[y/N]" };
        if s.json {
            return default;
        }
        if !s.interactive {
            let answer = if default { "yes" } else { "no" };
            self.item(&format!("{question} {choices} {answer} (no terminal to ask on)"));
            return default;
        }
        for _ in 0..3 {
            self.inner.with_state(|st| {
                st.clear_spinner();
                st.prompting = true;
                let prompt = format!("{}{} {} ", st.indent(), paint(s.color, BOLD, question), choices);
                let _ = st.err.write_all(prompt.as_bytes());
                let _ = st.err.flush();
            });
            let mut line = String::new();
            let read = lock(&self.inner.input).read_line(&mut line);
            let answer = line.trim().to_ascii_lowercase();
            let result = match (&read, answer.as_str()) {
                (Ok(0) | Err(_), _) => Some(default),
                (_, "") => Some(default),
                (_, "y" | "yes") => Some(true),
                (_, "n" | "no") => Some(false),
                _ => None,
            };
            self.inner.with_state(|st| {
                if self.inner.echo_input || matches!(read, Ok(0) | Err(_)) {
                    // End of input leaves the cursor after the prompt; a terminal echoes the answer itself.
                    let echo = if self.inner.echo_input { line.trim_end() } else { "" };
                    let _ = writeln!(st.err, "{echo}");
                }
                st.prompting = false;
                st.wrote_any = true;
                if result.is_none() {
                    let _ = writeln!(st.err, "{}please answer y or n", st.indent());
                }
                st.draw_spinner(&self.inner);
            });
            if let Some(answer) = result {
                return answer;
            }
        }
        default
    }

    /// A line of results on stdout (for scripts): printed as is, also in `--json` mode.
    pub fn result(&self, line: &str) {
        self.inner.with_state(|st| st.line_out(&self.inner, line));
    }

    /// A command's output: JSON in `--json` mode, else its text.
    pub fn report(&self, output: &impl Report) {
        if self.json() {
            self.print_json(output);
        } else {
            output.text(self);
        }
    }

    /// `value` as pretty JSON on stdout: the whole output of a `--json` command.
    fn print_json<T: serde::Serialize>(&self, value: &T) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        self.result(&text);
    }

    fn item(&self, text: &str) {
        self.inner.with_state(|st| st.line_err(&self.inner, &format!("{}{text}", st.indent())));
    }

    fn mark(&self, ok: bool) -> String {
        let s = self.inner.settings;
        match (ok, s.unicode) {
            (true, true) => paint(s.color, GREEN, "✓"),
            (true, false) => paint(s.color, GREEN, "ok:"),
            (false, true) => paint(s.color, RED, "✗"),
            (false, false) => paint(s.color, RED, "failed:"),
        }
    }

    /// `text` as given with Unicode on; otherwise without leading emoji.
    fn symbols(&self, text: &str) -> String {
        if self.inner.settings.unicode {
            text.to_string()
        } else {
            text.trim_start_matches(|c: char| c.is_whitespace() || (!c.is_ascii() && !c.is_alphanumeric())).to_string()
        }
    }
}

impl Inner {
    /// Draws the next spinner frame; `false` (and the ticker stops) when no step is running. Tests call
    /// it directly instead of running the ticker thread.
    fn tick(&self) -> bool {
        self.with_state(|st| {
            if st.steps.is_empty() {
                st.ticker_running = false;
                return false;
            }
            st.frame += 1;
            st.draw_spinner(self);
            true
        })
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = lock(&self.state);
        f(&mut guard)
    }
}

impl State {
    fn indent(&self) -> &'static str {
        if self.in_section {
            "  "
        } else {
            ""
        }
    }

    fn clear_spinner(&mut self) {
        if self.spinner_drawn {
            let _ = self.err.write_all(CLEAR_LINE.as_bytes());
            self.spinner_drawn = false;
        }
    }

    /// Writes whole lines to stderr, keeping a running spinner below them.
    fn line_err(&mut self, inner: &Inner, text: &str) {
        self.clear_spinner();
        let _ = writeln!(self.err, "{text}");
        self.wrote_any = true;
        self.draw_spinner(inner);
        let _ = self.err.flush();
    }

    /// Writes whole lines to stdout, erasing the spinner first (both are usually the same terminal).
    fn line_out(&mut self, inner: &Inner, text: &str) {
        self.clear_spinner();
        let _ = self.err.flush();
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
        self.draw_spinner(inner);
    }

    /// Draws the newest running step in place (terminals only).
    fn draw_spinner(&mut self, inner: &Inner) {
        let s = inner.settings;
        if !s.tty || self.prompting {
            return;
        }
        let Some(step) = self.steps.last() else {
            return;
        };
        let frame = if s.unicode {
            UNICODE_FRAMES[self.frame % UNICODE_FRAMES.len()]
        } else {
            ASCII_FRAMES[self.frame % ASCII_FRAMES.len()]
        };
        let elapsed = inner.clock.now().saturating_sub(step.started);
        let time =
            if elapsed >= Duration::from_secs(1) { format!(" {}", whole_seconds(elapsed)) } else { String::new() };
        let dots = ellipsis(s.unicode, &step.message);
        // A line wider than the terminal wraps, and `\r` then only redraws its last row.
        let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse::<usize>().ok()).unwrap_or(80);
        let room = columns.saturating_sub(self.indent().len() + 2 + dots.chars().count() + time.len() + 1).max(10);
        let message = truncate(&step.message, room);
        let line = format!(
            "{CLEAR_LINE}{}{} {message}{dots}{}",
            self.indent(),
            paint(s.color, CYAN, frame),
            paint(s.color, DIM, &time)
        );
        let _ = self.err.write_all(line.as_bytes());
        let _ = self.err.flush();
        self.spinner_drawn = true;
    }
}

/// Animates spinners until no step is running.
fn ticker(inner: Arc<Inner>) {
    loop {
        std::thread::sleep(TICK);
        if !inner.tick() {
            return;
        }
    }
}

/// A running step; finish it with [`Step::ok`] or [`Step::fail`]. Dropping it unfinished (an early
/// return with `?`) erases the spinner so the error that follows starts on a clean line.
pub struct Step {
    inner: Arc<Inner>,
    /// `None` in `--json` mode, and once finished.
    id: Option<u64>,
    started: Duration,
}

impl Step {
    /// Changes the message (e.g. "Cloning repo" → "Running setup"). Without a terminal the new message is
    /// printed on its own line, once, so logs show each phase; use it for phases, not counters.
    pub fn set_message(&self, msg: &str) {
        let Some(id) = self.id else {
            return;
        };
        let s = self.inner.settings;
        self.inner.with_state(|st| {
            let Some(step) = st.steps.iter_mut().find(|r| r.id == id) else {
                return;
            };
            if step.message == msg {
                return;
            }
            step.message = msg.to_string();
            step.printed = self.inner.clock.now();
            if s.tty {
                st.draw_spinner(&self.inner);
            } else {
                let text = format!("{}{msg}{}", st.indent(), ellipsis(s.unicode, msg));
                st.line_err(&self.inner, &text);
            }
        });
    }

    /// Changes the message to one that moves on by itself (a counter, a time, a last output line): on a
    /// terminal like [`Step::set_message`]; without one it is printed only when the last line this
    /// step printed is [`PROGRESS_EVERY`] old, so a log shows a long wait going on without a line per poll.
    pub fn set_progress(&self, msg: &str) {
        let Some(id) = self.id else {
            return;
        };
        if self.inner.settings.tty {
            self.set_message(msg);
            return;
        }
        let now = self.inner.clock.now();
        let due = self.inner.with_state(|st| {
            st.steps
                .iter()
                .find(|r| r.id == id)
                .is_some_and(|r| r.message != msg && now.saturating_sub(r.printed) >= PROGRESS_EVERY)
        });
        if due {
            self.set_message(msg);
        }
    }

    /// Time since the step started.
    fn elapsed(&self) -> Duration {
        self.inner.clock.now().saturating_sub(self.started)
    }

    /// Finishes with `✓ msg (3.2s)`.
    pub fn ok(mut self, msg: &str) {
        self.finish(Some((true, msg)));
    }

    /// Finishes with `✗ msg (3.2s)` (red); print the error and hint after it with [`Ui::error`].
    pub fn fail(mut self, msg: &str) {
        self.finish(Some((false, msg)));
    }

    fn finish(&mut self, result: Option<(bool, &str)>) {
        let Some(id) = self.id.take() else {
            return;
        };
        let elapsed = self.elapsed();
        let ui = Ui { inner: self.inner.clone() };
        self.inner.with_state(|st| {
            st.steps.retain(|r| r.id != id);
            st.clear_spinner();
            if let Some((ok, msg)) = result {
                let time = if elapsed >= SHOW_ELAPSED_FROM {
                    paint(ui.inner.settings.color, DIM, &format!(" ({})", format_elapsed(elapsed)))
                } else {
                    String::new()
                };
                let text = format!("{}{} {msg}{time}", st.indent(), ui.mark(ok));
                st.line_err(&ui.inner, &text);
            } else {
                st.draw_spinner(&ui.inner);
                let _ = st.err.flush();
            }
        });
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// What a captured [`Ui`] wrote, and the clock it reads.
#[cfg(any(test, feature = "testing"))]
pub struct Captured {
    stdout: SharedBuf,
    stderr: SharedBuf,
    /// The clock the captured `Ui` reads; advance it to make time pass.
    pub clock: Arc<ManualClock>,
}

#[cfg(any(test, feature = "testing"))]
impl Captured {
    /// Everything written to stdout.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Everything written to stderr.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

/// A `Write` into shared memory.
#[cfg(any(test, feature = "testing"))]
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

#[cfg(any(test, feature = "testing"))]
impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.0)).into_owned()
    }
}

#[cfg(any(test, feature = "testing"))]
impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn paint(on: bool, code: &str, text: &str) -> String {
    if on {
        format!("{code}{text}{RESET}")
    } else {
        text.to_string()
    }
}

/// `…` (or `...`) after a progress message, unless it already ends with one.
fn ellipsis(unicode: bool, msg: &str) -> &'static str {
    if msg.ends_with('…') || msg.ends_with("...") {
        ""
    } else if unicode {
        "…"
    } else {
        "..."
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}~")
    }
}

/// A spinner's elapsed time: `12s`, `1m 05s`, `1h 02m`.
fn whole_seconds(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A finished step's time: `3.2s` under a minute (tenths, rounded down), else as [`whole_seconds`].
fn format_elapsed(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{}.{}s", d.as_secs(), d.subsec_millis() / 100)
    } else {
        whole_seconds(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Settings {
        Settings::default()
    }

    fn terminal() -> Settings {
        Settings { json: false, color: false, color_stdout: false, tty: true, unicode: true, interactive: true }
    }

    #[test]
    fn settings_follow_no_color_term_and_the_locale() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let s = Settings::from_env(false, &env(&[("LANG", "en_US.UTF-8")]), true, true, true);
        assert!(s.color && s.color_stdout && s.tty && s.unicode && s.interactive);
        let s = Settings::from_env(false, &env(&[("LANG", "en_US.UTF-8"), ("NO_COLOR", "1")]), true, true, true);
        assert!(!s.color && !s.color_stdout && s.unicode);
        let s = Settings::from_env(false, &env(&[("LANG", "en_US.UTF-8"), ("NO_COLOR", "")]), true, false, true);
        assert!(s.color && !s.color_stdout, "an empty NO_COLOR does not count; stdout is piped");
        let s = Settings::from_env(false, &env(&[("LANG", "en_US.UTF-8"), ("TERM", "dumb")]), true, true, true);
        assert!(!s.color && !s.tty && !s.unicode);
        let s = Settings::from_env(false, &env(&[("LC_ALL", "C"), ("LANG", "en_US.UTF-8")]), true, true, false);
        assert!(!s.unicode && !s.interactive, "LC_ALL wins over LANG");
        let s = Settings::from_env(true, &env(&[("LANG", "en_US.utf8")]), false, false, false);
        assert!(s.json && !s.color && !s.tty && !s.unicode, "piped stderr: plain");
    }

    #[test]
    fn plain_output_without_a_terminal() {
        let (ui, cap) = Ui::capture(plain(), "");
        ui.section("🔐 GitHub Authentication");
        ui.ok("Signed in as alice");
        ui.info("Token saved to ~/.nexus/config.yaml");
        let step = ui.step("Creating workspace");
        cap.advance(Duration::from_millis(1500));
        step.set_message("Cloning repo");
        step.set_message("Cloning repo");
        cap.advance(Duration::from_millis(1750));
        step.ok("Workspace created");
        ui.section("🚀 Next");
        ui.warn("agent forwarding is on");
        ui.error("cannot reach the server", "check `server` in ~/.nexus/config.yaml");
        ui.result("Workspace: my-app");
        assert_eq!(
            cap.stderr(),
            "GitHub Authentication
  ok: Signed in as alice
  Token saved to ~/.nexus/config.yaml
  Creating workspace...
  Cloning repo...
  ok: Workspace created (3.2s)

Next
warning: agent forwarding is on
error: cannot reach the server
hint: check `server` in ~/.nexus/config.yaml
"
        );
        assert_eq!(cap.stdout(), "Workspace: my-app\n");
    }

    #[test]
    fn a_terminal_gets_symbols_and_an_in_place_spinner() {
        let (ui, cap) = Ui::capture(terminal(), "");
        ui.section("🔐 GitHub Authentication");
        let step = ui.step("Creating workspace");
        cap.advance(Duration::from_secs(12));
        ui.inner.tick();
        ui.info("Cloning my-org/my-app");
        step.set_message("Starting services");
        cap.advance(Duration::from_millis(65_400));
        step.ok("Workspace created");
        let failing = ui.step("Opening Cursor…");
        failing.fail("Cursor did not start");
        let expected = [
            "🔐 GitHub Authentication\n",
            "\r\x1b[2K  ⠋ Creating workspace…",
            "\r\x1b[2K  ⠙ Creating workspace… 12s",
            "\r\x1b[2K  Cloning my-org/my-app\n",
            "\r\x1b[2K  ⠙ Creating workspace… 12s",
            "\r\x1b[2K  ⠙ Starting services… 12s",
            "\r\x1b[2K  ✓ Workspace created (1m 17s)\n",
            "\r\x1b[2K  ⠙ Opening Cursor…",
            "\r\x1b[2K  ✗ Cursor did not start\n",
        ]
        .concat();
        assert_eq!(cap.stderr(), expected);
        assert_eq!(cap.stdout(), "");
    }

    #[test]
    fn progress_is_printed_now_and_then_without_a_terminal_and_drawn_on_one() {
        let (ui, cap) = Ui::capture(plain(), "");
        let step = ui.step("Installing dependencies");
        step.set_progress("npm ci (1 s)");
        cap.advance(Duration::from_secs(10));
        step.set_progress("npm ci (11 s)");
        cap.advance(Duration::from_secs(3));
        step.set_progress("npm ci (14 s)");
        step.set_message("npm run build (14 s)");
        cap.advance(Duration::from_secs(10));
        step.set_progress("npm run build (14 s)");
        step.ok("Setup done");
        assert_eq!(
            cap.stderr(),
            "Installing dependencies...\nnpm ci (11 s)...\nnpm run build (14 s)...\nok: Setup done (23.0s)\n"
        );

        let (ui, cap) = Ui::capture(terminal(), "");
        let step = ui.step("Installing dependencies");
        step.set_progress("npm ci (1 s)");
        assert_eq!(cap.stderr(), "\r\x1b[2K⠋ Installing dependencies…\r\x1b[2K⠋ npm ci (1 s)…");
    }

    #[test]
    fn colour_codes_only_when_enabled() {
        let (ui, cap) = Ui::capture(Settings { color: true, ..plain() }, "");
        ui.ok("done");
        ui.error("bad", "fix it");
        assert_eq!(
            cap.stderr(),
            "\x1b[32mok:\x1b[0m done\n\x1b[1m\x1b[31merror:\x1b[0m bad\n\x1b[1m\x1b[33mhint:\x1b[0m fix it\n"
        );
    }

    #[test]
    fn dropping_an_unfinished_step_erases_the_spinner() {
        let (ui, cap) = Ui::capture(terminal(), "");
        {
            let _step = ui.step("Waiting for agent");
        }
        ui.error("the agent did not answer", "");
        assert_eq!(cap.stderr(), "\r\x1b[2K⠋ Waiting for agent…\r\x1b[2Kerror: the agent did not answer\n");

        let (ui, cap) = Ui::capture(plain(), "");
        drop(ui.step("Waiting for agent"));
        assert_eq!(cap.stderr(), "Waiting for agent...\n");
    }

    #[test]
    fn json_mode_silences_progress_but_not_problems_or_results() {
        let (ui, cap) = Ui::capture(Settings { json: true, ..terminal() }, "");
        ui.section("🔐 GitHub Authentication");
        ui.ok("x");
        ui.info("x");
        let step = ui.step("x");
        step.set_message("y");
        step.ok("z");
        assert!(ui.confirm("Fork it?", true));
        ui.warn("careful");
        ui.error("broken", "fix");
        ui.print_json(&serde_json::json!({"name": "my-app"}));
        assert_eq!(cap.stderr(), "warning: careful\nerror: broken\nhint: fix\n");
        assert_eq!(cap.stdout(), "{\n  \"name\": \"my-app\"\n}\n");
    }

    #[test]
    fn confirm_asks_on_a_terminal_and_defaults_otherwise() {
        let (ui, cap) = Ui::capture(terminal(), "maybe\ny\n\nno\n");
        assert!(ui.confirm("Fork my-org/my-app?", false));
        assert!(!ui.confirm("Open Cursor?", false));
        assert!(!ui.confirm("Delete it?", true));
        assert!(ui.confirm("Once more?", true), "end of input takes the default");
        assert_eq!(
            cap.stderr(),
            "Fork my-org/my-app? [y/N] maybe\nplease answer y or n\nFork my-org/my-app? [y/N] y\n\
             Open Cursor? [y/N] \nDelete it? [Y/n] no\nOnce more? [Y/n] \n"
        );

        let (ui, cap) = Ui::capture(plain(), "y\n");
        assert!(!ui.confirm("Fork my-org/my-app?", false));
        assert!(ui.confirm("Open Cursor?", true));
        assert_eq!(
            cap.stderr(),
            "Fork my-org/my-app? [y/N] no (no terminal to ask on)\nOpen Cursor? [Y/n] yes (no terminal to ask on)\n"
        );
    }

    #[test]
    fn a_question_pauses_the_spinner() {
        let (ui, cap) = Ui::capture(terminal(), "y\n");
        let step = ui.step("Checking");
        assert!(ui.confirm("Go on?", false));
        step.ok("Checked");
        assert_eq!(
            cap.stderr(),
            "\r\x1b[2K⠋ Checking…\r\x1b[2KGo on? [y/N] y\n\r\x1b[2K⠋ Checking…\r\x1b[2K✓ Checked\n"
        );
    }

    #[test]
    fn a_real_ticker_animates_and_stops() {
        let ui = Ui::build(
            terminal(),
            Box::new(std::io::sink()),
            Box::new(SharedBuf::default()),
            Box::new(std::io::empty()),
            Arc::new(SystemClock::default()),
            true,
            false,
        );
        let step = ui.step("Working");
        std::thread::sleep(TICK * 3);
        assert!(ui.inner.with_state(|st| st.frame) >= 1, "the ticker drew frames");
        step.ok("Done");
        for _ in 0..100 {
            if !ui.inner.with_state(|st| st.ticker_running) {
                return;
            }
            std::thread::sleep(TICK);
        }
        panic!("the ticker thread did not stop");
    }

    #[test]
    fn elapsed_times() {
        assert_eq!(format_elapsed(Duration::from_millis(3_270)), "3.2s");
        assert_eq!(format_elapsed(Duration::from_millis(59_990)), "59.9s");
        assert_eq!(format_elapsed(Duration::from_secs(65)), "1m 05s");
        assert_eq!(format_elapsed(Duration::from_secs(3_725)), "1h 02m");
        assert_eq!(whole_seconds(Duration::from_millis(12_900)), "12s");
        assert_eq!(truncate("abcdef", 4), "abc~");
    }
}
