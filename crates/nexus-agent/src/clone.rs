//! What a failed `git clone` in a workspace means for the person waiting for it: the next step for
//! each cause `nexus_types::git_failure` sorts git's stderr into, instead of one hint that fits none.

use nexus_types::git_failure::GitFailure;

/// The next step for a clone of `url` (branch `branch`, empty: the default) that failed because of `cause`.
pub(crate) fn hint(cause: GitFailure, url: &str, branch: &str) -> String {
    match cause {
        GitFailure::NoBranch => format!(
            "the repository has no branch `{branch}`: pick one that exists (`git ls-remote --heads {url}` lists them)"
        ),
        GitFailure::NotFound => format!("there is no repository at `{url}`: check the URL's spelling"),
        GitFailure::Auth => "the git host refused access: for a private repository, sign in to Nexus with an account that can read it (the workspace clones with your token); use an https URL, not an ssh one; hosts like GitHub also say this when the repository does not exist".into(),
        GitFailure::Tls => "the git host's TLS certificate is not trusted inside the workspace: add the CA that signs it to the node's /usr/local/share/ca-certificates (or the agent's --ca-certificates), which every workspace gets at its next start, or use a certificate from a public CA".into(),
        GitFailure::Transport => "the git server's protocol failed: check that the URL is a git server's that speaks smart HTTP, ssh or git://, and that no proxy cuts the transfer; then start the workspace again".into(),
        GitFailure::Network => "the node cannot reach the git host: check the node's DNS and outbound network (firewall, proxy), then start the workspace again".into(),
        GitFailure::Unknown => "check that the repository URL and branch exist and that the node can reach the git host (private repositories need credentials in the workspace)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_its_own_hint() {
        use GitFailure::*;
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
