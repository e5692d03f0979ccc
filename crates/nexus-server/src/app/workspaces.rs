//! Users' workspaces: create (with the repo probe and placement), view, list, stop, start, delete.

use super::*;

impl App {
    // ---- workspaces -----------------------------------------------------------------------------

    pub(super) async fn owned(&self, user: &User, id: &str) -> Result<WorkspaceRow> {
        // Another user's workspace looks exactly like a missing one: no existence leak.
        match self.store.workspace(id).await? {
            Some(ws) if ws.owner_id == user.id => Ok(ws),
            _ => Err(ServerError::WorkspaceNotFound(id.to_string())),
        }
    }

    /// Creates a workspace, or returns the caller's existing one of that name for the same repo.
    pub(crate) async fn create(
        self: &Arc<Self>,
        caller: &Caller,
        req: CreateWorkspaceRequest,
    ) -> Result<CreateWorkspaceResponse> {
        let user = require_user(caller)?;
        if let Some(login) = &req.github_username {
            if !login.eq_ignore_ascii_case(&user.github_username) {
                return Err(ServerError::Forbidden {
                    message: format!(
                        "github_username {login} does not match the token's user {}",
                        user.github_username
                    ),
                    hint: "leave github_username out, or use that user's token".into(),
                });
            }
        }
        names::workspace_name(&req.workspace_name)?;
        let repo = names::repo(&req.repo, &self.git_hosts)?;
        if let Some(b) = &req.branch {
            names::branch(b)?;
        }
        let provider = req.provider.as_deref().unwrap_or("lxc");
        if provider != "lxc" {
            return Err(ServerError::bad_request(
                "unsupported_provider",
                format!("provider {provider:?} is not supported"),
                "use `lxc` (or leave provider out)",
            ));
        }
        let res = req.resources.clone().unwrap_or(Resources { cpu: None, memory: None });
        // Fail fast on the request's own values, before any git traffic.
        check_limits(req.image.as_deref(), res.cpu, res.memory.as_deref(), "invalid_field", "")?;

        if let Some(existing) = self.store.workspace_by_name(user.id, &req.workspace_name).await? {
            return existing_response(existing, &repo.url);
        }

        let upstream_url = match req.upstream.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(u) => Some(names::repo(u, &self.git_hosts)?.url),
            None => None,
        };
        let token = req.git_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        if token.is_some_and(|t| t.len() > 512 || t.chars().any(|c| c.is_whitespace() || c.is_control())) {
            return Err(ServerError::bad_request(
                "invalid_field",
                "git_token is not a token (it has spaces or is too long)",
                "send the GitHub token as it is, or leave git_token out",
            ));
        }
        // Everything that can refuse the request without git runs first: a create no node can take,
        // or one over the caller's allowance, starts no git work (issue 10, item 4).
        self.pick_node().await?;
        if let Err(wait) = self.create_limiter.take(user.id) {
            return Err(ServerError::TooManyRequests {
                message: format!("you started {} workspace creates in the last minute", self.config.creates_per_minute),
                hint: format!("retry in {} s", wait.as_secs() + 1),
                retry_after_secs: wait.as_secs() + 1,
            });
        }
        let _slot = tokio::time::timeout(self.config.probe_queue_wait, self.probe_slots.acquire())
            .await
            .ok()
            .and_then(|permit| permit.ok())
            .ok_or_else(|| {
                ServerError::unavailable(
                    "busy",
                    "the server is reading as many repositories as it allows at once",
                    "retry in a few seconds",
                )
            })?;
        let target = crate::repo_probe::GitTarget {
            url: repo.url.clone(),
            allow_private: self.config.allow_private_git_hosts,
            named_addresses: self.git_hosts.named_addresses(),
        };
        let branch = self.probe.resolve_branch(&target, req.branch.as_deref(), token).await?;
        let files = self.probe.plan_files(&target, &branch, token).await?;
        drop(_slot);
        let resolved = nexus_project::resolve(&nexus_project::MapFiles(files)).map_err(|e| {
            ServerError::BadRequest { code: "invalid_config", message: e.to_string(), hint: e.hint.clone() }
        })?;
        // The request's values win over the repo's `providers.lxc`, which win over the defaults.
        check_limits(
            resolved.image.as_deref(),
            resolved.cpu,
            resolved.memory.as_deref(),
            "invalid_config",
            " in .nexus/config.yaml",
        )?;
        let image = req.image.clone().or(resolved.image).unwrap_or_default();
        let cpu = res.cpu.or(resolved.cpu).unwrap_or(self.config.default_cpu);
        let memory = res.memory.clone().or(resolved.memory).unwrap_or_else(|| self.config.default_memory.clone());
        let plan = resolved.plan;
        self.check_quota(user, cpu, &memory).await?;
        let node = self.pick_node().await?;

