//! What a failed `git clone` means for the person waiting for the workspace: git's stderr sorted
//! into causes, each with its own next step, instead of one hint that fits none of them.
//!
//! Pure text matching on git's (and curl's, ssh's) English messages; anything unrecognised falls
//! back to a hint covering every cause.

/// Why a clone failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloneCause {
    /// The repository exists but the branch does not.
    NoBranch,
    /// Nothing at that URL is a repository.
    NotFound,
    /// The git host wants credentials the workspace lacks (private repositories, ssh URLs); hosts
    /// such as GitHub answer this way for repositories that do not exist, too.
    Auth,
    /// The git host's TLS certificate is not trusted.
    Tls,
    /// The git server's protocol failed (a dumb HTTP server, a broken proxy, a cut-off transfer).
    Transport,
    /// The git host cannot be reached (DNS, routing, firewall).
    Network,
    /// None of the above.
    Unknown,
}

/// Sorts git's stderr into a cause; the first rule that matches any line wins, in the order
/// below, because one failure prints several lines (`unable to access ...: Could not resolve host`).
pub(crate) fn cause(stderr: &str) -> CloneCause {
    let text = stderr.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&[
        "could not resolve host",
        "could not resolve hostname",
        "temporary failure in name resolution",
        "name or service not known",
        "connection refused",
        "connection timed out",
        "operation timed out",
        "network is unreachable",
        "no route to host",
        "failed to connect to",
        "unable to connect to",
        "couldn't connect to server",
    ]) {
        return CloneCause::Network;
    }
    if has(&["ssl certificate problem", "server certificate verification failed", "certificate verify failed"]) {
        return CloneCause::Tls;
    }
    if has(&["remote branch", "could not find remote branch"]) && has(&["not found", "could not find"]) {
        return CloneCause::NoBranch;
    }
    if has(&[
        "repository not found",
        "does not appear to be a git repository",
        "not valid: is this a git repository",
        "returned error: 404",
        "repository not exported",
    ]) || (text.contains("fatal: repository '") && text.contains("' not found"))
    {
        return CloneCause::NotFound;
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
        return CloneCause::Auth;
    }
    if has(&[
        "does not support shallow",
        "protocol error",
        "remote end hung up unexpectedly",
        "early eof",
        "rpc failed",
        "transfer closed",
        "unable to find remote helper",
        "not allowed",
        "returned error: 5",
    ]) {
        return CloneCause::Transport;
    }
    CloneCause::Unknown
}

/// The next step for a clone of `url` (branch `branch`, empty: the default) that failed because of `cause`.
pub(crate) fn hint(cause: CloneCause, url: &str, branch: &str) -> String {
    match cause {
        CloneCause::NoBranch => format!(
            "the repository has no branch `{branch}`: pick one that exists (`git ls-remote --heads {url}` lists them)"
        ),
        CloneCause::NotFound => format!("there is no repository at `{url}`: check the URL's spelling"),
        CloneCause::Auth => "the git host refused access: for a private repository, sign in to Nexus with an account that can read it (the workspace clones with your token); use an https URL, not an ssh one; hosts like GitHub also say this when the repository does not exist".into(),
        CloneCause::Tls => "the git host's TLS certificate is not trusted inside the workspace: use a certificate from a public CA, or add the CA to the workspace image".into(),
        CloneCause::Transport => "the git server's protocol failed: check that the URL is a git server's that speaks smart HTTP, ssh or git://, and that no proxy cuts the transfer; then start the workspace again".into(),
        CloneCause::Network => "the node cannot reach the git host: check the node's DNS and outbound network (firewall, proxy), then start the workspace again".into(),
        CloneCause::Unknown => "check that the repository URL and branch exist and that the node can reach the git host (private repositories need credentials in the workspace)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_from_gits_messages() {
        use CloneCause::*;
        for (stderr, want) in [
            ("Cloning into 'x'...\nfatal: Remote branch nope not found in upstream origin\n", NoBranch),
            ("warning: Could not find remote branch nope to clone.\nfatal: Remote branch nope not found in upstream origin", NoBranch),
            ("remote: Repository not found.\nfatal: repository 'https://github.com/a/b.git/' not found", NotFound),
            ("fatal: '/srv/nope.git' does not appear to be a git repository", NotFound),
            ("fatal: https://host/a.git/info/refs not valid: is this a git repository?", NotFound),
            ("fatal: unable to access 'https://host/a.git/': The requested URL returned error: 404", NotFound),
            ("fatal: remote error: access denied or repository not exported: /nope.git", NotFound),
            ("fatal: could not read Username for 'https://github.com': terminal prompts disabled", Auth),
            ("remote: Invalid username or password.\nfatal: Authentication failed for 'https://host/a.git/'", Auth),
            ("git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.", Auth),
            ("fatal: unable to access 'https://host/a.git/': The requested URL returned error: 403", Auth),
            ("fatal: could not read from remote repository", Auth),
            ("fatal: unable to access 'https://host/': SSL certificate problem: self-signed certificate", Tls),
            ("fatal: dumb http transport does not support shallow capabilities", Transport),
            ("error: RPC failed; curl 18 transfer closed with outstanding read data remaining\nfatal: early EOF", Transport),
            ("fatal: protocol error: bad line length character: <htm", Transport),
            ("fatal: unable to access 'https://nope.invalid/a.git/': Could not resolve host: nope.invalid", Network),
            ("ssh: Could not resolve hostname nope.invalid: Name or service not known\nfatal: Could not read from remote repository.", Network),
            ("fatal: unable to access 'https://10.0.0.9/a.git/': Failed to connect to 10.0.0.9 port 443: Connection refused", Network),
            ("fatal: unable to connect to 10.87.0.1:\n10.87.0.1[0: 10.87.0.1]: errno=Connection refused", Network),
            ("fatal: something nobody has seen before", Unknown),
            ("", Unknown),
        ] {
            assert_eq!(cause(stderr), want, "{stderr}");
        }
    }

    #[test]
    fn each_cause_has_its_own_hint() {
        use CloneCause::*;
        let causes = [NoBranch, NotFound, Auth, Tls, Transport, Network, Unknown];
        let hints: Vec<String> = causes.iter().map(|c| hint(*c, "https://host/a.git", "dev")).collect();
        for (i, h) in hints.iter().enumerate() {
            assert!(hints.iter().skip(i + 1).all(|other| other != h), "{h}");
        }
        assert!(hint(NoBranch, "https://host/a.git", "dev").contains("`dev`"));
        assert!(hint(NotFound, "https://host/a.git", "").contains("https://host/a.git"));
        assert!(!hint(Network, "u", "").contains("spelling"), "the bug: every failure said to check the spelling");
    }
}
