//! What `devserve check` says would run, as data, and its wording: the configuration fills a
//! [`CheckDescription`]; [`CheckDescription::lines`] is the one place that words it.

use std::time::Duration;

/// What a start with this configuration would run.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckDescription {
    /// The configuration file in use, if any.
    pub file: Option<String>,
    /// Zero-config: what the folder was found to be, and the run as an explicit command line.
    pub found: Option<(String, String)>,
    pub watch: Vec<String>,
    pub exts: Vec<String>,
    pub ignore: Vec<String>,
    pub build: Option<String>,
    pub front: FrontDoor,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workers: u32,
    pub rolling: bool,
    pub ready_delay: Duration,
    pub ready_timeout: Duration,
    pub stop_signal: String,
    pub stop_timeout: Duration,
    /// With `[services.NAME]` tables: each service in starting order, in words.
    pub services: Vec<ServiceDescription>,
}

/// One service, as `check` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDescription {
    pub name: String,
    /// Its route (`/api`), and whether its prefix is stripped.
    pub route: Option<(String, bool)>,
    pub watch: Vec<String>,
    pub build: Option<String>,
    pub command: Vec<String>,
    pub depends_on: Vec<String>,
    pub workers: u32,
}

/// The front door, as `check` describes it.
#[derive(Debug, Clone, PartialEq)]
pub enum FrontDoor {
    /// `--proxy`.
    Proxy {
        address: String,
        /// `auto`: the last port it may move up to.
        auto_up_to: Option<u16>,
        raw_tcp: bool,
        /// `https://`: TLS with a certificate from the local CA.
        tls: bool,
        /// `--app-port`, else a port for each worker.
        app_port: Option<u16>,
        /// The `--allowed-host` names (`all`: every check off).
        allowed_hosts: Vec<String>,
    },
    /// `--listen`.
    Listen { addresses: Vec<String> },
    /// Neither: restart mode.
    Restart,
}

impl CheckDescription {
    /// The description in words, one line each (`ok` is the caller's).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("config file: {}", self.file.as_deref().unwrap_or("none"))];
        if let Some((kind, command_line)) = &self.found {
            lines.push(format!("found: {kind} (zero-config: {command_line})"));
        }
        if !self.services.is_empty() {
            lines.push(format!("front door: {}", self.front.words()));
            lines.extend(self.services.iter().map(ServiceDescription::line));
            return lines;
        }
        lines.push(format!("watch: {}", self.watch.join(", ")));
        if !self.exts.is_empty() {
            lines.push(format!("extensions: {}", self.exts.join(", ")));
        }
        if !self.ignore.is_empty() {
            lines.push(format!("ignore: {}", self.ignore.join(", ")));
        }
        lines.push(format!("build: {}", self.build.as_deref().unwrap_or("none")));
        lines.push(format!("front door: {}", self.front.words()));
        lines.push(format!("command: {}", self.command.join(" ")));
        lines.extend(self.env.iter().map(|(key, value)| format!("env: {key}={value}")));
        lines.push(format!(
            "workers: {}{} · ready-delay {} · ready-timeout {} · stop {} after {}",
            self.workers,
            if self.rolling { " (rolling)" } else { "" },
            humantime::format_duration(self.ready_delay),
            humantime::format_duration(self.ready_timeout),
            self.stop_signal,
            humantime::format_duration(self.stop_timeout)
        ));
        lines
    }
}

impl ServiceDescription {
    /// `service api: /api (prefix stripped) · watch api · build cargo build -p api · command … · after db`
    fn line(&self) -> String {
        let mut parts = vec![match &self.route {
            Some((route, true)) => format!("{route} (prefix stripped), and {}.localhost", self.name),
            Some((route, false)) => format!("{route}, and {}.localhost", self.name),
            None => "not routed".to_owned(),
        }];
        parts.push(if self.watch.is_empty() {
            "never restarted by changes (watch = [])".to_owned()
        } else {
            format!("watch {}", self.watch.join(", "))
        });
        parts.extend(self.build.as_ref().map(|b| format!("build {b}")));
        parts.push(if self.command.is_empty() {
            "no command: a watch task".to_owned()
        } else {
            format!("command {} ({} worker(s))", self.command.join(" "), self.workers)
        });
        if !self.depends_on.is_empty() {
            parts.push(format!("starts after {}", self.depends_on.join(", ")));
        }
        format!("service {}: {}", self.name, parts.join(" · "))
    }
}

impl FrontDoor {
    fn words(&self) -> String {
        match self {
            FrontDoor::Proxy { address, auto_up_to, raw_tcp, tls, app_port, allowed_hosts } => {
                let kind = match (*raw_tcp, *tls) {
                    (true, _) => "raw TCP",
                    (false, true) => "HTTPS, HTTP/2 and HTTP/1.1, a certificate from the local CA",
                    (false, false) => "HTTP",
                };
                let port = match app_port {
                    Some(port) => format!("the app's own port {port} (--app-port)"),
                    None => "a port for each worker (PORT, {port})".to_owned(),
                };
                let hosts = if *raw_tcp {
                    String::new()
                } else if allowed_hosts.iter().any(|h| h == "all") {
                    " · any host (--allowed-host all)".to_owned()
                } else {
                    let mut names = vec!["localhost, *.localhost, IP literals".to_owned()];
                    names.extend(allowed_hosts.iter().cloned());
                    format!(" · answers {}", names.join(", "))
                };
                let at = match auto_up_to {
                    Some(last) => format!("{address} (or the next free port up to {last})"),
                    None => address.clone(),
                };
                format!("proxy on {at} ({kind}) to {port}{hosts}")
            }
            FrontDoor::Listen { addresses } => {
                format!("listen on {} (the sockets are fds 3, 4, … of every worker)", addresses.join(", "))
            }
            FrontDoor::Restart => {
                "none (restart mode: the app binds its own port; the old generation stops first)".into()
            }
        }
    }
}