        let id = format!("ws-{}", &secret::random_token("")[..12]);
        {
            let _reserved = self.ssh_ports.reserve().await;
            let used = self.store.used_ports().await?;
            let (port, listener) = self.ssh_ports.bind_free(&used).await?;
            let repo_url = repo.url.clone();
            let inserted = self
                .store
                .insert_workspace(NewWorkspace {
                    id: id.clone(),
                    owner_id: user.id,
                    name: req.workspace_name.clone(),
                    image,
                    cpu,
                    memory,
                    repo_owner: repo.owner,
                    repo_name: repo.name,
                    repo_url: repo.url,
                    branch,
                    ssh_port: port,
                    node,
                    plan: serde_json::to_string(&plan).expect("plans serialize"),
                    git_token: token.map(|t| self.sealer.seal(t, &crate::sealed::git_token_context(&id))),
                    upstream_url,
                })
                .await;
            if let Err(e) = inserted {
                // A concurrent create of the same name won the race: answer like a repeat request.
                if let Some(existing) = self.store.workspace_by_name(user.id, &req.workspace_name).await? {
                    return existing_response(existing, &repo_url);
                }
                return Err(e);
            }
            self.serve_listener(port, &id, listener);
        }
        // The planned services are listed (`starting`, local ports assigned) from the start, so a
        // client that sees `running` before the node's first services report still knows what to wait for.
        let planned: Vec<ServiceRow> = plan
            .services
            .iter()
            .map(|s| ServiceRow {
                name: s.name.clone(),
                port: s.port,
                mapped_port: 0,
                status: ServiceStatus::Starting,
                discovered: false,
                message: None,
                hint: None,
                last_logs: None,
            })
            .collect();
        self.store.replace_services(&id, user.id, planned, None).await?;
        let ws = self.workspace(&id).await?;
        // Only this first ensure may start from a prebuild: the probe above read the repo with the
        // caller's token (or without one, so it is public). A command re-sent later is built from
        // the stored row and says neither, so the node clones afresh.
        self.metrics.create_accepted(&id);
        self.audit(caller, "workspace.create", &id, Some(format!("{} {}", req.workspace_name, ws.repo_url))).await;
        let spec = WorkspaceSpec { no_prebuild: req.no_prebuild, repo_access_verified: true, ..self.spec_of(&ws) };
        self.send_command(&ws, Op::Ensure(Box::new(spec))).await?;
        // Re-read: the node may have taken the command (`creating`) or even answered already.
        let ws = self.workspace(&id).await?;
        Ok(CreateWorkspaceResponse {
            workspace_id: id.clone(),
            status: ws.status,
            ssh_port: ws.ssh_port,
            polling_url: polling_path(&id),
            created: true,
        })
    }

    pub(super) async fn workspace(&self, id: &str) -> Result<WorkspaceRow> {
        self.store.workspace(id).await?.ok_or_else(|| ServerError::WorkspaceNotFound(id.to_string()))
    }

    /// The least-loaded responsive node.
    pub(super) async fn pick_node(&self) -> Result<String> {
        let nodes = self.store.list_nodes().await?;
        // Least loaded by what runs (queued and starting work included: those rows are pending or
        // creating), among nodes with room left.
        let has_room = |n: &crate::store::nodes::NodeRow| self.hub.capacity(&n.name).is_none_or(|max| n.active < max);
        let responsive: Vec<_> = nodes.iter().filter(|n| self.hub.is_responsive(&n.name)).collect();
        if let Some(n) = responsive.iter().filter(|n| has_room(n)).min_by_key(|n| (n.active, n.workspaces, &n.name)) {
            return Ok(n.name.clone());
        }
        if !responsive.is_empty() {
            let full: Vec<String> = responsive
                .iter()
                .map(|n| format!("{}: {} of {}", n.name, n.active, self.hub.capacity(&n.name).unwrap_or(0)))
                .collect();
            return Err(ServerError::unavailable(
                "nodes_full",
                format!("every node runs as many workspaces as it can ({})", full.join(", ")),
                "stop or delete a workspace you no longer use (`nexus workspace list`), or ask the operator to add a node",
            ));
        }
        // Say why by the real cause: connected nodes whose LXD is down are not "no node".
        let degraded: Vec<String> = nodes
            .iter()
            .filter_map(|n| self.hub.degraded(&n.name).map(|why| format!("node {}: {why}", n.name)))
            .collect();
        if !degraded.is_empty() {
            return Err(ServerError::unavailable(
                "nodes_degraded",
                format!("no node can create a workspace right now ({})", degraded.join("; ")),
                "the node's agent is bringing LXD back; retry in a minute, or ask the operator to check LXD there",
            ));
        }
        Err(ServerError::unavailable(
            "no_nodes",
            "no node is available to run the workspace",
            "ask the operator to start a node agent (`nexus agent --server <url> --join-token-file <file>`), then retry",
        ))
    }

    /// One of the caller's workspaces.
    pub(crate) async fn view(&self, caller: &Caller, id: &str, host: &str) -> Result<WorkspaceView> {
        let user = require_user(caller)?;
        let ws = self.owned(user, id).await?;
        let services = self.store.services_of(&ws.id).await?;
        let setup = self.store.setup_of(&ws.id).await?;
        Ok(self.to_view(&ws, services, setup, host))
    }

    /// All of the caller's workspaces.
    pub(crate) async fn list(&self, caller: &Caller, host: &str) -> Result<WorkspaceList> {
        let user = require_user(caller)?;
        let rows = self.store.workspaces_of(user.id).await?;
        Ok(WorkspaceList {
            workspaces: rows
                .into_iter()
                .map(|(ws, services, setup)| self.to_view(&ws, services, setup, host))
                .collect(),
        })
    }

    pub(super) fn to_view(
        &self,
        ws: &WorkspaceRow,
        services: Vec<ServiceRow>,
        setup: Option<SetupRow>,
        host: &str,
    ) -> WorkspaceView {
        let host = self.config.public_host.clone().unwrap_or_else(|| host.to_string());
        let node_status = self.hub.node_status(&ws.node);
        let (mut message, mut hint) = (ws.message.clone(), ws.hint.clone());
        if ws.status == WorkspaceStatus::Stopped && ws.stopped_idle && message.is_none() {
            let after = human_ms(self.config.idle_stop.map_or(0, |d| d.as_millis() as u64));
            message = Some(format!("stopped after {after} without an SSH connection (everything in it is kept)"));
            hint = Some("connecting starts it again: `nexus workspace connect`, or just `ssh` to it".into());
        }
        if ws.status != WorkspaceStatus::Stopped && message.is_none() {
            let timeout = self.config.node_timeout.as_secs();
            match node_status {
                NodeStatus::Ok => {
                    if let Some(ahead) = self.burst.ahead_of(&ws.node, &ws.id) {
                        message = Some(format!(
                            "queued on node {}: {ahead} ahead (a node starts {} workspaces at once)",
                            ws.node,
                            self.burst.limit()
                        ));
                        hint = Some("it starts by itself when its turn comes; nothing to do".into());
                    }
                }
                NodeStatus::Unresponsive => {
                    message = Some(format!("node {} is unresponsive (no heartbeat within {timeout}s)", ws.node));
                    hint = Some(
                        "the workspace is unreachable until its node is back; ask the operator to check `nexus agent` there"
                            .into(),
                    );
                }
                NodeStatus::Degraded => {
                    let why = self.hub.degraded(&ws.node).unwrap_or_default();
                    message = Some(format!("node {} cannot run operations right now: {why}", ws.node));
                    hint = Some(
                        "a running workspace keeps working over SSH meanwhile; the node's agent is bringing LXD back"
                            .into(),
                    );
                }
                NodeStatus::Connecting => {
                    message = Some(format!(
                        "waiting for node {} to reconnect (the server started {}s ago)",
                        ws.node,
                        self.hub.uptime().as_secs()
                    ));
                    hint = Some(format!(
                        "nodes reconnect within seconds of a server restart; if it is not back after {timeout}s, \
                         ask the operator to check `nexus agent` there"
                    ));
                }
            }
        }
        let running = ws.status == WorkspaceStatus::Running;
        let plan = plan_of(ws);
        let setup = setup_view(ws, &plan, setup, now_ms());
        WorkspaceView {
            workspace_id: ws.id.clone(),
            name: ws.name.clone(),
            owner: ws.owner.clone(),
            status: ws.status,
            message,
            hint,
            provider: ws.provider.clone(),
            image: ws.image.clone(),
            ssh: SshInfo {
                command: format!("ssh -p {} dev@{host}", ws.ssh_port),
                host,
                port: ws.ssh_port,
                user: "dev".into(),
                host_key: ws.host_key.clone(),
            },
            services: services
                .into_iter()
                .map(|r| ServiceInfo {
                    url: Some(format!("http://localhost:{}", r.mapped_port)),
                    name: r.name,
                    port: r.port,
                    mapped_port: Some(r.mapped_port),
                    status: if running { r.status } else { ServiceStatus::Stopped },
                    discovered: r.discovered,
                    message: match (running, r.status) {
                        (true, ServiceStatus::Starting) => Some(starting_message(r.message, setup.as_ref())),
                        _ => r.message,
                    },
                    hint: r.hint,
                    last_logs: r.last_logs,
                })
                .collect(),
            setup,
            services_source: plan.source,
            repo: RepoInfo {
                owner: ws.repo_owner.clone(),
                name: ws.repo_name.clone(),
                url: ws.repo_url.clone(),
                branch: ws.branch.clone(),
                commit: ws.commit.clone(),
                path: format!("/home/dev/{}", ws.repo_name),
            },
            node: Some(NodeRef { name: ws.node.clone(), status: node_status }),
            resources: Resources { cpu: Some(ws.cpu), memory: Some(ws.memory.clone()) },
            created_at: ws.created_at.clone(),
            updated_at: ws.updated_at.clone(),
        }
    }

    pub(super) async fn current_status(&self, id: &str) -> Result<StatusChange> {
        let ws = self.workspace(id).await?;
        Ok(StatusChange { workspace_id: ws.id, status: ws.status })
    }

    /// Stops a workspace and waits for the node to confirm. Stopping a stopped one is a no-op.
    pub(crate) async fn stop(self: &Arc<Self>, caller: &Caller, id: &str) -> Result<StatusChange> {
        let ws = self.owned(require_user(caller)?, id).await?;
        if ws.status == WorkspaceStatus::Stopped {
            return Ok(StatusChange { workspace_id: ws.id, status: ws.status });
        }
        if !self.hub.is_responsive(&ws.node) {
            return Err(self.node_unavailable(&ws));
        }
        self.audit(caller, "workspace.stop", &ws.id, None).await;
        self.send_and_wait(&ws, Op::Stop).await?;
        self.current_status(id).await
    }

    /// Starts a stopped (or retries a failed) workspace and waits until it runs or fails.
    pub(crate) async fn start(self: &Arc<Self>, caller: &Caller, id: &str) -> Result<StatusChange> {
        let ws = self.owned(require_user(caller)?, id).await?;
        self.start_as(ws, Some(caller)).await
    }

    /// Starts `ws` as read (a wake for SSH has no caller; `caller`'s start is audited).
    pub(super) async fn start_row(self: &Arc<Self>, ws: WorkspaceRow) -> Result<StatusChange> {
        self.start_as(ws, None).await
    }

    async fn start_as(self: &Arc<Self>, ws: WorkspaceRow, caller: Option<&Caller>) -> Result<StatusChange> {
        let id = ws.id.clone();
        let id = id.as_str();
        let to = ws.status.apply(Event::StartRequested).map_err(|e| ServerError::Conflict {
            code: "invalid_state",
            message: e.to_string(),
            hint: "check `nexus workspace status`".into(),
        })?;
        if to == Transition::Unchanged {
            return Ok(StatusChange { workspace_id: ws.id, status: ws.status });
        }
        if !self.hub.is_responsive(&ws.node) {
            return Err(self.node_unavailable(&ws));
        }
        {
            let _reserved = self.ssh_ports.reserve().await;
            self.listen(ws.ssh_port, &ws.id).await.map_err(|e| {
                ServerError::unavailable(
                    "ssh_port_busy",
                    format!("SSH port {} of this workspace is taken by another program: {e}", ws.ssh_port),
                    "ask the operator to free the port, then start the workspace again",
                )
            })?;
        }
        let Applied::To(pending) = self.transition(&ws, Event::StartRequested, StatusDetails::default()).await? else {
            // A concurrent start (or a report) moved it first; that one carries on.
            return self.current_status(id).await;
        };
        let ws = WorkspaceRow { status: pending, message: None, hint: None, ..ws };
        let spec = self.spec_of(&ws);
        if let Some(caller) = caller {
            self.audit(caller, "workspace.start", &ws.id, None).await;
        }
        self.send_and_wait(&ws, Op::Ensure(Box::new(spec))).await?;
        self.current_status(id).await
    }

    /// Deletes a workspace: the node removes the container, then the record and port are freed.
    pub(crate) async fn delete(self: &Arc<Self>, caller: &Caller, id: &str) -> Result<Deleted> {
        let ws = self.owned(require_user(caller)?, id).await?;
        if !self.hub.is_responsive(&ws.node) {
            return Err(self.node_unavailable(&ws));
        }
        self.audit(caller, "workspace.delete", &ws.id, Some(format!("{} {}", ws.name, ws.repo_url))).await;
        match self.send_and_wait(&ws, Op::Delete).await? {
            Outcome::Failed { message, hint } => Err(ServerError::unavailable("delete_failed", message, hint)),
            _ => Ok(Deleted { workspace_id: id.to_string(), deleted: true }),
        }
    }
}

