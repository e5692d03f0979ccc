//! The static-site detector: a lone `index.html` is served as it is.

use super::{Draft, Found};
use crate::files::RepoFiles;

/// Port of the static file server.
const STATIC_PORT: u16 = 8080;

/// Serves the repo root when it has an `index.html` and no other detector found a service.
pub(super) fn detect(files: &dyn RepoFiles, found: &mut Found) {
    if found.services.is_empty() && files.exists("index.html") {
        found.labels.push("static site (index.html)".to_string());
        found.services.push(Draft::web("web", "python3 -m http.server $PORT --bind 0.0.0.0", STATIC_PORT));
    }
}
