//! What a failed git command means: git's (and curl's, ssh's) stderr sorted into causes, so the
//! server's repository probe and the agent's clone both give the hint that fits what went wrong.
//!
//! Pure text matching on git's English messages (both run git with `LC_ALL=C`); anything
//! unrecognised is `Unknown`, for which callers give a hint covering every cause.

/// Why git could not read a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitFailure {
    /// The repository exists but the branch (or ref) does not.
    NoBranch,
    /// Nothing at that URL is a repository.
    NotFound,
    /// The git host wants credentials, or refused the ones sent; hosts such as GitHub answer this way
    /// for repositories that do not exist, too.
    Auth,
    /// The git host's TLS certificate is not trusted (a company proxy's CA missing from the trust store).
    Tls,
    /// The host answered, but not in a way git can use (a dumb HTTP server, a broken proxy, a cut-off transfer).
    Transport,
    /// The git host cannot be reached: DNS, routing, firewall, timeout.
    Network,
    /// None of the above.
    Unknown,
}

/// Sorts git's stderr into a cause. One failure prints several lines (`unable to access …: Could
/// not resolve host`), so the rules run in this order and the first that matches any line wins: a
/// refused connection says nothing about the repository, and a missing repository is named before
/// the "could not read from remote repository" that ssh hosts print after it.
pub fn classify(stderr: &str) -> GitFailure {
    let text = stderr.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&[
        "could not resolve host",
        "could not resolve hostname",
        "temporary failure in name resolution",
        "name or service not known",
        "connection refused",
        "connection timed out",
        "connection reset",
        "operation timed out",
        "network is unreachable",
        "no route to host",
        "failed to connect to",
        "unable to connect to",
        "couldn't connect to server",
        "got no answer within",
    ]) {
        return GitFailure::Network;
    }
    if has(&[
        "ssl certificate problem",
        "server certificate verification failed",
        "certificate verify failed",
        "ssl connect error",
    ]) {
        return GitFailure::Tls;
    }
    if (has(&["remote branch", "could not find remote branch"]) && has(&["not found", "could not find"]))
        || has(&["couldn't find remote ref"])
    {
        return GitFailure::NoBranch;
    }
    if has(&[
        "repository not found",
        "does not appear to be a git repository",
        "not valid: is this a git repository",
        "returned error: 404",
        "repository not exported",
        "no such repository",
    ]) || (text.contains("fatal: repository '") && text.contains("' not found"))
    {
        return GitFailure::NotFound;
    }
    if has(&[
        "authentication failed",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "permission denied",
        "returned error: 401",
        "returned error: 403",
        "host key verification failed",
        "could not read from remote repository",
    ]) {
        return GitFailure::Auth;
    }
    if has(&[
        "does not support shallow",
        "protocol error",
        "remote end hung up unexpectedly",
        "unexpected disconnect",
        "early eof",
        "rpc failed",
        "transfer closed",
        "invalid server response",
        "expected flush",
        "bad packet",
        "unable to find remote helper",
        "not allowed",
        "returned error: 5",
    ]) {
        return GitFailure::Transport;
    }
    GitFailure::Unknown
}

/// The host can serve the branch, just not a shallow copy of it (dumb HTTP, some old servers): a
/// full fetch works where `--depth 1` failed.
pub fn shallow_unsupported(stderr: &str) -> bool {
    stderr.to_ascii_lowercase().contains("does not support shallow")
}

/// The line of git's stderr that says what happened: the first `fatal:`/`error:` line, else the last.
pub fn detail(stderr: &str) -> &str {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.starts_with("fatal:") || l.starts_with("error:"))
        .or_else(|| lines().next_back())
        .unwrap_or("git failed without saying why")
}

#[cfg(test)]
mod tests {
    use super::GitFailure::*;
    use super::*;

    #[test]
    fn causes_from_gits_messages() {
        // What git 2.3x-2.4x prints against GitHub, git daemon, smart and dumb HTTP and ssh hosts.
        for (stderr, want) in [
            ("Cloning into 'x'...\nfatal: Remote branch nope not found in upstream origin\n", NoBranch),
            ("warning: Could not find remote branch nope to clone.\nfatal: Remote branch nope not found in upstream origin", NoBranch),
            ("fatal: couldn't find remote ref refs/heads/nope", NoBranch),
            ("remote: Repository not found.\nfatal: repository 'https://github.com/a/b.git/' not found", NotFound),
            ("fatal: repository 'http://127.0.0.1:8765/o/nope.git/' not found", NotFound),
            ("fatal: '/srv/nope.git' does not appear to be a git repository", NotFound),
            ("fatal: https://host/a.git/info/refs not valid: is this a git repository?", NotFound),
            ("fatal: unable to access 'https://host/a.git/': The requested URL returned error: 404", NotFound),
            ("fatal: remote error: access denied or repository not exported: /nope.git", NotFound),
            ("ERROR: Repository not found.\nfatal: Could not read from remote repository.", NotFound),
            ("fatal: could not read Username for 'https://github.com': terminal prompts disabled", Auth),
            ("remote: Invalid username or password.\nfatal: Authentication failed for 'https://host/a.git/'", Auth),
            ("git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.", Auth),
            ("fatal: unable to access 'https://host/a.git/': The requested URL returned error: 403", Auth),
            ("fatal: could not read from remote repository", Auth),
            ("fatal: unable to access 'https://host/': SSL certificate problem: self-signed certificate in certificate chain", Tls),
            ("fatal: dumb http transport does not support shallow capabilities", Transport),
            ("error: RPC failed; curl 18 transfer closed with outstanding read data remaining\nfatal: early EOF", Transport),
            ("error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502", Transport),
            ("fatal: protocol error: bad line length character: <htm", Transport),
            ("fatal: unable to access 'https://nope.invalid/a.git/': Could not resolve host: nope.invalid", Network),
            ("ssh: Could not resolve hostname nope.invalid: Name or service not known\nfatal: Could not read from remote repository.", Network),
            ("fatal: unable to access 'https://10.0.0.9/a.git/': Failed to connect to 10.0.0.9 port 443: Connection refused", Network),
            ("fatal: unable to access 'http://127.0.0.1:1/o/r.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server", Network),
            ("fatal: unable to connect to 10.87.0.1:\n10.87.0.1[0: 10.87.0.1]: errno=Connection refused", Network),
            ("git clone got no answer within 20s", Network),
            ("fatal: something nobody has seen before", Unknown),
            ("", Unknown),
        ] {
            assert_eq!(classify(stderr), want, "{stderr}");
        }
    }

    #[test]
    fn shallow_and_detail() {
        assert!(shallow_unsupported("fatal: dumb http transport does not support shallow capabilities"));
        assert!(!shallow_unsupported("fatal: repository 'x' not found"));
        assert_eq!(
            detail("remote: Repository not found.\nfatal: repository 'x' not found\n"),
            "fatal: repository 'x' not found"
        );
        assert_eq!(
            detail("\nssh: connect to host h port 22: Connection refused\n\n"),
            "ssh: connect to host h port 22: Connection refused"
        );
        assert_eq!(detail(""), "git failed without saying why");
    }
}
