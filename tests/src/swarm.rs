//! A real two-node Docker swarm on one machine: two dockerd, each in its own
//! network namespace (nodes "manager" and "worker") joined by a veth pair,
//! so real VXLAN crosses that veth. Images are made locally from
//! busybox-static (nothing can be pulled). Everything is stopped, unmounted
//! and removed on drop, dockerd and containerd included.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    lab::Process,
    link,
    netns::{run, Netns},
};

pub const IMAGE: &str = "netobs/busybox:lab";
pub const MANAGER_DEV: &str = "sw-m";
pub const WORKER_DEV: &str = "sw-w";
pub const MANAGER_ADDR: &str = "10.210.0.1";
pub const WORKER_ADDR: &str = "10.210.0.2";

/// One dockerd in a namespace.
pub struct DockerNode {
    pub name: String,
    dir: PathBuf,
    ns_path: PathBuf,
    cgroup: String,
    daemon: Option<Process>,
}

impl DockerNode {
    pub fn start(ns: &Netns, name: &str) -> Result<DockerNode> {
        let dir = std::env::temp_dir().join(format!("netobs-docker-{}", ns.name()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut node = DockerNode {
            name: name.to_owned(),
            dir,
            ns_path: ns.path(),
            cgroup: ns.name().to_owned(),
            daemon: None,
        };
        node.launch()?;
        Ok(node)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// Where this engine keeps its network namespaces (`netns/`): the
    /// overlay's is `netns/1-` and the network id's first ten characters.
    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    /// `unix://...`, for DOCKER_HOST or --docker-host.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn launch(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("dockerd.log")).context("dockerd log")?;
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.ns_path.display()))
            .arg("--")
            .arg("dockerd")
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("-H")
            .arg(self.host())
            .arg("--pidfile")
            .arg(self.dir.join("docker.pid"))
            // Containers of this node only, so teardown finds every process.
            .arg("--cgroup-parent")
            .arg(&self.cgroup)
            .stdout(log.try_clone().context("dockerd log")?)
            .stderr(log);
        self.daemon = Some(Process::spawn(c)?);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self
                .docker(&["version", "--format", "{{.Server.APIVersion}}"])
                .is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        bail!(
            "dockerd did not come up; see {}",
            self.dir.join("dockerd.log").display()
        )
    }

    /// The docker CLI against this node; stdout on success.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        let out = run(Command::new("docker").arg("-H").arg(self.host()).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Stops dockerd (its containers with it), keeping its data: the engine
    /// going away under a running agent.
    pub fn stop_daemon(&mut self) -> Result<()> {
        if let Some(d) = self.daemon.take() {
            d.stop(libc::SIGTERM)?;
        }
        self.kill_leftovers();
        Ok(())
    }

    /// Starts dockerd again after `stop_daemon`.
    pub fn start_daemon(&mut self) -> Result<()> {
        self.launch()
    }

    /// Container processes and shims that outlived their daemon.
    fn kill_leftovers(&self) {
        for ctrl in ["pids", "memory", "cpu", "systemd", "unified"] {
            let root = Path::new("/sys/fs/cgroup").join(ctrl).join(&self.cgroup);
            for pid in procs_below(&root) {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let exec = self.dir.join("exec");
        let _ = Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg(format!("containerd-shim.*{}", exec.display()))
            .status();
    }

    fn cleanup(&mut self) {
        // Containers first, so dockerd stops fast and releases mounts.
        if self.daemon.is_some() {
            let _ = self.docker(&["swarm", "leave", "--force"]);
            if let Ok(ids) = self.docker(&["ps", "-aq"]) {
                for id in ids.lines() {
                    let _ = self.docker(&["rm", "-f", id]);
                }
            }
        }
        let _ = self.stop_daemon();
        remove_node_dir(&self.dir, &self.cgroup);
    }
}

/// Mounts under `dir` (overlay2, netns bind mounts, deepest first), the
/// node's cgroups, then `dir` itself.
fn remove_node_dir(dir: &Path, cgroup: &str) {
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| Path::new(m).starts_with(dir))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
    for ctrl in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = remove_cgroup(&ctrl.path().join(cgroup));
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Removes what Docker nodes of test runs that died (killed, or the machine
/// stopped under them) left: shims, mounts, cgroups, data directories.
pub fn cleanup_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // netobs-docker-<namespace>, the namespace ending in -<pid>-<n>.
        let Some(ns) = name.strip_prefix("netobs-docker-") else {
            continue;
        };
        let pid = ns
            .split('-')
            .rev()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists()) {
            continue;
        }
        let dir = e.path();
        let _ = Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg(format!("{}", dir.display()))
            .status();
        remove_node_dir(&dir, ns);
    }
}

fn procs_below(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(procs_below(&e.path()));
        }
    }
    out
}

fn remove_cgroup(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.path().is_dir() {
            let _ = remove_cgroup(&e.path());
        }
    }
    std::fs::remove_dir(dir)
}

impl Drop for DockerNode {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A tarball root filesystem of busybox-static with a web root, imported as
/// `IMAGE` on `node`.
pub fn import_busybox(node: &DockerNode) -> Result<()> {
    let root = node.dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).context("rootfs")?;
    std::fs::create_dir_all(root.join("www")).context("rootfs")?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .find(|p| Path::new(p).exists())
        .context("busybox not found (apt-get install busybox-static)")?;
    std::fs::copy(busybox, root.join("bin/busybox")).context("copying busybox")?;
    for applet in [
        "sh", "httpd", "wget", "sleep", "nc", "cat", "echo", "seq", "true",
    ] {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
    }
    std::fs::write(root.join("www/index.html"), "netobs lab\n").context("index.html")?;
    let tar = node.dir.join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."))?;
    node.docker(&["import", &tar.to_string_lossy(), IMAGE])?;
    Ok(())
}