/// The answer to a create for a name the user already has: the same workspace if it is for the
/// same repo (creates are idempotent), a conflict otherwise.
pub(super) fn existing_response(existing: WorkspaceRow, repo_url: &str) -> Result<CreateWorkspaceResponse> {
    if existing.repo_url != repo_url {
        return Err(ServerError::Conflict {
            code: "name_taken",
            message: format!("you already have a workspace named {} for {}", existing.name, existing.repo_url),
            hint: "pick another name with --name, or delete the old workspace first".into(),
        });
    }
    Ok(CreateWorkspaceResponse {
        polling_url: polling_path(&existing.id),
        workspace_id: existing.id,
        status: existing.status,
        ssh_port: existing.ssh_port,
        created: false,
    })
}

impl App {
    /// Refuses a create over the operator's maxima (`--max-cpu`, `--max-memory`) or the user's
    /// workspace quota (`--max-workspaces-per-user`): each workspace holds a container and one of
    /// the server's SSH ports, so one user must not be able to take them all.
    async fn check_quota(&self, user: &User, cpu: u32, memory: &str) -> Result<()> {
        let max = &self.config;
        if cpu > max.max_cpu {
            return Err(ServerError::bad_request(
                "over_limit",
                format!("cpu {cpu} is over this server's maximum of {}", max.max_cpu),
                format!("ask for at most {} CPUs (`--cpu`, or `providers.lxc.cpu` in .nexus/config.yaml)", max.max_cpu),
            ));
        }
        let max_bytes = names::memory_bytes(&max.max_memory).unwrap_or(u64::MAX);
        if names::memory_bytes(memory).is_some_and(|b| b > max_bytes) {
            return Err(ServerError::bad_request(
                "over_limit",
                format!("memory {memory:?} is over this server's maximum of {}", max.max_memory),
                format!(
                    "ask for at most {} (`--memory`, or `providers.lxc.memory` in .nexus/config.yaml)",
                    max.max_memory
                ),
            ));
        }
        if max.max_workspaces_per_user > 0 {
            let have = self.store.workspaces_of(user.id).await?.len();
            if have >= max.max_workspaces_per_user as usize {
                return Err(ServerError::Forbidden {
                    message: format!(
                        "you have {have} workspaces, the most this server allows per user ({})",
                        max.max_workspaces_per_user
                    ),
                    hint: "delete one you no longer need (`nexus list`, then `nexus delete <name>`)".into(),
                });
            }
        }
        Ok(())
    }
}