/// Two namespaces, two engines, one swarm. Fields drop in order: the
/// engines before the namespaces they live in.
pub struct TwoNodeSwarm {
    pub worker: DockerNode,
    pub manager: DockerNode,
    pub ns_worker: Netns,
    pub ns_manager: Netns,
}

impl TwoNodeSwarm {
    /// A swarm on Docker's default data-path port (4789).
    pub fn new() -> Result<TwoNodeSwarm> {
        TwoNodeSwarm::with_data_path_port(None)
    }

    /// A swarm initialised with `--data-path-port PORT` if given.
    pub fn with_data_path_port(port: Option<u16>) -> Result<TwoNodeSwarm> {
        let ns_manager = Netns::new("mgr")?;
        let ns_worker = Netns::new("wrk")?;
        link::veth_pair(&ns_manager, MANAGER_DEV, &ns_worker, WORKER_DEV)?;
        for (ns, dev, addr) in [
            (&ns_manager, MANAGER_DEV, MANAGER_ADDR),
            (&ns_worker, WORKER_DEV, WORKER_ADDR),
        ] {
            link::add_addr(ns, dev, &format!("{addr}/24"))?;
            link::set_up(ns, dev)?;
        }
        let manager = DockerNode::start(&ns_manager, "manager")?;
        let worker = DockerNode::start(&ns_worker, "worker")?;
        let swarm = TwoNodeSwarm {
            worker,
            manager,
            ns_worker,
            ns_manager,
        };
        import_busybox(&swarm.manager)?;
        import_busybox(&swarm.worker)?;
        let port = port.map(|p| p.to_string());
        let mut init = vec!["swarm", "init", "--advertise-addr", MANAGER_ADDR];
        if let Some(p) = &port {
            init.extend(["--data-path-port", p]);
        }
        swarm.manager.docker(&init)?;
        let token = swarm
            .manager
            .docker(&["swarm", "join-token", "-q", "worker"])?;
        swarm.worker.docker(&[
            "swarm",
            "join",
            "--token",
            &token,
            &format!("{MANAGER_ADDR}:2377"),
        ])?;
        Ok(swarm)
    }

    /// An attachable overlay network, with `--opt encrypted` if asked.
    pub fn network(&self, name: &str, encrypted: bool) -> Result<()> {
        let mut a = vec!["network", "create", "--driver", "overlay", "--attachable"];
        if encrypted {
            a.extend(["--opt", "encrypted"]);
        }
        a.push(name);
        self.manager.docker(&a).map(drop)
    }

    /// A DNSRR service (this kernel has no IPVS for VIPs) of the lab image
    /// on the nodes of `role` ("manager" or "worker"), running `cmd`.
    pub fn service(&self, name: &str, networks: &[&str], role: &str, cmd: &[&str]) -> Result<()> {
        self.service_with(name, networks, role, &[], cmd)
    }

    /// `service`, with more `docker service create` flags.
    pub fn service_with(
        &self,
        name: &str,
        networks: &[&str],
        role: &str,
        flags: &[&str],
        cmd: &[&str],
    ) -> Result<()> {
        let constraint = format!("node.role=={role}");
        let mut a = vec![
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--endpoint-mode",
            "dnsrr",
        ];
        for n in networks {
            a.extend(["--network", n]);
        }
        a.extend(["--constraint", &constraint]);
        a.extend(flags);
        a.push(IMAGE);
        a.extend(cmd);
        self.manager.docker(&a).map(drop)
    }

    /// Waits until `service` has `n` running tasks.
    pub fn wait_running(&self, service: &str, n: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            let states = self
                .manager
                .docker(&[
                    "service",
                    "ps",
                    service,
                    "--filter",
                    "desired-state=running",
                    "--format",
                    "{{.CurrentState}}",
                ])
                .unwrap_or_default();
            if states.lines().filter(|s| s.starts_with("Running")).count() >= n {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bail!("service {service} did not reach {n} running tasks")
    }
}

/// Saves what the engine at `node` answers to the calls the agent makes, as
/// JSON files in `dir`: the fixtures of the inventory tests. Manager-only
/// calls that a worker refuses are left out, as the agent leaves them out.
pub fn capture_api(node: &DockerNode, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let get = |path: &str| -> Result<String> {
        let out = run(Command::new("curl")
            .args(["-sf", "--unix-socket"])
            .arg(node.socket())
            .arg(format!("http://docker/v1.41{path}")))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let save = |name: &str, body: &str| -> Result<()> {
        let pretty = serde_json::from_str::<serde_json::Value>(body)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .with_context(|| format!("{name}: not JSON"))?;
        std::fs::write(dir.join(name), pretty + "\n").with_context(|| format!("writing {name}"))
    };
    save("info.json", &get("/info")?)?;
    let networks = get("/networks?filters=%7B%22driver%22%3A%5B%22overlay%22%5D%7D")?;
    save("networks.json", &networks)?;
    let list: serde_json::Value = serde_json::from_str(&networks).context("network list")?;
    for n in list.as_array().into_iter().flatten() {
        let (Some(id), Some(name)) = (n["Id"].as_str(), n["Name"].as_str()) else {
            continue;
        };
        save(
            &format!("network-{name}.json"),
            &get(&format!("/networks/{id}?verbose=true"))?,
        )?;
    }
    save("containers.json", &get("/containers/json")?)?;
    for (file, path) in [
        ("services.json", "/services"),
        ("tasks.json", "/tasks"),
        ("nodes.json", "/nodes"),
        ("swarm.json", "/swarm"),
    ] {
        if let Ok(body) = get(path) {
            save(file, &body)?;
        }
    }
    Ok(())
}