/// Checks an image alias, CPU count and memory size, wherever they came from (`source` says where).
pub(super) fn check_limits(
    image: Option<&str>,
    cpu: Option<u32>,
    memory: Option<&str>,
    code: &'static str,
    source: &str,
) -> Result<()> {
    if let Some(image) = image {
        if image.is_empty()
            || !image.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
        {
            return Err(ServerError::bad_request(
                code,
                format!("image {image:?}{source} is not a valid image alias"),
                "leave image out to use the node's base image",
            ));
        }
    }
    if let Some(cpu) = cpu.filter(|c| !(1..=64).contains(c)) {
        return Err(ServerError::bad_request(code, format!("cpu {cpu}{source} is out of range"), "use 1 to 64 CPUs"));
    }
    if let Some(memory) = memory.filter(|m| names::memory_bytes(m).is_none_or(|b| b < 128 << 20)) {
        return Err(ServerError::bad_request(
            code,
            format!("memory {memory:?}{source} is not a size of at least 128MiB"),
            "use a size like `4GB` or `512MiB`",
        ));
    }
    Ok(())
}

/// `12 s`, `3 min 5 s`, `15 min`.
pub(super) fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match (s / 60, s % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// The setup as the API shows it at `now_ms`: the stored report, with the time elapsed so far while it
/// runs; `pending` while the plan's setup has not reported yet, or when a run was cut short by a stop
/// (it runs again at the next start). `None` for a plan without setup steps.
pub(super) fn setup_view(
    ws: &WorkspaceRow,
    plan: &ProjectPlan,
    row: Option<SetupRow>,
    now_ms: i64,
) -> Option<SetupView> {
    let pending = |message: Option<&str>| SetupView {
        status: SetupStatus::Pending,
        step: None,
        step_number: None,
        steps: plan.setup.len() as u32,
        started_at: None,
        elapsed_ms: 0,
        last_line: None,
        message: message.map(str::to_string),
        hint: None,
        last_logs: None,
    };
    let Some(row) = row else {
        return (!plan.setup.is_empty()).then(|| pending(None));
    };
    if !row.status.is_settled() && row.generation < ws.generation {
        let message = (ws.status != WorkspaceStatus::Running)
            .then_some("the workspace stopped before setup finished; setup runs again when it starts");
        return Some(pending(message));
    }
    let elapsed_ms = match row.status {
        SetupStatus::Running => row.elapsed_ms.max(u64::try_from(now_ms - row.started_at_ms).unwrap_or(0)),
        _ => row.elapsed_ms,
    };
    let started =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(row.started_at_ms).unwrap_or(0));
    Some(SetupView {
        status: row.status,
        step: row.step,
        step_number: row.step_number,
        steps: row.steps,
        started_at: Some(humantime::format_rfc3339_seconds(started).to_string()),
        elapsed_ms,
        last_line: row.last_line,
        message: row.message,
        hint: row.hint,
        last_logs: row.last_logs,
    })
}

/// What a `starting` service in a running workspace waits for: the setup while it runs (with its step
/// and time, which only the server knows to the second), else what the node said, else its first report.
pub(super) fn starting_message(reported: Option<String>, setup: Option<&SetupView>) -> String {
    match setup {
        Some(s) if s.status == SetupStatus::Running => {
            let step = match (&s.step, s.step_number) {
                (Some(step), Some(n)) if s.steps > 1 => format!("`{step}`, step {n} of {}, ", s.steps),
                (Some(step), _) => format!("`{step}`, "),
                (None, _) => String::new(),
            };
            format!("waiting for setup ({step}{})", human_ms(s.elapsed_ms))
        }
        Some(s) if s.status == SetupStatus::Pending => "waiting for setup to start".into(),
        _ => reported.unwrap_or_else(|| "waiting for the node to report on it".into()),
    }
}

/// The stored service plan of a workspace (empty for workspaces made before plans existed).
pub(super) fn plan_of(ws: &WorkspaceRow) -> ProjectPlan {
    serde_json::from_str(&ws.plan).unwrap_or_default()
}
